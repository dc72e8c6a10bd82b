"""Disk full, read-only or vanished database: the app answers 503 with a clear
message (a page for browsers, JSON for /api and fetch callers) instead of a
500, leaves no half-written rows, keeps serving what only reads, and works
again as soon as the condition clears. The engine survives the same errors.

The faults are SQLite's own: ``PRAGMA max_page_count`` pinned to the current
size makes any write that needs a new page fail with "database or disk is
full" (SQLITE_FULL, as on a full disk); ``PRAGMA query_only`` gives "attempt to
write a readonly database" (SQLITE_READONLY, as on a read-only mount; tests
run as root, for whom ``chmod`` would change nothing).
"""

from __future__ import annotations

import sqlite3

import pytest
from flask_babel import force_locale, gettext

from samosval import db as db_module
from samosval.domain import builds as build_domain
from samosval.domain import requests as request_domain
from tests import factories

# The faults are SQLite's (PRAGMAs on the file); PostgreSQL's outage is tests/reliability/test_failover.py's.
pytestmark = pytest.mark.sqlite_only

MESSAGE = "The database is unavailable right now. Try again shortly."
BIG_COMMANDS = "\n".join(f"echo {n:03d} " + "x" * 85 for n in range(100))  # ~9.5 KB: new pages


class StorageFault:
    """Wraps ``samosval.db.connect`` (used by request threads and the engine) so
    that connections opened while a fault is on cannot write."""

    def __init__(self, monkeypatch):
        self.mode: str | None = None
        self._real = db_module.connect
        monkeypatch.setattr(db_module, "connect", self.connect)

    def connect(self, path: str) -> sqlite3.Connection:
        if self.mode == "gone":
            raise sqlite3.OperationalError("unable to open database file")
        db = self._real(path)
        if self.mode == "full":
            pages = db.execute("PRAGMA page_count").fetchone()[0]
            db.execute(f"PRAGMA max_page_count = {pages}")
        elif self.mode == "readonly":
            db.execute("PRAGMA query_only = ON")
        return db


@pytest.fixture
def fault(monkeypatch):
    return StorageFault(monkeypatch)


def translated(app, text: str = MESSAGE) -> str:
    with app.test_request_context(), force_locale("ru"):
        return gettext(text)


def counts(db) -> dict:
    return {
        table: db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        for table in (
            "image_requests",
            "request_collaborators",
            "audit_log",
            "deployments",
            "builds",
            "alerts",
        )
    }


def new_request_form(image_name: str) -> dict:
    return {
        "image_name": image_name,
        "repo_url": "https://github.com/acme/big.git",
        "repo_branch": "main",
        "update_mode": "continuous",
        "target_commit": "",
        "base_image": "python:3.12-slim",
        "run_commands": BIG_COMMANDS,
        "entrypoint": "make run",
        "ram_mb": "512",
        "vcpu": "1",
        "version_tag": "1.0.0",
        "collaborators": "colin",
        "owner": "carl",
    }


def test_it_answers_503_with_a_page_when_the_disk_is_full_and_recovers(app, auth, db, fault):
    carl = auth.client_for("carl")
    db.execute("VACUUM")  # no free pages left to reuse: a new row must grow the file
    before = counts(db)
    fault.mode = "full"

    response = carl.post("/requests/new", data=new_request_form("big-service"))
    assert response.status_code == 503
    assert response.mimetype == "text/html"
    assert translated(app) in response.get_data(as_text=True)
    assert counts(db) == before, "a failed write left rows behind"
    # Reading does not need space: the portal stays usable for looking things up.
    assert carl.get("/requests").status_code == 200
    assert carl.get("/dashboard").status_code == 200

    fault.mode = None
    response = carl.post("/requests/new", data=new_request_form("big-service"))
    assert response.status_code == 302
    request_id = int(response.headers["Location"].rsplit("/", 1)[1])
    row = db.execute("SELECT run_commands FROM image_requests WHERE id = ?", (request_id,)).fetchone()
    assert row["run_commands"] == BIG_COMMANDS
    assert (
        db.execute(
            "SELECT username FROM request_collaborators WHERE request_id = ?", (request_id,)
        ).fetchone()[0]
        == "colin"
    )
    assert (
        db.execute(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'request_create' AND target_id = ?", (request_id,)
        ).fetchone()[0]
        == 1
    )


