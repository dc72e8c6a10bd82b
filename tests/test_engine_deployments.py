"""The engine's deployment lifecycle and the runtime logs and metrics it generates."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

from samosval.db import transaction
from samosval.domain import deployments as deployment_domain
from samosval.simulator.state import LOG_CAPACITY, METRIC_CAPACITY
from tests import factories


def operator(users):
    return SimpleNamespace(id=users["oleg"], username="oleg", role="operator")


def status_of(db, deployment_id):
    return db.execute("SELECT status FROM deployments WHERE id = ?", (deployment_id,)).fetchone()[0]


def create(db, state, image_id, users, now, **form):
    image = db.execute("SELECT * FROM images WHERE id = ?", (image_id,)).fetchone()
    values = {"name": "billing-dev", "environment": "dev", "replicas": "2", "ports": "8000:8000", **form}
    return deployment_domain.create_deployment(db, state, image, operator(users), values, now)


def test_it_brings_a_deployment_up_within_three_to_eight_seconds(engine, clock, db, users, sample):
    engine.deploy_failure_rate = 0
    state = engine.state
    deployment_id = create(db, state, sample["image_id"], users, clock.now)
    engine.step(clock.advance(0.05))
    due = db.execute("SELECT next_step_at FROM deployments WHERE id = ?", (deployment_id,)).fetchone()[0]
    assert 3.0 <= due - clock.now <= 8.0
    engine.step(clock.advance(2.9))
    assert status_of(db, deployment_id) == "deploying"
    engine.step(clock.advance(5.1))
    assert status_of(db, deployment_id) == "running"
    logs = state.runtime(deployment_id).logs
    assert logs.status == "running"
    events = [line.text for line in logs.snapshot() if line.level == "EVENT"]
    assert events[0].startswith("Deployment billing-dev created by oleg")
    assert any("is running: 2/2 replicas ready" in text for text in events)
    actions = [
        row[0]
        for row in db.execute(
            "SELECT action FROM audit_log WHERE target_type = 'deployment' AND target_id = ? ORDER BY id",
            (deployment_id,),
        )
    ]
    assert actions == ["deployment_create", "release_create", "deployment_running"]


def test_it_fails_a_deployment_with_an_alert_and_resolves_it_once_running(engine, clock, db, users, sample):
    state = engine.state
    engine.deploy_failure_rate = 1
    deployment_id = create(db, state, sample["image_id"], users, clock.now)
    for _ in range(20):
        engine.step(clock.advance(0.5))
    assert status_of(db, deployment_id) == "failed"
    alert = db.execute(
        "SELECT * FROM alerts WHERE target_type = 'deployment' AND target_id = ?", (deployment_id,)
    ).fetchone()
    assert alert["alert_type"] == "deployment_failed" and alert["resolved"] == 0
    assert (
        db.execute(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'deployment_failed' AND target_id = ?",
            (deployment_id,),
        ).fetchone()[0]
        == 1
    )
    assert state.runtime(deployment_id).logs.status == "failed"

    engine.deploy_failure_rate = 0
    row = deployment_domain.get_deployment(db, deployment_id)
    deployment_domain.perform_action(db, state, row, operator(users), "restart", clock.now)
    for _ in range(20):
        engine.step(clock.advance(0.5))
    assert status_of(db, deployment_id) == "running"
    assert db.execute("SELECT resolved FROM alerts WHERE id = ?", (alert["id"],)).fetchone()[0] == 1


def test_it_fails_about_one_deployment_in_ten(engine, clock, db, users, sample):
    ids = [create(db, engine.state, sample["image_id"], users, clock.now, name=f"d{i}") for i in range(100)]
    for _ in range(40):
        engine.step(clock.advance(0.5))
    statuses = Counter(status_of(db, i) for i in ids)
    assert statuses["deploying"] == 0
    assert 3 <= statuses["failed"] <= 20


def test_it_does_not_settle_a_rollout_that_was_restarted_meanwhile(engine, clock, db, users, sample):
    engine.deploy_failure_rate = 0
    deployment_id = create(db, engine.state, sample["image_id"], users, clock.now)
    engine.step(clock.advance(0.1))
    due = db.execute("SELECT next_step_at FROM deployments WHERE id = ?", (deployment_id,)).fetchone()[0]
    # A webhook restarts it just before the engine's step: the old rollout must not win.
    clock.now = due
    with transaction(db):
        deployment_domain.restart_in_transaction(db, deployment_id, clock.now - 0.01, reason="commit abc")
    engine.step(clock.now)
    assert status_of(db, deployment_id) == "deploying"


def test_it_writes_one_metric_point_and_one_to_three_lines_a_second(engine, clock, db, sample):
    deployment_id = sample["deployment_id"]
    for _ in range(600):  # 60 s in 0.1 s ticks
        engine.step(clock.advance(0.1))
    runtime = engine.state.runtime(deployment_id)
    assert 59 <= len(runtime.metrics) <= 61
    assert 60 <= len(runtime.logs) <= 183
    points = runtime.metrics.since()
    assert all(0 <= cpu <= 100 and 0 <= ram <= 100 for _, cpu, ram in points)
    # A smooth walk: neighbouring points stay close (bursts aside).
    jumps = [abs(b[1] - a[1]) for a, b in zip(points, points[1:])]
    assert sorted(jumps)[len(jumps) // 2] < 10
    for line in runtime.logs.snapshot():
        assert "billing-dev" in line.text and "billing-api:1.0.0" in line.text


def test_it_writes_info_warn_error_about_80_15_5(engine, clock, db, users, sample):
    for i in range(9):
        factories.make_deployment(db, image_id=sample["image_id"], name=f"svc-{i}")
    for _ in range(300):
        engine.step(clock.advance(1))
    levels = Counter()
    for deployment_id in engine.state.ids():
        levels.update(line.level for line in engine.state.runtime(deployment_id).logs.snapshot())
    total = sum(levels.values())
    assert total > 5000
    assert 0.75 <= levels["INFO"] / total <= 0.85
    assert 0.11 <= levels["WARN"] / total <= 0.19
    assert 0.03 <= levels["ERROR"] / total <= 0.07


def test_it_keeps_the_last_1000_lines_and_900_points_with_growing_sequence(engine, clock, sample):
    for _ in range(1200):
        engine.step(clock.advance(1))
    runtime = engine.state.runtime(sample["deployment_id"])
    assert len(runtime.logs) == LOG_CAPACITY == 1000
    assert len(runtime.metrics) == METRIC_CAPACITY == 900
    lines = runtime.logs.snapshot()
    seqs = [line.seq for line in lines]
    assert seqs == list(range(seqs[0], seqs[0] + 1000))
    assert runtime.logs.last_seq == seqs[-1] > 1000
    after, missed = runtime.logs.read_after(seqs[0] - 11)
    assert missed == 10 and after[0].seq == seqs[0]
    newest, missed = runtime.logs.read_after(seqs[-3])
    assert [line.seq for line in newest] == seqs[-2:] and missed == 0
    stamps = [p[0] for p in runtime.metrics.since()]
    assert stamps == sorted(stamps)
    assert runtime.metrics.since(stamps[-5]) == runtime.metrics.since()[-4:]


def test_it_does_not_flood_after_a_long_gap(engine, clock, sample):
    engine.step(clock.advance(0.1))
    runtime = engine.state.runtime(sample["deployment_id"])
    before = (len(runtime.metrics), runtime.logs.last_seq)
    counts = engine.step(clock.advance(3600))
    assert counts["metric_points"] <= engine.MAX_CATCH_UP_SECONDS + 1
    assert len(runtime.metrics) - before[0] <= 6
    assert runtime.logs.last_seq - before[1] <= 18


def test_it_scales_runtime_output_with_the_speed(app, clock, rng, sample):
    from samosval.simulator.runtime import build_engine

    app.config["SIM_SPEED"] = 5
    engine = build_engine(app, app.extensions["samosval"].state, clock=clock, rng=rng)
    for _ in range(100):  # 10 real seconds = 50 simulated seconds
        engine.step(clock.advance(0.1))
    assert 49 <= len(engine.state.runtime(sample["deployment_id"]).metrics) <= 51


def test_it_stops_writing_once_a_deployment_is_stopped_or_deleted(engine, clock, db, users, sample):
    state = engine.state
    other = factories.make_deployment(db, image_id=sample["image_id"], name="billing-two")
    for _ in range(30):
        engine.step(clock.advance(0.1))
    row = deployment_domain.get_deployment(db, sample["deployment_id"])
    deployment_domain.perform_action(db, state, row, operator(users), "stop", clock.now)
    logs = state.runtime(sample["deployment_id"]).logs
    seq = logs.last_seq
    assert logs.snapshot()[-1].text == "Deployment stopped by oleg"
    deployment_domain.perform_action(
        db, state, deployment_domain.get_deployment(db, other), operator(users), "delete", clock.now
    )
    for _ in range(30):
        engine.step(clock.advance(0.1))
    assert logs.last_seq == seq
    assert state.existing(other) is None
    assert engine.running_count() == 0


def test_it_shapes_metrics_by_resources(engine, clock, db, users):
    small = factories.make_request(
        db, owner_id=users["dana"], status="approved", vcpu=0.25, ram_mb=128, image_name="tiny"
    )
    large = factories.make_request(
        db, owner_id=users["dana"], status="approved", vcpu=8, ram_mb=8192, image_name="huge"
    )
    tiny = factories.make_deployment(db, image_id=factories.make_image(db, request_id=small, name="tiny"))
    huge = factories.make_deployment(
        db, image_id=factories.make_image(db, request_id=large, name="huge"), replicas=6
    )
    for _ in range(300):
        engine.step(clock.advance(1))

    def average(deployment_id, index):
        points = engine.state.runtime(deployment_id).metrics.since()
        return sum(p[index] for p in points) / len(points)

    assert average(tiny, 1) > average(huge, 1) + 20
    assert average(tiny, 2) > average(huge, 2) + 20


def test_it_picks_up_a_running_deployment_it_has_not_seen(engine, clock, db, sample):
    engine.step(clock.advance(0.1))
    late = factories.make_deployment(db, image_id=sample["image_id"], name="late")
    for _ in range(25):
        engine.step(clock.advance(0.1))
    runtime = engine.state.runtime(late)
    assert runtime.logs.status == "running"
    assert len(runtime.metrics) >= 1
