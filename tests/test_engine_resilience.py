"""Resume after a restart, one failing item not stopping the rest, the watchdog, and
the one test that runs the real engine thread."""

from __future__ import annotations

import json
import logging
import random
import time
from types import SimpleNamespace

import pytest

from samosval.domain import builds as build_domain
from samosval.domain import requests as request_domain
from samosval.simulator.runtime import build_engine
from tests import factories


def operator(users):
    return SimpleNamespace(id=users["oleg"], username="oleg", role="operator")


def queue_build(db, users, now, **fields):
    request_id = factories.make_request(db, owner_id=users["dana"], status="approved", **fields)
    return build_domain.start_build(db, request_domain.get_request(db, request_id), operator(users), now)


def build_row(db, build_id):
    return db.execute("SELECT * FROM builds WHERE id = ?", (build_id,)).fetchone()


def status_of(db, deployment_id):
    return db.execute("SELECT status FROM deployments WHERE id = ?", (deployment_id,)).fetchone()[0]


def test_it_resumes_a_build_at_the_step_where_it_stopped(app, engine, clock, db, users):
    engine.build_failure_rate = 0
    build_id = queue_build(db, users, clock.now)
    for _ in range(10):
        engine.step(clock.advance(0.5))
    interrupted = build_row(db, build_id)
    assert interrupted["status"] == "building" and 0 < interrupted["steps_done"] < interrupted["steps_total"]

    # The process dies; a new engine starts an hour later, with a fresh memory.
    clock.advance(3600)
    fresh = build_engine(app, app.extensions["samosval"].state, clock=clock, rng=random.Random(99))
    fresh.build_failure_rate = 0
    assert fresh.resume(clock.now) == {"builds_resumed": 1, "deployments_resumed": 0}
    resumed = build_row(db, build_id)
    assert resumed["status_since"] == clock.now and resumed["next_step_at"] is None
    for _ in range(60):
        fresh.step(clock.advance(0.5))
    done = build_row(db, build_id)
    assert done["status"] == "success"
    assert done["build_log"].startswith(interrupted["build_log"])
    assert f"resuming the build at step {interrupted['steps_done'] + 1}/" in done["build_log"]
    # The steps before the restart were not written twice.
    assert done["build_log"].count("Cloning into") == 1


def test_it_resumes_queued_builds_and_deploying_deployments(app, engine, clock, db, users, sample):
    queued = queue_build(db, users, clock.now - 5000)
    db.execute(
        "UPDATE builds SET next_step_at = ?, status_since = ? WHERE id = ?",
        (clock.now - 4000, clock.now - 5000, queued),
    )
    deploying = factories.make_deployment(db, image_id=sample["image_id"], status="deploying", name="stuck")
    db.execute(
        "UPDATE deployments SET next_step_at = ?, status_since = ? WHERE id = ?",
        (clock.now - 4000, clock.now - 5000, deploying),
    )
    assert engine.resume(clock.now) == {"builds_resumed": 1, "deployments_resumed": 1}
    engine.deploy_failure_rate = engine.build_failure_rate = 0
    for _ in range(80):
        engine.step(clock.advance(0.5))
    assert build_row(db, queued)["status"] == "success"  # not failed by the watchdog
    assert status_of(db, deploying) == "running"
    events = [line.text for line in engine.state.runtime(deploying).logs.snapshot() if line.level == "EVENT"]
    assert events[0] == "Engine restarted: rolling out again"


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.ERROR)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_an_exception_in_one_build_does_not_stop_the_others(engine, clock, db, users, monkeypatch):
    engine.build_failure_rate = 0
    broken = queue_build(db, users, clock.now, image_name="broken")
    healthy = queue_build(db, users, clock.now, image_name="healthy")
    original = engine._advance_build

    def advance(db_, row, now, counts):
        if row["id"] == broken:
            raise RuntimeError("simulated bug")
        return original(db_, row, now, counts)

    monkeypatch.setattr(engine, "_advance_build", advance)
    errors = 0
    # A handler of our own: the app's logging set-up may stop propagation to pytest's.
    collect = _Collect()
    logging.getLogger("samosval.simulator").addHandler(collect)
    try:
        for _ in range(60):
            errors += engine.step(clock.advance(0.5))["errors"]
    finally:
        logging.getLogger("samosval.simulator").removeHandler(collect)
    assert build_row(db, healthy)["status"] == "success"
    assert build_row(db, broken)["status"] == "queued"
    assert errors == 60
    assert collect.messages[0] == f"build {broken}: simulation step failed; skipped"