def test_it_answers_503_json_to_api_callers_when_the_database_is_read_only(app, auth, db, sample, fault):
    oleg = auth.client_for("oleg")
    deployment_id = sample["deployment_id"]
    logs = app.extensions["samosval"].state.runtime(deployment_id).logs
    before = counts(db)
    lines_before = logs.last_seq
    fault.mode = "readonly"

    # The deployment page's own fetch() call.
    response = oleg.post(f"/deployments/{deployment_id}/stop", headers={"Accept": "application/json"})
    assert response.status_code == 503
    assert response.get_json() == {"error": translated(app)}
    assert (
        db.execute("SELECT status FROM deployments WHERE id = ?", (deployment_id,)).fetchone()[0] == "running"
    )
    assert logs.last_seq == lines_before, "the live log announced a stop that never happened"
    # JSON reads keep working.
    assert oleg.get(f"/api/deployments/{deployment_id}/metrics").status_code == 200
    assert (
        oleg.get(f"/requests/{sample['request_id']}", headers={"Accept": "application/json"}).status_code
        == 200
    )

    # A browser form: the themed page, and the stored request untouched.
    stored = dict(request_domain.get_request(db, sample["request_id"]))
    values = request_domain.values_from_row(stored)
    values["run_commands"] = "echo changed"
    response = oleg.post(f"/requests/{sample['request_id']}/edit", data=values)
    assert response.status_code == 503
    assert translated(app) in response.get_data(as_text=True)
    assert dict(request_domain.get_request(db, sample["request_id"])) == stored
    response = oleg.post(f"/requests/{sample['request_id']}/build")
    assert response.status_code == 503
    assert counts(db) == before

    fault.mode = None
    response = oleg.post(f"/deployments/{deployment_id}/stop", headers={"Accept": "application/json"})
    assert response.status_code == 200 and response.get_json()["status"] == "stopped"
    assert (
        db.execute(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'deployment_stop' AND target_id = ?",
            (deployment_id,),
        ).fetchone()[0]
        == 1
    )
    assert oleg.post(f"/requests/{sample['request_id']}/edit", data=values).status_code == 302


def test_it_answers_503_when_the_database_cannot_be_opened_at_all(app, auth, sample, fault):
    """The volume is gone: even loading the signed-in user fails. Still a clear 503,
    not a bare 500 from an error page that itself needs the database."""
    oleg = auth.client_for("oleg")
    fault.mode = "gone"
    page = oleg.get("/deployments")
    assert page.status_code == 503
    assert translated(app) in page.get_data(as_text=True)
    api = oleg.get(f"/api/deployments/{sample['deployment_id']}/metrics")
    assert api.status_code == 503
    assert api.get_json() == {"error": {"code": "unavailable", "message": translated(app)}}
    fault.mode = None
    assert oleg.get("/deployments").status_code == 200


def test_it_rolls_a_failed_transaction_back_and_keeps_the_original_error(app, db):
    db.execute("VACUUM")
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")
    before = counts(db)
    with pytest.raises(sqlite3.OperationalError, match="database or disk is full"), db_module.transaction(db):
        db.execute(
            "INSERT INTO alerts (alert_type, target_type, target_id, message, resolved, "
            "created_at) VALUES ('build_failed', 'build', 1, 'fits', 0, 'now')"
        )
        db.execute(
            "INSERT INTO alerts (alert_type, target_type, target_id, message, resolved, "
            "created_at) VALUES ('build_failed', 'build', 2, ?, 0, 'now')",
            ("x" * 20_000,),
        )
    assert not db.in_transaction
    assert counts(db) == before, "the first insert of the failed transaction survived"
    db.execute("PRAGMA max_page_count = 1073741823")  # space freed
    with db_module.transaction(db):
        db.execute(
            "INSERT INTO alerts (alert_type, target_type, target_id, message, resolved, "
            "created_at) VALUES ('build_failed', 'build', 3, 'after', 0, 'now')"
        )
    assert counts(db)["alerts"] == before["alerts"] + 1


