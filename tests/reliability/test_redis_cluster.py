"""Two app processes sharing one database and one Redis (issue 15).

Process A (``python app.py``) runs the engine; process B (the production command)
does not. A viewer on B receives every line A's engine writes, in order and without
a gap, under the same ids as a viewer on A; failed logins count against one limit
across both processes; when Redis restarts, the viewer on B is told ``reset`` and
goes on with the new stream's lines.

SQLite lets two processes share one file, which is enough here: what is shared
through Redis is under test. (The PostgreSQL pass runs the same suite on it.)"""

from __future__ import annotations

import http.client
import json
import os

from samosval.db import connect
from tests import factories
from tests.live import login_cookie, read_events
from tests.reliability import PASSWORD, AppProcess, Client, add_users, prepare_database


def open_stream(server: AppProcess, cookie: str, deployment_id: int):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("GET", f"/api/deployments/{deployment_id}/logs/stream", headers={"Cookie": cookie})
    response = conn.getresponse()
    assert response.status == 200, response.read()[:300]
    return conn, response


def lines(events) -> dict[str, str]:
    """id -> text of the line events, in order of arrival."""
    return {e["id"]: json.loads(e["data"])["text"] for e in events if "id" in e}


def seqs(events) -> list[int]:
    return [int(e["id"].rsplit("-", 1)[1]) for e in events if "id" in e]


def failed_login(server: AppProcess) -> int:
    client = Client(server.port)
    try:
        _status, _headers, page = client.get("/login")
        client.scrape_csrf(page)
        status, _headers, _body = client.post("/login", {"username": "dana", "password": "not-the-password"})
        return status
    finally:
        client.close()


def test_two_processes_share_lines_ids_the_login_limit_and_survive_a_redis_restart(tmp_path, redis_server):
    instance = tmp_path / "instance"
    db = connect(prepare_database(instance))
    try:
        ids = add_users(db, [("oleg", "operator"), ("dana", "developer")])
        request_id = factories.make_request(db, owner_id=ids["dana"], status="approved", image_name="cluster")
        image_id = factories.make_image(db, request_id=request_id, name="cluster")
        deployment_id = factories.make_deployment(db, image_id=image_id, name="cluster-running")
    finally:
        db.close()
    shared = {
        "SAMOSVAL_REDIS_URL": redis_server.url,
        "SAMOSVAL_REDIS_PREFIX": f"cluster-test-{os.getpid()}:",
        "SAMOSVAL_LOGIN_RATE_LIMIT_IP": "4 per minute",
        "SAMOSVAL_LOGIN_RATE_LIMIT_USER": "4 per minute",
        "SAMOSVAL_SSE_HEARTBEAT_SECONDS": "1",
    }
    engine = AppProcess(instance, tmp_path / "a.log", speed=10.0, extra_env=shared)
    follower = AppProcess(  # the production command: gunicorn's gevent worker
        instance,
        tmp_path / "b.log",
        speed=10.0,
        extra_env={**shared, "SAMOSVAL_SIMULATOR_AUTOSTART": "0"},
        production=True,
    )
    streams = []
    try:
        conn_a, on_a = open_stream(engine, login_cookie(engine.url, "oleg", PASSWORD), deployment_id)
        conn_b, on_b = open_stream(follower, login_cookie(follower.url, "oleg", PASSWORD), deployment_id)
        streams += [conn_a, conn_b]
        got_b = read_events(on_b, lambda found: len(seqs(found)) >= 40, limit=2000)
        last = seqs(got_b)[-1]
        got_a = read_events(on_a, lambda found: last in seqs(found), limit=2000)
        # B: every line, in order, no gap; the same ids and texts as on A.
        assert seqs(got_b) == list(range(seqs(got_b)[0], last + 1))
        on_both = set(lines(got_a)) & set(lines(got_b))
        assert len(on_both) >= 40
        assert {i: lines(got_a)[i] for i in on_both} == {i: lines(got_b)[i] for i in on_both}
        epoch = next(iter(lines(got_b))).rsplit("-", 1)[0]

        # The login limit counts failures on both processes together.
        statuses = [failed_login(engine if n % 2 == 0 else follower) for n in range(5)]
        assert 429 not in statuses[:4] and statuses[4] == 429, statuses

        # Redis restarts (nothing persisted): the viewer on B hears ``reset``, then the
        # lines of the new stream, numbered afresh under a new epoch.
        redis_server.restart()
        after = read_events(
            on_b,
            lambda found: (
                any(e.get("event") == "reset" for e in found)
                and len([e for e in found[[x.get("event") for x in found].index("reset") :] if "id" in e])
                >= 5
            ),
            limit=5000,
        )
        reset_at = [e.get("event") for e in after].index("reset")
        fresh = after[reset_at:]
        fresh_epochs = {i.rsplit("-", 1)[0] for i in lines(fresh)}
        assert len(fresh_epochs) == 1 and epoch not in fresh_epochs
        assert seqs(fresh) == list(range(seqs(fresh)[0], seqs(fresh)[-1] + 1))
        assert "Traceback" not in engine.log_text() + follower.log_text()
    finally:
        for conn in streams:
            conn.close()
        engine.stop()
        follower.stop()
