"""The engine's build lifecycle, stepped on a fake clock with a seeded RNG."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest

from samosval.domain import Refused
from samosval.domain import builds as build_domain
from samosval.domain import requests as request_domain
from tests import factories


def actor(users, name="oleg", role="operator"):
    return SimpleNamespace(id=users[name], username=name, role=role)


def queue_build(db, users, **request_fields):
    fields = {
        "owner_id": users["dana"],
        "created_by": users["carl"],
        "status": "approved",
        "run_commands": "pip install -r requirements.txt\npytest -q",
        **request_fields,
    }
    request_id = factories.make_request(db, **fields)
    req = request_domain.get_request(db, request_id)
    return build_domain.start_build(db, req, actor(users), 1_800_000_000.0), request_id


def build_row(db, build_id):
    return db.execute("SELECT * FROM builds WHERE id = ?", (build_id,)).fetchone()


def run_until_finished(engine, clock, db, build_id, limit=300, tick=0.25):
    for _ in range(limit):
        engine.step(clock.advance(tick))
        if build_row(db, build_id)["status"] not in ("queued", "building"):
            return build_row(db, build_id)
    raise AssertionError("build did not finish")


def test_it_builds_a_request_into_a_linked_image(engine, clock, db, users):
    engine.build_failure_rate = 0
    build_id, request_id = queue_build(db, users)
    build = run_until_finished(engine, clock, db, build_id)
    assert build["status"] == "success"
    assert build["steps_done"] == build["steps_total"] > 5
    image = db.execute("SELECT * FROM images WHERE id = ?", (build["image_id"],)).fetchone()
    assert image["request_id"] == request_id
    assert (image["name"], image["version"], image["image_tag"]) == (
        "billing-api",
        "1.0.0",
        "billing-api:1.0.0",
    )
    assert image["digest"].startswith("sha256:") and len(image["digest"]) == 71
    assert image["build_number"] == 1
    log = build["build_log"]
    for expected in (
        "Cloning into",
        "https://github.com/acme/billing.git",
        "FROM python:3.12-slim",
        "RUN pip install -r requirements.txt",
        "RUN pytest -q",
        "Successfully tagged billing-api:1.0.0",
        image["digest"],
        "Build succeeded",
    ):
        assert expected in log
    finish = db.execute(
        "SELECT details FROM audit_log WHERE action = 'build_finish' AND target_id = ?", (build_id,)
    ).fetchone()
    assert json.loads(finish["details"])["result"] == "success"
    assert build["finished_at"] and build["started_at"] and build["commit_sha"]


def test_it_fails_a_build_with_a_reason_a_final_line_and_an_alert(engine, clock, db, users):
    engine.build_failure_rate = 1
    build_id, _ = queue_build(db, users)
    build = run_until_finished(engine, clock, db, build_id)
    assert build["status"] == "failed"
    assert build["image_id"] is None
    assert build["error_message"]
    assert re.fullmatch(
        rf"\d\d:\d\d:\d\d ERROR: build failed: {re.escape(build['error_message'])}",
        build["build_log"].rstrip().splitlines()[-1],
    )
    alert = db.execute(
        "SELECT * FROM alerts WHERE target_type = 'build' AND target_id = ?", (build_id,)
    ).fetchone()
    assert alert["alert_type"] == "build_failed" and alert["resolved"] == 0
    finish = db.execute(
        "SELECT details FROM audit_log WHERE action = 'build_finish' AND target_id = ?", (build_id,)
    ).fetchone()
    assert json.loads(finish["details"])["result"] == "failed"
    assert db.execute("SELECT COUNT(*) FROM images").fetchone()[0] == 0


def test_it_succeeds_most_of_the_time(app, clock, db, users, rng):
    from samosval.simulator.runtime import build_engine

    engine = build_engine(app, app.extensions["samosval"].state, clock=clock, rng=rng)
    ids = [queue_build(db, users, image_name=f"svc{i}")[0] for i in range(60)]
    for _ in range(200):
        engine.step(clock.advance(0.5))
    statuses = [build_row(db, i)["status"] for i in ids]
    assert statuses.count("queued") == statuses.count("building") == 0
    assert 40 <= statuses.count("success") <= 58  # about 85 %


def test_it_moves_a_queued_build_to_building_within_one_to_two_seconds(engine, clock, db, users):
    build_id, _ = queue_build(db, users)
    engine.step(clock.advance(0.01))  # picked up and scheduled
    scheduled = build_row(db, build_id)
    assert scheduled["status"] == "queued"
    assert 1.0 <= scheduled["next_step_at"] - clock.now <= 2.0
    engine.step(clock.advance(0.99))
    assert build_row(db, build_id)["status"] == "queued"
    engine.step(clock.advance(1.01))
    building = build_row(db, build_id)
    assert building["status"] == "building"
    assert 0.5 <= building["next_step_at"] - clock.now <= 1.5
    assert building["steps_total"] > 0 and building["steps_done"] == 0


def test_it_persists_each_step_as_the_log_grows(engine, clock, db, users):
    engine.build_failure_rate = 0
    build_id, _ = queue_build(db, users)
    sizes, steps = [], []
    for _ in range(40):
        engine.step(clock.advance(0.5))
        row = build_row(db, build_id)
        sizes.append(len(row["build_log"]))
        steps.append(row["steps_done"])
    assert sizes == sorted(sizes) and len(set(sizes)) > 5
    assert steps == sorted(steps) and steps[-1] == build_row(db, build_id)["steps_total"]


def test_it_divides_delays_by_the_speed(app, clock, db, users, rng):
    from samosval.simulator.runtime import build_engine

    app.config["SIM_SPEED"] = 10
    engine = build_engine(app, app.extensions["samosval"].state, clock=clock, rng=rng)
    build_id, _ = queue_build(db, users)
    engine.step(clock.now)
    assert 0.1 <= build_row(db, build_id)["next_step_at"] - clock.now <= 0.2


def test_it_numbers_rebuilds_and_marks_each_image_distinct(engine, clock, db, users):
    engine.build_failure_rate = 0
    first, request_id = queue_build(db, users)
    run_until_finished(engine, clock, db, first)
    req = request_domain.get_request(db, request_id)
    second = build_domain.start_build(db, req, actor(users), clock.now)
    run_until_finished(engine, clock, db, second)
    images = db.execute("SELECT * FROM images WHERE request_id = ? ORDER BY id", (request_id,)).fetchall()
    assert [i["image_tag"] for i in images] == ["billing-api:1.0.0"] * 2
    assert [i["build_number"] for i in images] == [1, 2]
    assert images[0]["digest"] != images[1]["digest"]


def test_it_clones_the_target_commit_of_a_static_request(engine, clock, db, users):
    engine.build_failure_rate = 0
    build_id, _ = queue_build(db, users, update_mode="static", target_commit="a1b2c3d4e5f6")
    build = run_until_finished(engine, clock, db, build_id)
    assert build["commit_sha"] == "a1b2c3d4e5f6"
    assert "HEAD is now at a1b2c3d" in build["build_log"]


def test_it_follows_the_dockerfile_of_the_request(engine, clock, db, users):
    engine.build_failure_rate = 0
    request_id = factories.make_request(db, owner_id=users["dana"], status="approved")
    db.execute(
        "UPDATE image_requests SET dockerfile_content = ? WHERE id = ?",
        ('FROM node:20\nRUN npm ci \\\n  --omit=dev\nCMD ["node", "server.js"]\n', request_id),
    )
    build_id = build_domain.start_build(
        db, request_domain.get_request(db, request_id), actor(users), clock.now
    )
    log = run_until_finished(engine, clock, db, build_id)["build_log"]
    assert "Step 1/3 : FROM node:20" in log
    assert "Step 2/3 : RUN npm ci --omit=dev" in log
    assert "added" in log  # plausible npm output


def test_it_refuses_to_queue_a_build_of_an_unapproved_request(db, users):
    request_id = factories.make_request(db, owner_id=users["dana"], status="in_review")
    with pytest.raises(Refused):
        build_domain.start_build(db, request_domain.get_request(db, request_id), actor(users), 0)
    assert db.execute("SELECT COUNT(*) FROM builds").fetchone()[0] == 0


def test_only_staff_may_start_retry_or_cancel_a_build_whoever_calls(db, users):
    """The rule lives in the domain: the pages, the JSON API and any other caller share it."""
    request_id = factories.make_request(db, owner_id=users["dana"], status="approved")
    req = request_domain.get_request(db, request_id)
    owner = actor(users, "dana", "developer")
    with pytest.raises(Refused) as refused:
        build_domain.start_build(db, req, owner, 0)
    assert refused.value.kind == "forbidden"
    build_id = build_domain.start_build(db, req, actor(users), 0)
    with pytest.raises(Refused) as refused:
        build_domain.cancel_build(db, build_domain.get_build(db, build_id), owner, 0)
    assert refused.value.kind == "forbidden"
    build_domain.cancel_build(db, build_domain.get_build(db, build_id), actor(users), 0)
    with pytest.raises(Refused) as refused:
        build_domain.retry_build(db, build_domain.get_build(db, build_id), owner, 0)
    assert refused.value.kind == "forbidden"
    assert db.execute("SELECT COUNT(*) FROM builds").fetchone()[0] == 1


def test_it_leaves_a_cancelled_build_alone(engine, clock, db, users):
    build_id, _ = queue_build(db, users)
    for _ in range(6):
        engine.step(clock.advance(0.5))
    assert build_row(db, build_id)["status"] == "building"
    build_domain.cancel_build(db, build_domain.get_build(db, build_id), actor(users), clock.now)
    cancelled = build_row(db, build_id)
    for _ in range(20):
        engine.step(clock.advance(1))
    after = build_row(db, build_id)
    assert after["status"] == "cancelled"
    assert after["build_log"] == cancelled["build_log"]
    assert after["build_log"].rstrip().endswith("Build cancelled by oleg.")
    with pytest.raises(Refused):
        build_domain.cancel_build(db, build_domain.get_build(db, build_id), actor(users), clock.now)


def test_it_writes_the_same_log_for_the_same_seed(app, db, users):
    import random

    from samosval.simulator.runtime import build_engine
    from tests.conftest import FakeClock

    logs = []
    for _ in range(2):
        db.execute("DELETE FROM audit_log")
        db.execute("DELETE FROM builds")
        clock = FakeClock()
        engine = build_engine(app, app.extensions["samosval"].state, clock=clock, rng=random.Random(7))
        build_id = build_domain.start_build(
            db,
            request_domain.get_request(
                db, factories.make_request(db, owner_id=users["dana"], status="approved")
            ),
            actor(users),
            clock.now,
        )
        logs.append(run_until_finished(engine, clock, db, build_id)["build_log"])
    assert logs[0] == logs[1]


def test_it_reports_what_a_step_did(engine, clock, db, users):
    engine.build_failure_rate = 0
    queue_build(db, users)
    counts = engine.step(clock.advance(0.1))
    assert counts["builds_scheduled"] == 1
    totals = {}
    for _ in range(100):
        for key, value in engine.step(clock.advance(0.5)).items():
            totals[key] = totals.get(key, 0) + value
    assert totals["builds_finished"] == 1 and totals["build_lines"] > 10 and totals["errors"] == 0
