"""Running the real app for tests: ``python app.py`` (gevent's WSGI server) or the
production command (gunicorn's gevent worker, ``production=True``) in a
subprocess on 127.0.0.1 that dies with the test process; and nginx in front of it.
Used by the browser, end-to-end and reliability tests, and the production tests."""

from __future__ import annotations

import ctypes
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from samosval.db import connect, is_postgres
from samosval.domain import users as user_domain

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "live-test-Passw0rd"  # passes the password policy


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


def backend_env(backend: dict | None) -> dict[str, str]:
    """The ``SAMOSVAL_*`` variables that put an app process on ``backend``: config keys
    from the ``live_backend`` fixture (tests/conftest.py), ``DATABASE`` (a SQLite
    path or a PostgreSQL URL) and on PostgreSQL ``REDIS_URL`` and ``REDIS_PREFIX``."""
    if not backend:
        return {}
    target = backend["DATABASE"]
    env = {"SAMOSVAL_DATABASE_URL" if is_postgres(target) else "SAMOSVAL_DATABASE": target}
    if backend.get("REDIS_URL"):
        env["SAMOSVAL_REDIS_URL"] = backend["REDIS_URL"]
        env["SAMOSVAL_REDIS_PREFIX"] = backend["REDIS_PREFIX"]
    return env


