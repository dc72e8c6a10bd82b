#!/usr/bin/env python3
"""Capture the README's screenshots from a demo instance: ``python scripts/screenshots.py``.

Starts ``python app.py --demo`` on a temporary instance folder and a free
127.0.0.1 port, serves Chart.js from the local npm copy (scripts/test.sh fetches
it into tests/.cache), logs in as each demo role in its own browser context
(Debian's Chromium through Playwright, 1440x900, and 390x844 for the phone shots) and writes PNGs into
docs/screenshots/. Nothing is fetched from the internet.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
CHARTJS_CANDIDATES = (
    os.environ.get("SAMOSVAL_TEST_CHARTJS"),
    ROOT / "tests/.cache/chart.umd.min.js",
    "/tmp/cj/package/dist/chart.umd.min.js",
)
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-sync",
    "--hide-scrollbars",
    "--lang=ru-RU",
]
VIEWPORT = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
USER_LINE = re.compile(r"^\s+(\w+)\s+(admin|operator|developer)\s+(\S+)$")
MAX_BYTES = 400 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve_chartjs() -> tuple[http.server.ThreadingHTTPServer, str]:
    source = next((Path(p) for p in CHARTJS_CANDIDATES if p and Path(p).is_file()), None)
    if source is None:
        sys.exit(
            "Chart.js copy not found: run `bash scripts/test.sh` once (it fetches it "
            "into tests/.cache), or set SAMOSVAL_TEST_CHARTJS."
        )
    handler = functools.partial(_QuietHandler, directory=str(source.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/{source.name}"


def start_demo(instance: Path, chartjs_url: str, log_path: Path):
    port = free_port()
    env = dict(
        os.environ,
        SAMOSVAL_INSTANCE_PATH=str(instance),
        SAMOSVAL_SECRET_KEY=secrets.token_hex(16),
        SAMOSVAL_CHARTJS_URL=chartjs_url,
        PYTHONUNBUFFERED="1",
    )
    env.pop("SAMOSVAL_CHARTJS_SRI", None)
    log = open(log_path, "w")
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py"), "--demo", "--host", "127.0.0.1", "--port", str(port)],
        cwd=str(ROOT),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = log_path.read_text()
        if process.poll() is not None:
            sys.exit("the demo server exited:\n" + text)
        if "Samosval is running" in text:
            passwords = {
                m.group(1): m.group(3)
                for m in map(USER_LINE.match, text.splitlines())
                if m and m.group(1) != "root"
            }
            if not passwords:
                sys.exit("the demo did not seed (is the instance folder fresh?):\n" + text)
            return process, f"http://127.0.0.1:{port}", passwords
        time.sleep(0.1)
    process.kill()
    sys.exit("the demo server did not start:\n" + log_path.read_text())


def capture(browser, base_url: str, passwords: dict, only: set[str] | None) -> list[Path]:
    from playwright.sync_api import expect

    contexts = {}

    def page_for(username: str, viewport: dict = VIEWPORT):
        key = (username, viewport["width"])
        if key not in contexts:
            phone = viewport["width"] < 600
            context = browser.new_context(
                viewport=viewport,
                base_url=base_url,
                locale="ru-RU",
                is_mobile=phone,
                has_touch=phone,
                device_scale_factor=2 if phone else 1,
            )
            context.set_default_timeout(30_000)
            page = context.new_page()
            page.goto("/login")
            page.fill("#username", username)
            page.fill("#password", passwords[username])
            page.click("button[type=submit].btn-primary")
            page.wait_for_url("**/dashboard")
            contexts[key] = page
        return contexts[key]

    def deployment_id(name: str) -> int:
        page = page_for("olga")
        page.goto("/deployments")
        href = page.locator(f'a:text-is("{name}")').first.get_attribute("href")
        return int(href.rstrip("/").rsplit("/", 1)[1])

    def dashboard(page):
        page.goto("/dashboard")
        page.wait_for_function(
            "() => document.querySelectorAll('.trend-charts canvas').length === 0 || !!window.Chart"
        )
        page.wait_for_timeout(500)

    def phone_menu(page):
        dashboard(page)
        page.click('[data-action="nav-toggle"]')

    def deployment_failed(page):
        page.goto(f"/deployments/{deployment_id('web-frontend-dev')}")
        page.wait_for_timeout(800)

    def palette(page):
        dashboard(page)
        page.keyboard.press("Control+k")
        page.keyboard.type("pay")
        page.wait_for_function(
            "() => { const items = document.querySelectorAll('.palette-item');"
            " return items.length > 0 && [...items].every(n => /pay/i.test(n.textContent)); }"
        )

    def request_form(page):
        page.goto("/requests/new")
        page.fill("#image_name", "orders-api")
        page.fill("#version_tag", "1.0.0")
        page.fill("#base_image", "python:3.12-slim")
        page.fill("#repo_url", "https://github.com/acme/orders-api.git")
        page.fill("#run_commands", "pip install -r requirements.txt\npython -m compileall -q orders")
        page.fill("#entrypoint", "gunicorn orders.wsgi:app")
        page.fill("#ram_mb", "768")
        page.fill("#vcpu", "1")
        page.locator("#collaborator-pick").press_sequentially("iv")
        expect(page.locator('#collaborator-options option[value="ivan"]')).to_have_count(1)
        page.fill("#collaborator-pick", "ivan")
        page.click('[data-action="add-collaborator"]')
        expect(page.locator(".chip", has_text="ivan")).to_be_visible()
        page.select_option("#update_mode", "static")  # the commit field turns required
        page.fill("#target_commit", "3f2a9c1")

    def request_detail(page):
        page.goto("/requests")
        page.click('a:text-is("payments-api") >> nth=0')
        page.wait_for_url("**/requests/*")

    def build_log(page):
        page.goto("/builds")
        page.locator('[data-status="success"]').first.locator("xpath=ancestor::tr").locator("a").first.click()
        page.wait_for_url("**/builds/*")
        page.evaluate("document.getElementById('build-log').scrollTop = 1e9")

    def deployment(page):
        page.goto(f"/deployments/{deployment_id('payments-prod')}")
        page.wait_for_function(
            "() => +document.querySelector('canvas[data-chart=\"ram\"]').dataset.points > 100"
        )
        page.wait_for_function(
            "() => document.querySelectorAll('#log-window [data-seq]').length >= 30", timeout=60_000
        )
        page.wait_for_timeout(1500)  # let Chart.js finish its entry animation

    def admin_users(page):
        page.goto("/admin/users")

    def audit(page):
        page.goto("/admin/audit")

    # (file name, who looks, how to get there, whole page?): long pages are captured whole.
    shots = (
        ("dashboard", "olga", dashboard, False),
        ("dashboard_developer", "maria", dashboard, False),
        ("request_form", "maria", request_form, True),
        ("request_detail", "maria", request_detail, True),
        ("build_log", "olga", build_log, False),
        ("deployment", "olga", deployment, True),
        ("deployment_failed", "olga", deployment_failed, False),
        ("palette", "olga", palette, False),
        ("admin_users", "nadia", admin_users, False),
        ("audit", "nadia", audit, False),
        ("phone_dashboard", "maria", phone_menu, False, PHONE),
        ("phone_deployment", "olga", deployment, False, PHONE),
    )
    written = []
    for name, username, prepare, whole, *size in shots:
        if only and name not in only:
            continue
        page = page_for(username, *size)
        prepare(page)
        page.wait_for_load_state("networkidle") if "deployment" not in name and name != "palette" else None
        path = OUT / f"{name}.png"
        page.screenshot(path=str(path), full_page=whole)
        size = path.stat().st_size
        print(f"  {path.relative_to(ROOT)}  {size // 1024} KB")
        if size > MAX_BYTES:
            print(f"  warning: {path.name} is larger than {MAX_BYTES // 1024} KB", file=sys.stderr)
        written.append(path)
    for page in contexts.values():
        page.context.close()
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="only these screenshots (default: all)")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    chart_server, chartjs_url = serve_chartjs()
    with tempfile.TemporaryDirectory(prefix="samosval-shots-") as tmp:
        process, base_url, passwords = start_demo(
            Path(tmp) / "instance", chartjs_url, Path(tmp) / "server.log"
        )
        try:
            print(f"demo server at {base_url}; capturing into {OUT.relative_to(ROOT)}/")
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                try:
                    capture(browser, base_url, passwords, set(args.names) or None)
                finally:
                    browser.close()
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
            chart_server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
