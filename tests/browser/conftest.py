"""Browser tests: the real app (``python app.py``) in a subprocess on 127.0.0.1, and
Debian's Chromium driven by Playwright.

Chart.js comes from a copy fetched from the npm registry by scripts/test.sh
(``SAMOSVAL_TEST_CHARTJS``) and served by a tiny local server, so no test needs
the internet. With ``SAMOSVAL_REQUIRE_BROWSER=1`` (set by scripts/test.sh) a
missing Chromium fails the run instead of skipping.
"""
from __future__ import annotations

import ctypes
import functools
import http.server
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from samosval.db import connect
from samosval.domain import users as user_domain

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]
PASSWORD = "password123"


def _require_browser():
    required = os.environ.get("SAMOSVAL_REQUIRE_BROWSER") == "1"
    problems = []
    if not os.path.exists(CHROMIUM):
        problems.append("chromium not found")
    try:
        import playwright  # noqa: F401
    except ImportError:
        problems.append("playwright not installed")
    if problems:
        if required:
            pytest.fail("browser tests cannot run: " + ", ".join(problems) + " (run scripts/test.sh)")
        pytest.skip(", ".join(problems))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent():
    # Linux: the server gets SIGTERM if the test process dies, so it never outlives the run.
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


@pytest.fixture(scope="session")
def chartjs_url():
    """Serve the npm copy of Chart.js on a local port; returns its URL."""
    source = os.environ.get("SAMOSVAL_TEST_CHARTJS") or str(ROOT / "tests/.cache/chart.umd.min.js")
    if not os.path.exists(source):
        if os.environ.get("SAMOSVAL_REQUIRE_BROWSER") == "1":
            pytest.fail("Chart.js test copy missing: run scripts/test.sh")
        pytest.skip("Chart.js test copy missing")
    handler = functools.partial(_QuietHandler, directory=os.path.dirname(source))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{os.path.basename(source)}"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class LiveServer:
    def __init__(self, tmp_path: Path, chartjs_url: str, speed: float = 20.0, extra_env=None):
        self.instance = tmp_path / "instance"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db_path = str(self.instance / "samosval.sqlite3")
        env = dict(os.environ)
        env.update({
            "SAMOSVAL_INSTANCE_PATH": str(self.instance),
            "SAMOSVAL_SECRET_KEY": "browser-test-secret",
            "SAMOSVAL_SIM_SPEED": str(speed),
            "SAMOSVAL_CHARTJS_URL": chartjs_url,
            "SAMOSVAL_LOGIN_RATE_LIMIT_USER": "1000 per minute",
            "SAMOSVAL_LOGIN_RATE_LIMIT_IP": "1000 per minute",
            "PYTHONUNBUFFERED": "1",
        })
        env.pop("SAMOSVAL_CHARTJS_SRI", None)
        env.update(extra_env or {})
        self.log_path = tmp_path / "server.log"
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "app.py"), "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=str(ROOT), env=env, stdout=self._log, stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("server exited:\n" + self.log_path.read_text())
            try:
                with urllib.request.urlopen(self.url + "/login", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("server did not start:\n" + self.log_path.read_text())

    def create_user(self, username: str, role: str, password: str = PASSWORD) -> int:
        db = connect(self.db_path)
        try:
            return user_domain.create_user(db, username, password, role)
        finally:
            db.close()

    def query(self, sql: str, params=()):
        db = connect(self.db_path)
        try:
            return [dict(row) for row in db.execute(sql, params).fetchall()]
        finally:
            db.close()

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()


@pytest.fixture
def live_server(tmp_path, chartjs_url):
    _require_browser()
    server = LiveServer(tmp_path, chartjs_url)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def browser():
    _require_browser()
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def new_page(browser, live_server):
    """``new_page(username)``: a logged-in page in its own browser context."""
    contexts = []

    def make(username: str | None = None, password: str = PASSWORD, locale: str = "ru"):
        context = browser.new_context(viewport={"width": 1440, "height": 900}, base_url=live_server.url)
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: page.__dict__.setdefault("_errors", []).append(str(exc)))
        if username:
            login(page, username, password)
        return page

    yield make
    for context in contexts:
        context.close()


def login(page, username: str, password: str = PASSWORD):
    page.goto("/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("button[type=submit].btn-primary")
    page.wait_for_url("**/dashboard")
