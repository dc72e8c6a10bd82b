"""The production command (``gunicorn -c gunicorn.conf.py wsgi:app``: one worker on
gevent): pages and live streams together, a clean SIGTERM."""

from __future__ import annotations

import http.client
import signal
import sqlite3
import time

import pytest

from samosval.db import connect
from tests import factories
from tests.live import AppProcess, login_cookie, read_events


@pytest.fixture
def production(tmp_path):
    server = AppProcess(tmp_path / "instance", tmp_path / "gunicorn.log", speed=5.0, production=True)
    yield server
    server.stop()


def seed_deployment(server, username="opsuser", role="operator") -> int:
    """A running deployment of a request ``username`` owns."""
    user_id = server.create_user(username, role)
    db = connect(server.target)
    try:
        request_id = factories.make_request(db, owner_id=user_id, status="approved")
        image_id = factories.make_image(db, request_id=request_id)
        return factories.make_deployment(db, image_id=image_id)
    finally:
        db.close()


def open_stream(server, cookie: str, deployment_id: int) -> http.client.HTTPResponse:
    """An open stream; ``close(response)`` ends it."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
    conn.request("GET", f"/api/deployments/{deployment_id}/logs/stream", headers={"Cookie": cookie})
    response = conn.getresponse()
    response.connection = conn
    return response


def close(response) -> None:
    response.close()
    response.connection.close()


def get(server, path: str, cookie: str = "") -> int:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
    try:
        conn.request("GET", path, headers={"Cookie": cookie} if cookie else {})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_it_serves_pages_while_more_streams_are_open_than_it_had_threads(production):
    """The old gthread setup froze with as many streams as threads (64): each stream
    is now a greenlet, and pages keep answering. 80 streams from four accounts."""
    deployment_id = seed_deployment(production)
    cookies = [login_cookie(production.url, "opsuser")]
    for n in range(3):
        production.create_user(f"viewer{n}", "operator")
        cookies.append(login_cookie(production.url, f"viewer{n}"))
    streams = [open_stream(production, cookie, deployment_id) for cookie in cookies for _ in range(20)]
    assert [response.status for response in streams] == [200] * 80
    assert production.thread_count() < 10  # greenlets, not a thread per stream
    assert get(production, "/login") == 200 and get(production, "/healthz") == 200
    for path in ("/deployments", f"/deployments/{deployment_id}"):
        assert get(production, path, cookies[0]) == 200, path
    events = read_events(streams[-1], lambda found: any("id" in e for e in found))
    assert any("id" in e for e in events)
    for response in streams:
        close(response)


def test_it_streams_then_stops_cleanly_on_sigterm(production):
    deployment_id = seed_deployment(production)
    cookie = login_cookie(production.url, "opsuser")
    response = open_stream(production, cookie, deployment_id)
    assert response.status == 200
    assert response.getheader("Content-Type").startswith("text/event-stream")
    assert response.getheader("X-Accel-Buffering") == "no"
    events = read_events(response, lambda found: any("id" in e for e in found))
    assert any(e.get("event") == "status" for e in events)

    started = time.monotonic()
    production.process.send_signal(signal.SIGTERM)
    code = production.process.wait(30)
    assert code == 0, production.log_text()
    assert time.monotonic() - started < 15, "SIGTERM took too long: streams held the worker"
    close(response)
    check = sqlite3.connect(production.target)
    assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    check.close()