def test_it_releases_the_write_lock_when_commit_itself_fails(app, db):
    """A COMMIT that fails (here a deferred foreign key; on a real disk, an I/O error
    writing the log) must not leave the transaction open: the engine keeps its
    connection for its whole life, and an open write transaction there would
    lock every other writer out for good."""
    with pytest.raises(sqlite3.IntegrityError), db_module.transaction(db):
        db.execute("PRAGMA defer_foreign_keys = ON")
        db.execute(
            "INSERT INTO builds (request_id, status, build_log, built_by, created_at, updated_at) "
            "VALUES (999999, 'queued', '', 1, 'now', 'now')"
        )
    assert not db.in_transaction
    other = sqlite3.connect(app.config["DATABASE"], timeout=0.2, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # "database is locked" if the lock was kept
        other.execute("ROLLBACK")
    finally:
        other.close()
    assert db.execute("SELECT COUNT(*) FROM builds").fetchone()[0] == 0


@pytest.mark.parametrize("mode", ["readonly", "full"])
def test_it_keeps_the_engine_stepping_through_storage_errors(
    app, engine, clock, db, users, sample, fault, mode
):
    engine.build_failure_rate = engine.deploy_failure_rate = 0
    request_id = factories.make_request(
        db,
        owner_id=users["dana"],
        status="approved",
        image_name="faulty",
        run_commands="pip install -r requirements.txt\nmake assets",
    )
    operator = type("Operator", (), {"id": users["oleg"], "username": "oleg", "role": "operator"})()
    build_id = build_domain.start_build(db, request_domain.get_request(db, request_id), operator, clock.now)
    deployment_id = factories.make_deployment(
        db, image_id=sample["image_id"], status="deploying", name="faulty"
    )
    db.execute("VACUUM")
    log_before = db.execute("SELECT build_log FROM builds WHERE id = ?", (build_id,)).fetchone()[0]

    fault.mode = mode
    errors = 0
    for _ in range(40):  # 20 simulated seconds in which every write fails
        errors += engine.step(clock.advance(0.5))["errors"]
    build = db.execute("SELECT status, build_log FROM builds WHERE id = ?", (build_id,)).fetchone()
    if mode == "readonly":
        assert errors > 0
        assert build["status"] == "queued" and build["build_log"] == log_before
        assert (
            db.execute("SELECT status FROM deployments WHERE id = ?", (deployment_id,)).fetchone()[0]
            == "deploying"
        )
    else:
        # Small updates may still fit in pages the file already has; the growing
        # build log does not. Whatever happened, it is whole: never a torn line.
        assert build["build_log"].startswith(log_before) and build["build_log"].endswith("\n")

    fault.mode = None
    for _ in range(120):
        engine.step(clock.advance(0.5))
    build = db.execute("SELECT status, build_log FROM builds WHERE id = ?", (build_id,)).fetchone()
    assert build["status"] == "success", build["build_log"][-500:]
    assert build["build_log"].startswith(log_before)
    assert build["build_log"].count("Build started on") == 1
    assert (
        db.execute("SELECT status FROM deployments WHERE id = ?", (deployment_id,)).fetchone()[0] == "running"
    )
    assert db.execute("SELECT COUNT(*) FROM images WHERE request_id = ?", (request_id,)).fetchone()[0] == 1


def test_it_answers_503_to_the_commit_webhook_so_the_sender_retries(app, client, db, users, sample, fault):
    from samosval.domain import tokens

    token = tokens.create_token(
        db, "ci", secret_key=app.secret_key, actor_id=users["alice"], now=1_800_000_000.0
    )[1]

    def deliver():
        return client.post(
            "/api/hooks/commit",
            csrf=False,
            headers={"Authorization": f"Bearer {token}"},
            json={
                "repo_url": "https://github.com/acme/billing.git",
                "branch": "main",
                "commit": "cafebabe" * 5,
            },
        )

    before = counts(db)
    deliveries = db.execute("SELECT COUNT(*) FROM webhook_deliveries").fetchone()[0]
    fault.mode = "readonly"
    response = deliver()
    assert response.status_code == 503
    assert response.get_json() == {"error": {"code": "unavailable", "message": translated(app)}}
    assert counts(db) == before
    assert db.execute("SELECT COUNT(*) FROM webhook_deliveries").fetchone()[0] == deliveries
    assert (
        db.execute("SELECT status FROM deployments WHERE id = ?", (sample["deployment_id"],)).fetchone()[0]
        == "running"
    )
    fault.mode = None
    response = deliver()  # the sender's retry
    assert response.status_code == 200 and response.get_json()["restarted_deployments"] == [
        sample["deployment_id"]
    ]
