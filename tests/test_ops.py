"""Health, Prometheus metrics, request ids, structured logs, backups."""

from __future__ import annotations

import io
import json
import logging
import sqlite3
import threading

import pytest

from samosval import create_app
from samosval.backup import backup_database
from samosval.db import connect
from tests.conftest import PASSWORD


@pytest.fixture
def ticking(engine, clock, monkeypatch):
    """The engine as if its thread were alive and had just ticked."""
    monkeypatch.setattr(engine, "is_alive", lambda: True)
    engine.step(clock.now)
    return engine


def test_it_reports_healthy(client, ticking):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok" and body["db"] == "ok" and body["engine"] == "running"
    assert body["version"]
    # Live data: this process's memory, or the Redis every process shares (PostgreSQL pass).
    assert body["live"] == ("redis" if client.application.config["REDIS_URL"] else "memory")


def test_it_reports_a_stopped_engine(client, engine):
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["engine"] == "stopped"
    assert response.get_json()["failing"] == ["engine"]


def test_it_reports_a_stalled_engine(client, ticking, clock):
    clock.advance(60)
    response = client.get("/healthz")
    assert response.status_code == 503 and response.get_json()["engine"] == "stalled"


def test_it_reports_an_unreachable_database(app, client, ticking, tmp_path):
    app.config["DATABASE"] = str(tmp_path / "missing-dir" / "db.sqlite3")
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["db"].startswith("error") and "db" in response.get_json()["failing"]


def test_it_needs_no_login_for_health(client, ticking):
    assert client.get("/healthz").status_code == 200


def test_it_exposes_prometheus_metrics_that_count(client, users, ticking):
    client.get("/login")
    client.post("/login", data={"username": "dana", "password": "wrong-password"})
    text = client.get("/metrics").get_data(as_text=True)
    assert 'samosval_http_requests_total{method="GET",route="/login",status="200"} 1.0' in text
    assert "samosval_http_request_duration_seconds_bucket" in text
    assert "samosval_login_failures_total 1.0" in text
    assert "samosval_engine_running 1.0" in text
    assert "samosval_engine_tick_lag_seconds 0.0" in text  # the fake clock has not moved since the tick
    assert "samosval_sse_open_streams 0.0" in text


def test_it_counts_deployments_and_builds_by_status(client, sample, db, users):
    from tests import factories

    factories.make_build(db, request_id=sample["request_id"], built_by=users["oleg"], status="failed")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'samosval_deployments{status="running"} 1.0' in text
    assert 'samosval_builds{status="failed"} 1.0' in text


def test_it_protects_metrics_outside_the_allow_list(app, client):
    app.config["METRICS_ALLOW"] = "10.1.2.3"
    assert client.get("/metrics").status_code == 403
    app.config["METRICS_TOKEN"] = "scrape-token-123"
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert client.get("/metrics", headers={"Authorization": "Bearer scrape-token-123"}).status_code == 200


def test_it_generates_a_request_id(client):
    response = client.get("/login")
    assert len(response.headers["X-Request-Id"]) == 32


def test_it_keeps_a_sane_incoming_request_id(client):
    response = client.get("/login", headers={"X-Request-Id": "abc-123"})
    assert response.headers["X-Request-Id"] == "abc-123"


@pytest.mark.parametrize("bad", ["a" * 200, "x y", "<script>", "id;drop=1"])
def test_it_replaces_an_insane_request_id(client, bad):
    response = client.get("/login", headers={"X-Request-Id": bad})
    assert response.headers["X-Request-Id"] != bad and len(response.headers["X-Request-Id"]) == 32


def test_it_puts_the_request_id_on_audit_rows(client, users, db):
    client.post(
        "/login", data={"username": "dana", "password": PASSWORD}, headers={"X-Request-Id": "trace-42"}
    )
    row = db.execute("SELECT request_id FROM audit_log WHERE action = 'login'").fetchone()
    assert row["request_id"] == "trace-42"


