"""The production way to run Samosval: gunicorn, one worker, threads; a live SSE
stream through it; a clean SIGTERM."""
from __future__ import annotations

import http.client
import http.cookiejar
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from samosval.db import connect
from samosval.domain import users as user_domain
from tests import factories
from tests.live import die_with_parent, free_port

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def gunicorn_server(tmp_path):
    port = free_port()
    env = dict(os.environ, SAMOSVAL_INSTANCE_PATH=str(tmp_path / "instance"),
               SAMOSVAL_SECRET_KEY="gunicorn-test", SAMOSVAL_BIND=f"127.0.0.1:{port}",
               SAMOSVAL_SIM_SPEED="5", SAMOSVAL_THREADS="8")
    log = open(tmp_path / "gunicorn.log", "w")
    process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
                               cwd=str(ROOT), env=env, stdout=log, stderr=subprocess.STDOUT,
                               preexec_fn=die_with_parent)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError((tmp_path / "gunicorn.log").read_text())
        time.sleep(0.2)
    yield {"process": process, "port": port, "base": base,
           "db": str(tmp_path / "instance" / "samosval.sqlite3"), "log": tmp_path / "gunicorn.log"}
    if process.poll() is None:
        process.kill()
        process.wait(5)
    log.close()


def login(base: str, username: str, password: str):
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(base + "/login").read().decode()
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    data = urllib.parse.urlencode({"username": username, "password": password, "csrf_token": token}).encode()
    opener.open(base + "/login", data=data)
    return "; ".join(f"{c.name}={c.value}" for c in jar)


def test_it_serves_health_and_a_live_stream_then_stops_cleanly(gunicorn_server):
    db = connect(gunicorn_server["db"])
    user_id = user_domain.create_user(db, "opsuser", "password123", "operator", now=time.time())
    request_id = factories.make_request(db, owner_id=user_id, status="approved")
    image_id = factories.make_image(db, request_id=request_id)
    deployment_id = factories.make_deployment(db, image_id=image_id)
    db.close()

    with urllib.request.urlopen(gunicorn_server["base"] + "/healthz", timeout=5) as response:
        assert b'"engine":"running"' in response.read().replace(b" ", b"")

    cookie = login(gunicorn_server["base"], "opsuser", "password123")
    conn = http.client.HTTPConnection("127.0.0.1", gunicorn_server["port"], timeout=20)
    conn.request("GET", f"/api/deployments/{deployment_id}/logs/stream", headers={"Cookie": cookie})
    response = conn.getresponse()
    assert response.status == 200
    assert response.getheader("Content-Type").startswith("text/event-stream")
    assert response.getheader("X-Accel-Buffering") == "no"
    received = b""
    deadline = time.monotonic() + 15
    while b"\ndata:" not in received and b"data:" not in received and time.monotonic() < deadline:
        received += response.fp.read1(4096) if hasattr(response.fp, "read1") else response.read(1)
    assert b"data:" in received, "no log event arrived through gunicorn"

    started = time.monotonic()
    gunicorn_server["process"].send_signal(signal.SIGTERM)
    code = gunicorn_server["process"].wait(30)
    assert code == 0, gunicorn_server["log"].read_text()
    assert time.monotonic() - started < 15, "SIGTERM took too long: streams held the worker"
    conn.close()
    check = sqlite3.connect(gunicorn_server["db"])
    assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    check.close()