class AppProcess:
    """``python app.py`` on a given instance folder, or with ``production=True``
    ``gunicorn -c gunicorn.conf.py wsgi:app``. Several processes may run one after
    another on the same folder (crash recovery); each writes its own log.

    ``backend``: the config keys of a database made by the test fixtures (the
    ``live_backend`` fixture: a fresh PostgreSQL database and a Redis prefix in the
    PostgreSQL pass); None runs on a SQLite file the app creates in its instance
    folder. ``target`` is the database either way, for ``samosval.db.connect``."""

    def __init__(
        self,
        instance: Path,
        log_path: Path,
        speed: float = 10.0,
        extra_env=None,
        production: bool = False,
        gunicorn_config: str = "gunicorn.conf.py",  # the benchmarks add hooks around it
        backend: dict | None = None,
    ):
        self.instance = Path(instance)
        self.target = backend["DATABASE"] if backend else str(self.instance / "samosval.sqlite3")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(log_path)
        env = dict(os.environ)
        env.update(
            {
                "SAMOSVAL_INSTANCE_PATH": str(self.instance),
                "SAMOSVAL_SECRET_KEY": "reliability-test-secret",
                "SAMOSVAL_SIM_SPEED": str(speed),
                "SAMOSVAL_CHARTJS_URL": "/static/none.js",  # pages only; no test loads it
                "SAMOSVAL_LOGIN_RATE_LIMIT_USER": "10000 per minute",
                "SAMOSVAL_LOGIN_RATE_LIMIT_IP": "10000 per minute",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.pop("SAMOSVAL_CHARTJS_SRI", None)
        for name in (
            "SAMOSVAL_DATABASE",
            "SAMOSVAL_DATABASE_URL",
            "SAMOSVAL_REDIS_URL",
            "SAMOSVAL_REDIS_PREFIX",
        ):
            env.pop(name, None)
        env.update(backend_env(backend))
        env.update(extra_env or {})
        if production:
            env["SAMOSVAL_BIND"] = f"127.0.0.1:{self.port}"
            command = [sys.executable, "-m", "gunicorn", "-c", gunicorn_config, "wsgi:app"]
        else:
            command = [sys.executable, str(ROOT / "app.py"), "--host", "127.0.0.1", "--port", str(self.port)]
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            command,
            cwd=str(ROOT),
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
        self._wait_ready()
        if backend and is_postgres(self.target) and env.get("SAMOSVAL_SIMULATOR_AUTOSTART") != "0":
            # The engine takes its lease after the server answers, and resumes the
            # builds and rollouts it finds then: a test's seeds must come after that
            # (``running``: it has ticked as the leader, so the resume is over).
            self._wait_leading()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("server exited:\n" + self.log_text())
            # gunicorn's arbiter accepts before its worker serves: a connection
            # may be dropped while it starts, and must not be left open.
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            try:
                conn.request("GET", "/login")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            finally:
                conn.close()
            time.sleep(0.1)
        self.kill()
        raise RuntimeError("server did not start:\n" + self.log_text())

    def _wait_leading(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            health = self.health()
            if health.get("leader") and health.get("engine") == "running":
                return
            time.sleep(0.05)
        self.kill()
        raise RuntimeError("the engine did not take the lead:\n" + self.log_text())

    def health(self) -> dict:
        """The /healthz body."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", "/healthz")
            return json.loads(conn.getresponse().read())
        finally:
            conn.close()

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

    @property
    def serving_pid(self) -> int:
        """The process that serves: gunicorn's worker, or ``python app.py`` itself."""
        try:
            children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        except OSError:
            children = []
        return int(children[0]) if children else self.pid

    def thread_count(self) -> int:
        return len(os.listdir(f"/proc/{self.serving_pid}/task"))

    def cpu_seconds(self) -> float:
        """User + system CPU time the server has used so far."""
        with open(f"/proc/{self.serving_pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_kb(self) -> int:
        with open(f"/proc/{self.serving_pid}/status") as handle:
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
        db = connect(self.target)
        try:
            return user_domain.create_user(db, username, password, role, now=time.time())
        finally:
            db.close()

    def query(self, sql: str, params=()):
        db = connect(self.target)
        try:
            return [dict(row) for row in db.execute(sql, params).fetchall()]
        finally:
            db.close()


def login_cookie(base: str, username: str, password: str = PASSWORD, source: str | None = None) -> str:
    """Log in through the login form; returns the Cookie header of the session.
    ``source``: the local address to connect from (any 127.x.y.z on Linux)."""
    import http.cookiejar
    import re
    import urllib.parse
    import urllib.request

    jar = http.cookiejar.CookieJar()
    handlers = [urllib.request.HTTPCookieProcessor(jar)]
    if source:

        class FromSource(urllib.request.HTTPHandler):
            def http_open(self, req):
                return self.do_open(
                    lambda host, **kw: http.client.HTTPConnection(host, source_address=(source, 0), **kw), req
                )

        handlers.append(FromSource())
    opener = urllib.request.build_opener(*handlers)
    page = opener.open(base + "/login", timeout=20).read().decode()
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    data = urllib.parse.urlencode({"username": username, "password": password, "csrf_token": token}).encode()
    opener.open(base + "/login", data=data, timeout=20).read()
    cookie = "; ".join(f"{c.name}={c.value}" for c in jar)
    assert "session=" in cookie, "login failed"
    return cookie


def read_events(response, until, limit: int = 500) -> list[dict]:
    """Parsed SSE events from an open ``http.client`` response until ``until(found)``."""
    from samosval.sse import parse_events

    buffer, found = "", []
    for _ in range(limit):
        chunk = response.read1(65536)  # decodes chunked transfer (nginx sends the stream so)
        if not chunk:
            break
        buffer += chunk.decode()
        complete, _, buffer = buffer.rpartition("\n\n")
        if complete:
            found.extend(parse_events(complete + "\n\n"))
        if until(found):
            return found
    raise AssertionError(f"condition not met; got {found[-5:]}")


NGINX_SITE = ROOT / "deploy" / "nginx" / "samosval.conf"


class NginxProcess:
    """Debian's nginx with the repository's site config (``deploy/nginx/samosval.conf``)
    on a free loopback port, in front of ``upstream`` (an :class:`AppProcess`). Runs in
    the foreground (``daemon off``) with its pid, logs and temp files in ``workdir``;
    ``stop()`` ends it."""

    def __init__(self, workdir: Path, upstream_port: int):
        self.workdir = Path(workdir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        site = NGINX_SITE.read_text()
        for default in ("127.0.0.1:8000;", "listen 80;"):
            if default not in site:
                raise AssertionError(f"{NGINX_SITE} no longer has {default!r}; update the test")
        site = site.replace("127.0.0.1:8000;", f"127.0.0.1:{upstream_port};")
        site = site.replace("listen 80;", f"listen 127.0.0.1:{self.port};")
        (self.workdir / "samosval.conf").write_text(site)
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.workdir / name).mkdir(parents=True, exist_ok=True)
        temp = "\n".join(
            f"    {name}_temp_path {self.workdir / name};"
            for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        user = "user root;\n" if os.geteuid() == 0 else ""
        (self.workdir / "nginx.conf").write_text(
            f"{user}daemon off;\nworker_processes 1;\npid {self.workdir / 'nginx.pid'};\n"
            f"error_log {self.workdir / 'error.log'} info;\n"
            "events { worker_connections 1024; }\n"
            "http {\n"
            f"    access_log {self.workdir / 'access.log'};\n{temp}\n"
            f"    include {self.workdir / 'samosval.conf'};\n"
            "}\n"
        )
        self._log = open(self.workdir / "nginx.out", "w")
        self.process = subprocess.Popen(
            [
                "nginx",
                "-p",
                str(self.workdir),
                "-e",
                str(self.workdir / "error.log"),
                "-c",
                str(self.workdir / "nginx.conf"),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("nginx exited:\n" + self.log_text())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("nginx did not start:\n" + self.log_text())

    def log_text(self) -> str:
        parts = []
        for name in ("nginx.out", "error.log"):
            path = self.workdir / name
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()
