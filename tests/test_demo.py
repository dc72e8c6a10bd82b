"""Demo mode: a fresh database filled with a living company; never on one with data."""

from __future__ import annotations

import re

import pytest

from samosval.demo import DEMO_USERS, DemoRefused, seed_demo
from samosval.domain.requests import REQUEST_STATUSES

USER_LINE = re.compile(r"^\s+(\w+)\s+(admin|operator|developer)\s+(\S+)$")


@pytest.fixture
def seeded(app):
    return seed_demo(app)


def printed_passwords(lines) -> dict[str, str]:
    found = {}
    for line in lines:
        match = USER_LINE.match(line)
        if match and match.group(1) != "root":
            found[match.group(1)] = match.group(3)
    return found


def count(db, sql, params=()):
    return db.execute(sql, params).fetchone()[0]


def test_it_fills_a_fresh_database_with_every_request_status(seeded, db):
    statuses = {row[0] for row in db.execute("SELECT DISTINCT status FROM image_requests")}
    assert statuses == set(REQUEST_STATUSES)
    # Rows are what the UI would have written: Dockerfile, repo key, collaborators.
    for row in db.execute("SELECT * FROM image_requests"):
        assert row["dockerfile_content"].startswith(f"FROM {row['base_image']}\n")
        assert row["repo_key"]
    assert count(db, "SELECT COUNT(*) FROM request_collaborators") >= 3
    assert count(db, "SELECT COUNT(*) FROM audit_log WHERE action = 'request_create'") == 9


def test_it_builds_images_and_leaves_running_failed_and_stopped_deployments(seeded, db):
    success = db.execute("SELECT * FROM builds WHERE status = 'success'").fetchall()
    assert len(success) == 3 and all(b["image_id"] for b in success)
    assert all("Build succeeded" in b["build_log"] for b in success)
    assert count(db, "SELECT COUNT(*) FROM builds WHERE status = 'failed'") == 1
    assert count(db, "SELECT COUNT(*) FROM images") == 3
    by_status = dict(db.execute("SELECT status, COUNT(*) FROM deployments GROUP BY status").fetchall())
    assert by_status["running"] >= 3 and by_status["failed"] == 1 and by_status["stopped"] == 1
    assert count(db, "SELECT COUNT(*) FROM deployments WHERE stopped_by_operator = 1") == 1
    open_alerts = {row[0] for row in db.execute("SELECT alert_type FROM alerts WHERE resolved = 0")}
    assert open_alerts == {"build_failed", "deployment_failed"}
    outcomes = {row[0] for row in db.execute("SELECT outcome FROM webhook_deliveries")}
    assert outcomes == {"processed", "refused"}
    assert count(db, "SELECT COUNT(*) FROM audit_log WHERE action = 'deployments_restarted'") == 1


def test_it_opens_the_charts_full_and_leaves_live_work_for_the_engine(app, seeded, db, engine, clock):
    state = app.extensions["samosval"].state
    running = [row[0] for row in db.execute("SELECT id FROM deployments WHERE status = 'running'")]
    assert all(len(state.runtime(i).metrics) >= 150 for i in running)
    # One build and one rollout are left for the app's engine to play live.
    (build_status,) = db.execute("SELECT status FROM builds ORDER BY id DESC LIMIT 1").fetchone()
    (deploy_status,) = db.execute("SELECT status FROM deployments ORDER BY id DESC LIMIT 1").fetchone()
    assert (build_status, deploy_status) == ("queued", "deploying")
    engine.deploy_failure_rate = 0.0
    for _ in range(200):
        engine.step(clock.advance(0.5))
    assert count(db, "SELECT COUNT(*) FROM builds WHERE status IN ('queued', 'building')") == 0
    assert count(db, "SELECT COUNT(*) FROM deployments WHERE status = 'deploying'") == 0


def test_the_printed_passwords_and_token_work(app, seeded):
    passwords = printed_passwords(seeded)
    assert set(passwords) == {name for name, _role in DEMO_USERS}
    for username, password in passwords.items():
        client = app.test_client()
        response = client.post("/login", data={"username": username, "password": password})
        assert response.status_code == 302 and response.headers["Location"].endswith("/dashboard")
        assert client.get("/dashboard").status_code == 200
    maria = app.test_client()
    maria.post("/login", data={"username": "maria", "password": passwords["maria"]})
    metrics = maria.get("/api/deployments/1/metrics").get_json()
    assert metrics["status"] == "running" and len(metrics["cpu"]) >= 150

    token = next(line.strip() for line in seeded if line.strip().startswith("smsv_"))
    response = app.test_client().post(
        "/api/hooks/commit",
        headers={"Authorization": f"Bearer {token}"},
        json={
            "repo_url": "https://github.com/acme/payments-api.git",
            "branch": "main",
            "commit": "0123456789abcdef0123456789abcdef01234567",
        },
    )
    assert response.status_code == 200
    # payments-prod is in prod, which demo mode protects: its new release waits for approval.
    assert response.get_json()["restarted_deployments"] == [2]
    assert response.get_json()["pending_deployments"] == [1]