def test_an_exception_in_one_deployment_does_not_stop_the_others(engine, clock, db, sample, monkeypatch):
    other = factories.make_deployment(db, image_id=sample["image_id"], name="other")
    original = engine._generate_for

    def generate(entry, now, counts):
        if entry.id == sample["deployment_id"]:
            raise RuntimeError("simulated bug")
        return original(entry, now, counts)

    monkeypatch.setattr(engine, "_generate_for", generate)
    for _ in range(50):
        engine.step(clock.advance(0.1))
    assert len(engine.state.runtime(other).metrics) >= 4
    assert len(engine.state.runtime(sample["deployment_id"]).metrics) == 0


def test_the_watchdog_fails_a_stuck_build_and_deployment(engine, clock, db, users, sample, monkeypatch):
    build_id = queue_build(db, users, clock.now)
    deployment_id = factories.make_deployment(
        db, image_id=sample["image_id"], status="deploying", name="stuck"
    )

    def stuck(*args):
        raise RuntimeError("never advances")

    monkeypatch.setattr(engine, "_advance_build", stuck)
    monkeypatch.setattr(engine, "_advance_deployment", stuck)
    db.execute("UPDATE builds SET status_since = ? WHERE id = ?", (clock.now, build_id))
    db.execute("UPDATE deployments SET status_since = ? WHERE id = ?", (clock.now, deployment_id))
    engine.step(clock.advance(engine.watchdog_deploy_seconds - 1))
    assert status_of(db, deployment_id) == "deploying"
    engine.step(clock.advance(2))
    assert status_of(db, deployment_id) == "failed"
    assert build_row(db, build_id)["status"] == "queued"
    engine.step(clock.advance(engine.watchdog_build_seconds))
    build = build_row(db, build_id)
    assert build["status"] == "failed"
    assert "Watchdog" in build["error_message"] and "queued" in build["error_message"]
    audits = db.execute(
        "SELECT target_type, details FROM audit_log WHERE action = 'watchdog_timeout' ORDER BY id"
    ).fetchall()
    assert [a["target_type"] for a in audits] == ["deployment", "build"]
    assert "Watchdog" in json.loads(audits[0]["details"])["reason"]
    assert db.execute("SELECT COUNT(*) FROM alerts WHERE alert_type = 'deployment_failed'").fetchone()[0] == 1


def test_the_watchdog_limit_is_in_simulated_seconds(app, clock, rng, db, sample):
    app.config["SIM_SPEED"] = 10
    engine = build_engine(app, app.extensions["samosval"].state, clock=clock, rng=rng)
    deployment_id = factories.make_deployment(
        db, image_id=sample["image_id"], status="deploying", name="stuck"
    )
    db.execute(
        "UPDATE deployments SET status_since = ?, next_step_at = ? WHERE id = ?",
        (clock.now, clock.now + 10_000, deployment_id),
    )
    engine.step(clock.advance(engine.watchdog_deploy_seconds / 10 + 1))
    assert status_of(db, deployment_id) == "failed"


def test_the_real_thread_finishes_a_build_and_stops(app, db, users):
    from samosval.simulator import runtime

    app.config["SIM_SPEED"] = 50
    rt = app.extensions["samosval"]
    rt.engine = build_engine(app, rt.state)
    rt.engine.build_failure_rate = 0
    build_id = queue_build(db, users, time.time())
    assert runtime.start_engine(app)
    try:
        assert not runtime.start_engine(app)  # never two engines in one process
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and build_row(db, build_id)["status"] != "success":
            time.sleep(0.05)
        assert build_row(db, build_id)["status"] == "success"
        assert rt.engine.last_tick is not None
    finally:
        runtime.stop_engine(app)
    assert not rt.engine.is_alive()


def test_it_takes_its_failure_rates_from_the_config(app):
    from samosval.simulator.runtime import build_engine

    app.config.update(SIM_BUILD_FAILURE_RATE=0.0, SIM_DEPLOY_FAILURE_RATE=1.0)
    engine = build_engine(app, app.extensions["samosval"].state)
    assert (engine.build_failure_rate, engine.deploy_failure_rate) == (0.0, 1.0)


@pytest.mark.sqlite_only
def test_an_engine_started_before_its_database_answers_waits_for_it(app, tmp_path):
    """A process may start while its database is unreachable (PostgreSQL restarting):
    the engine keeps trying instead of leaving the process without an engine. Here the
    SQLite file's folder appears only after the engine started."""
    import shutil

    later = tmp_path / "later"
    rt = app.extensions["samosval"]
    engine = build_engine(app, rt.state)
    engine.db_path = str(later / "samosval.sqlite3")
    engine.start()
    try:
        time.sleep(0.3)
        assert engine.is_alive() and engine.last_tick is None
        later.mkdir()
        shutil.copyfile(app.config["DATABASE"], later / "samosval.sqlite3")
        deadline = time.monotonic() + 10
        while engine.last_tick is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert engine.last_tick is not None
    finally:
        engine.stop()
    assert not engine.is_alive()
