"""Browser tests: the real app (``python app.py``) in a subprocess on 127.0.0.1, on the
session's backend (``live_backend``), and Debian's Chromium driven by Playwright.

Chart.js comes from a copy fetched from the npm registry by scripts/test.sh
(``SAMOSVAL_TEST_CHARTJS``) and served by a tiny local server, so no test needs
the internet. With ``SAMOSVAL_REQUIRE_BROWSER=1`` (set by scripts/test.sh) a
missing Chromium fails the run instead of skipping.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from pathlib import Path

import pytest

from tests.live import PASSWORD, AppProcess

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]


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


class LiveServer(AppProcess):
    """The app as a person meets it: fast simulation, Chart.js from the local copy."""

    def __init__(self, tmp_path: Path, chartjs_url: str, speed: float = 20.0, extra_env=None, backend=None):
        # No random failures: a rollout that fails by chance would make a UI test flaky.
        # Failures have their own Flask-level tests on a seeded engine.
        super().__init__(
            tmp_path / "instance",
            tmp_path / "server.log",
            speed=speed,
            backend=backend,
            extra_env={
                "SAMOSVAL_CHARTJS_URL": chartjs_url,
                "SAMOSVAL_SIM_BUILD_FAILURE_RATE": "0",
                "SAMOSVAL_SIM_DEPLOY_FAILURE_RATE": "0",
                **(extra_env or {}),
            },
        )


@pytest.fixture
def live_server(tmp_path, chartjs_url, live_backend):
    _require_browser()
    server = LiveServer(tmp_path, chartjs_url, backend=live_backend)
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


# The widths pages are checked at: a laptop and a phone (portrait).
DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
VIEWPORTS = {"desktop": DESKTOP, "phone": PHONE}


@pytest.fixture
def new_page(browser, live_server):
    """``new_page(username)``: a logged-in page in its own browser context."""
    contexts = []

    def make(
        username: str | None = None, password: str = PASSWORD, locale: str = "ru", viewport: dict = DESKTOP
    ):
        context = browser.new_context(
            viewport=viewport,
            base_url=live_server.url,
            is_mobile=viewport["width"] < 600,
            has_touch=viewport["width"] < 600,
        )
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