def test_demo_mode_protects_prod_and_shows_a_release_waiting_for_approval(app, db, seeded):
    passwords = printed_passwords(seeded)
    olga = app.test_client()
    olga.post("/login", data={"username": "olga", "password": passwords["olga"]})
    page = olga.get("/approvals").get_data(as_text=True)
    assert page.count("data-pending-release=") == 1 and "payments-prod" in page
    assert [row[0] for row in db.execute("SELECT environment FROM protected_environments")] == ["prod"]


@pytest.mark.parametrize(
    "setup",
    [
        "INSERT INTO users (username, password_hash, role, is_active, created_at) "
        "VALUES ('someone', 'x', 'developer', 1, '2026-01-01T00:00:00Z')",
        "INSERT INTO webhook_tokens (name, token_prefix, token_hash, sealed_secret, created_at) "
        "VALUES ('ci', 'smsv_abc', 'hash', 'sealed', '2026-01-01T00:00:00Z')",
    ],
)
def test_it_refuses_a_database_with_data_and_changes_nothing(app, db, setup):
    db.execute(setup)
    tables = ("users", "image_requests", "audit_log", "webhook_tokens")
    before = {t: count(db, f"SELECT COUNT(*) FROM {t}") for t in tables}
    with pytest.raises(DemoRefused) as refused:
        seed_demo(app)
    assert "refused" in refused.value.lines[0] and "Nothing was changed" in refused.value.lines[0]
    assert {t: count(db, f"SELECT COUNT(*) FROM {t}") for t in tables} == before


def test_it_refuses_to_run_twice(app, db, seeded):
    before = count(db, "SELECT COUNT(*) FROM audit_log")
    with pytest.raises(DemoRefused):
        seed_demo(app)
    assert count(db, "SELECT COUNT(*) FROM audit_log") == before


@pytest.mark.slow
def test_app_py_demo_on_a_used_database_exits_non_zero_without_serving(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from samosval.db import connect, init_db_if_needed
    from tests.live import free_port

    root = Path(__file__).resolve().parents[1]
    instance = tmp_path / "instance"
    database = instance / "samosval.sqlite3"
    init_db_if_needed(str(database))
    db = connect(str(database))
    db.execute(
        "INSERT INTO users (username, password_hash, role, is_active, created_at) "
        "VALUES ('someone', 'x', 'developer', 1, '2026-01-01T00:00:00Z')"
    )
    db.commit()
    db.close()
    env = {**os.environ, "SAMOSVAL_INSTANCE_PATH": str(instance), "SAMOSVAL_DEMO": ""}
    result = subprocess.run(
        [sys.executable, "app.py", "--demo", "--port", str(free_port())],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "refused" in result.stderr
    assert "is running" not in result.stdout


def test_the_story_spreads_over_the_past_days(seeded, db):
    import time

    from samosval.timeutil import iso_to_epoch

    stamps = [
        iso_to_epoch(row[0])
        for row in db.execute(
            "SELECT created_at FROM audit_log WHERE action NOT IN ('build_start', 'deployment_create') "
            "OR target_id NOT IN (SELECT MAX(id) FROM builds UNION SELECT MAX(id) FROM deployments)"
        )
    ]
    now = time.time()
    assert min(stamps) >= now - 14 * 86400 and max(stamps) <= now + 5
    days = {int(stamp // 86400) for stamp in stamps}
    assert len(days) >= 5, "every row on the same day"
    deployments = [iso_to_epoch(r[0]) for r in db.execute("SELECT created_at FROM deployments")]
    assert len({int(d // 3600) for d in deployments}) >= 3


def test_the_charts_start_after_the_deployment_was_created(app, seeded, db):
    from samosval.timeutil import iso_to_epoch

    state = app.extensions["samosval"].state
    for deployment_id, created in db.execute(
        "SELECT id, created_at FROM deployments WHERE status = 'running'"
    ):
        points = list(state.runtime(deployment_id).metrics.since())
        assert points and points[0][0] >= iso_to_epoch(created)


def test_the_live_build_succeeds_and_lasts_30_to_60_seconds(app, engine, clock, db):
    seed_demo(app)  # after the engine fixture: the live build is guided by this engine
    engine.build_failure_rate = 1.0  # even when every other build fails
    build_id, started = db.execute("SELECT id, status_since FROM builds ORDER BY id DESC LIMIT 1").fetchone()
    finished_at = None
    for _ in range(400):
        engine.step(clock.advance(0.25))
        status = db.execute("SELECT status FROM builds WHERE id = ?", (build_id,)).fetchone()[0]
        if status not in ("queued", "building"):
            finished_at = clock()
            break
    assert status == "success"
    assert 30 <= finished_at - started <= 60


def test_a_memory_warning_agrees_with_the_ram_the_charts_show():
    import random

    from samosval.simulator import textgen

    rng = random.Random(7)
    calm = [textgen.runtime_line(rng, "api", "api:1", 2, ram=43.0)[1] for _ in range(3000)]
    assert not any("memory" in line for line in calm)
    busy = [
        line
        for _level, line in (textgen.runtime_line(rng, "api", "api:1", 2, ram=91.4) for _ in range(3000))
        if "memory" in line
    ]
    assert busy and all("memory usage 91% of limit" in line for line in busy)
