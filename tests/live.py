"""Running the real app for tests: ``python app.py`` in a subprocess on 127.0.0.1
that dies with the test process. Used by the browser, end-to-end and reliability
tests, and the gunicorn test."""
from __future__ import annotations

import ctypes
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from samosval.db import connect
from samosval.domain import users as user_domain

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "password123"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def die_with_parent():
    """Linux: the server gets SIGTERM if the test process dies, so it never outlives the run."""
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class AppProcess:
    """``python app.py`` on a given instance folder. Several processes may run one
    after another on the same folder (crash recovery); each writes its own log."""

    def __init__(self, instance: Path, log_path: Path, speed: float = 10.0, extra_env=None):
        self.instance = Path(instance)
        self.db_path = str(self.instance / "samosval.sqlite3")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(log_path)
        env = dict(os.environ)
        env.update({
            "SAMOSVAL_INSTANCE_PATH": str(self.instance),
            "SAMOSVAL_SECRET_KEY": "reliability-test-secret",
            "SAMOSVAL_SIM_SPEED": str(speed),
            "SAMOSVAL_CHARTJS_URL": "/static/none.js",  # pages only; no test loads it
            "SAMOSVAL_LOGIN_RATE_LIMIT_USER": "10000 per minute",
            "SAMOSVAL_LOGIN_RATE_LIMIT_IP": "10000 per minute",
            "PYTHONUNBUFFERED": "1",
        })
        env.pop("SAMOSVAL_CHARTJS_SRI", None)
        env.pop("SAMOSVAL_DATABASE", None)
        env.update(extra_env or {})
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "app.py"), "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=str(ROOT), env=env, stdout=self._log, stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent)
        self._wait_ready()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("server exited:\n" + self.log_text())
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/login")
                ok = conn.getresponse().status == 200
                conn.close()
                if ok:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError("server did not start:\n" + self.log_text())

    def log_text(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """``kill -9``: no handler runs, nothing is flushed or closed."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self._log.close()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()
        return self.process.returncode

    def thread_count(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/task"))

    def cpu_seconds(self) -> float:
        """User + system CPU time the server has used so far."""
        with open(f"/proc/{self.pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_kb(self) -> int:
        with open(f"/proc/{self.pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def metric(self, name: str) -> float:
        """One unlabelled value from /metrics (allowed from 127.0.0.1)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", "/metrics")
            response = conn.getresponse()
            status, body = response.status, response.read()
        finally:
            conn.close()
        assert status == 200, body[:200]
        for line in body.decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(f"{name} not in /metrics")

    def create_user(self, username: str, role: str, password: str = PASSWORD) -> int:
        db = connect(self.db_path)
        try:
            return user_domain.create_user(db, username, password, role, now=time.time())
        finally:
            db.close()

    def query(self, sql: str, params=()):
        db = connect(self.db_path)
        try:
            return [dict(row) for row in db.execute(sql, params).fetchall()]
        finally:
            db.close()
