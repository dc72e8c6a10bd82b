"""The engine and releases: a rollout's outcome lands on its release, and pending
approvals expire after SAMOSVAL_APPROVAL_EXPIRY_HOURS, stepped on a fake clock."""

from __future__ import annotations

from types import SimpleNamespace

from samosval.domain import deployments as deployment_domain
from samosval.domain import environments
from samosval.domain import releases as release_domain


def person(users, name, role):
    return SimpleNamespace(id=users[name], username=name, role=role, is_authenticated=True)


def create(db, engine, users, sample, now, environment="dev"):
    image = db.execute("SELECT * FROM images WHERE id = ?", (sample["image_id"],)).fetchone()
    form = {"name": "billing", "environment": environment, "replicas": "1", "ports": ""}
    return deployment_domain.create_deployment(
        db, engine.state, image, person(users, "oleg", "operator"), form, now
    )


def test_the_engine_records_running_on_the_release(engine, clock, db, users, sample):
    engine.deploy_failure_rate = 0
    deployment_id = create(db, engine, users, sample, clock.now)
    for _ in range(20):
        engine.step(clock.advance(1.0))
    (release,) = release_domain.list_releases(db, deployment_id)
    assert release["status"] == "running" and release["finished_at"]


def test_the_engine_records_a_failure_and_its_reason_on_the_release(engine, clock, db, users, sample):
    engine.deploy_failure_rate = 1.0
    deployment_id = create(db, engine, users, sample, clock.now)
    for _ in range(20):
        engine.step(clock.advance(1.0))
    (release,) = release_domain.list_releases(db, deployment_id)
    assert release["status"] == "failed" and release["failure_reason"]
    alert = db.execute("SELECT message FROM alerts").fetchone()[0]
    assert release["failure_reason"] in alert


def test_a_pending_release_expires_after_the_configured_hours(app, engine, clock, db, users, sample):
    assert engine.approval_expiry_hours == app.config["APPROVAL_EXPIRY_HOURS"] == 24
    engine.approval_expiry_hours = 2
    environments.set_protected(db, person(users, "alice", "admin"), "prod", True, clock.now)
    deployment_id = create(db, engine, users, sample, clock.now, environment="prod")
    engine.step(clock.advance(2 * 3600 - 5))
    assert release_domain.list_releases(db, deployment_id)[0]["status"] == "pending_approval"
    engine.step(clock.advance(10))
    release = release_domain.list_releases(db, deployment_id)[0]
    assert release["status"] == "expired" and release["decision_reason"] == "not approved in time"
    row = deployment_domain.get_deployment(db, deployment_id)
    assert row["status"] == "stopped"  # nothing rolled out
    lines = [line.text for line in engine.state.runtime(deployment_id).logs.snapshot()]
    assert lines[-1] == "v1 expired: not approved within 2 hours"


def test_the_expiry_setting_comes_from_the_environment(monkeypatch, tmp_path):
    from samosval import create_app

    monkeypatch.setenv("SAMOSVAL_APPROVAL_EXPIRY_HOURS", "0.5")
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "x",
            "SIMULATOR_AUTOSTART": False,
            "DATABASE": str(tmp_path / "db.sqlite3"),
        },
        instance_path=str(tmp_path / "instance"),
    )
    assert app.extensions["samosval"].engine.approval_expiry_hours == 0.5