def _app_with_log_stream(tmp_path, json_logs):
    stream = io.StringIO()
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "k",
            "SIMULATOR_AUTOSTART": False,
            "DATABASE": str(tmp_path / "db.sqlite3"),
            "LOG_STREAM": stream,
            "JSON_LOGS": json_logs,
        },
        instance_path=str(tmp_path / "i"),
    )
    from tests.conftest import CSRFClient

    app.test_client_class = CSRFClient
    return app, stream


def _reset_logging():
    """Undo configure_logging so later tests (and caplog) see records again."""
    logger = logging.getLogger("samosval")
    logger.handlers.clear()
    logger.propagate = True
    logger.setLevel(logging.NOTSET)


def test_it_writes_json_log_lines_with_the_request_id(tmp_path):
    app, stream = _app_with_log_stream(tmp_path, json_logs=True)
    try:
        app.test_client().get("/login", headers={"X-Request-Id": "json-1"})
        lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
        access = [line for line in lines if line["logger"] == "samosval.access"]
        assert access, stream.getvalue()
        entry = access[-1]
        assert entry["request_id"] == "json-1" and entry["route"] == "/login"
        assert entry["status"] == 200 and "duration_ms" in entry and entry["level"] == "INFO"
        assert {"time", "message", "user"} <= set(entry)
    finally:
        _reset_logging()


def test_it_writes_readable_text_logs_by_default(tmp_path):
    app, stream = _app_with_log_stream(tmp_path, json_logs=False)
    try:
        app.test_client().get("/login", headers={"X-Request-Id": "text-1"})
        assert "[text-1 -] GET /login -> 200" in stream.getvalue()
    finally:
        _reset_logging()


def test_it_never_logs_passwords_or_tokens(tmp_path):
    app, stream = _app_with_log_stream(tmp_path, json_logs=True)
    try:
        client = app.test_client()
        client.post("/login", data={"username": "root", "password": "root-secret-pw"})
        client.post("/login", data={"username": "root", "password": "root"})
        client.post(
            "/api/hooks/commit",
            json={"repo_url": "https://x/y", "branch": "main", "commit": "a" * 40},
            headers={"Authorization": "Bearer svt_very_secret_token_value"},
            csrf=False,
        )
        text = stream.getvalue()
        assert "root-secret-pw" not in text
        assert "svt_very_secret_token_value" not in text
        assert '"password"' not in text
    finally:
        _reset_logging()


@pytest.mark.sqlite_only
def test_it_backs_up_while_the_app_writes(app, tmp_path):
    path = app.config["DATABASE"]
    stop = threading.Event()
    written = []

    def writer():
        db = connect(path)
        try:
            while not stop.is_set():
                db.execute(
                    "INSERT INTO audit_log (action, created_at, details) VALUES ('login', '2026-01-01T00:00:00Z', ?)",
                    ("x" * 500,),
                )
                written.append(1)
        finally:
            db.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while len(written) < 200:
            pass
        result = backup_database(path, str(tmp_path / "backup" / "copy.sqlite3"), pages_per_step=2)
    finally:
        stop.set()
        thread.join()
    assert result["integrity"] == "ok"
    copy = sqlite3.connect(result["path"])
    assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert copy.execute("SELECT COUNT(*) FROM users WHERE username='root'").fetchone()[0] == 1
    assert copy.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0] >= 200
    copy.close()


@pytest.mark.sqlite_only
def test_cli_backup(runner, tmp_path):
    target = tmp_path / "b.sqlite3"
    result = runner.invoke(args=["backup", str(target)])
    assert result.exit_code == 0, result.output
    assert "integrity ok" in result.output and target.exists()


def test_it_takes_the_client_address_from_a_trusted_proxy(tmp_path):
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "k",
            "SIMULATOR_AUTOSTART": False,
            "DATABASE": str(tmp_path / "db.sqlite3"),
            "TRUSTED_PROXIES": 1,
        },
        instance_path=str(tmp_path / "i"),
    )
    client = app.test_client()
    # nginx on 127.0.0.1 forwards an outside client: /metrics must not treat it as local
    assert client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 403
    assert client.get("/metrics").status_code == 200
