"""``python app.py``: the start-up message mentions root / root only while root still
has it, and says it must be changed at once when the server is reachable from other
machines (bound off loopback), where the change is then enforced."""

from __future__ import annotations

import http.cookiejar
import os
import select
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

from samosval.db import connect
from tests.live import ROOT, die_with_parent, free_port


def start(instance, host: str, port: int):
    env = {
        **os.environ,
        "SAMOSVAL_INSTANCE_PATH": str(instance),
        "SAMOSVAL_SECRET_KEY": "startup-test",
        "SAMOSVAL_CHARTJS_URL": "/static/none.js",
        "PYTHONUNBUFFERED": "1",
    }
    for name in (
        "SAMOSVAL_DATABASE",
        "SAMOSVAL_CHARTJS_SRI",
        "SAMOSVAL_ROOT_PASSWORD",
        "SAMOSVAL_FORCE_ROOT_PASSWORD_CHANGE",
    ):
        env.pop(name, None)
    return subprocess.Popen(
        [sys.executable, str(ROOT / "app.py"), "--host", host, "--port", str(port)],
        cwd=str(ROOT),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        bufsize=0,
        preexec_fn=die_with_parent,
    )


def banner_lines(process) -> list[str]:
    """What the server prints until it goes quiet for a second after "Samosval is
    running" (read from the pipe itself: no buffer can hide a line from select)."""
    fd, data, deadline = process.stdout.fileno(), b"", time.monotonic() + 30
    while time.monotonic() < deadline:
        if not select.select([fd], [], [], 1.0)[0]:
            if b"Samosval is running" in data:
                break
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    text = data.decode("utf-8", "replace")
    assert "Samosval is running" in text, "no start-up message: " + text
    return [line.strip() for line in text.splitlines()]


def stop(process) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
    process.stdout.close()


@pytest.fixture
def serve(tmp_path):
    processes = []

    def run(host: str):
        port = free_port()
        process = start(tmp_path / "instance", host, port)
        processes.append(process)
        return process, port, banner_lines(process)

    yield run
    for process in processes:
        stop(process)


def root_mentions(lines) -> list[str]:
    return [line for line in lines if "root / root" in line]


def test_it_keeps_root_root_on_loopback_and_says_so(serve):
    _process, _port, lines = serve("127.0.0.1")
    assert root_mentions(lines) == ["First login: root / root (a banner asks you to change the password)."]


def test_it_enforces_the_change_off_loopback(serve):
    _process, port, lines = serve("0.0.0.0")
    assert root_mentions(lines) and "to be changed at once" in root_mentions(lines)[0]
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    page = opener.open(f"http://127.0.0.1:{port}/login").read().decode()
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    data = urllib.parse.urlencode({"username": "root", "password": "root", "csrf_token": token}).encode()
    response = opener.open(f"http://127.0.0.1:{port}/login", data=data)
    assert urllib.parse.urlsplit(response.geturl()).path == "/account/password"  # redirected on
    assert (
        urllib.parse.urlsplit(opener.open(f"http://127.0.0.1:{port}/admin/users").geturl()).path
        == "/account/password"
    )


def test_it_stops_mentioning_root_root_once_changed(serve, tmp_path):
    process, _port, _lines = serve("127.0.0.1")
    stop(process)
    db = connect(str(tmp_path / "instance" / "samosval.sqlite3"))
    try:  # what a password change leaves behind
        db.execute("UPDATE users SET must_change_password = 0, password_hash = 'x' WHERE username = 'root'")
    finally:
        db.close()
    _process, _port, lines = serve("127.0.0.1")
    assert root_mentions(lines) == []
