"""The customer's acceptance scenario (spec section 12), walked in a real browser the
way the customer will: the real app (``python app.py``, a fresh instance folder,
the engine at SIM_SPEED=20) and one browser context per person.

Each step asserts what a person sees (text, badges, enabled buttons). Builds fail
now and then on purpose (spec 8.3), and so do rollouts (8.4): where that can
happen the scenario does what an operator would do, and tries again.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.request

import pytest
from playwright.sync_api import expect, sync_playwright

from samosval.db import is_postgres
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, login

pytestmark = pytest.mark.browser

PASSWORD = "acceptance-pass-1"
SETTLED = re.compile(r"^(running|failed)$")
FINISHED = re.compile(r"^(success|failed)$")
BADGE = "[data-status-badge] .badge"
SEQS = "() => Array.from(document.querySelectorAll('#log-window [data-seq]')).map(n => +n.dataset.seq)"
PAINTED = """(selector) => {
  const canvas = document.querySelector(selector);
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let painted = 0;
  for (let i = 3; i < data.length; i += 4) { if (data[i] !== 0) painted++; }
  return painted;
}"""


class Scenario:
    """What the steps hand on to each other."""

    def __init__(self, server, new_page):
        self.server = server
        self.new_page = new_page
        self.pages = {}
        self.request_id = None
        self.image_id = None
        self.deployment_id = None

    def page(self, username: str):
        """One browser context per person, logged in on first use."""
        if username not in self.pages:
            page = self.new_page(username, "root" if username == "root" else PASSWORD)
            page.on("dialog", lambda dialog: dialog.accept())  # "Block nina?" and the like
            self.pages[username] = page
        return self.pages[username]

    def audit_rows(self, action: str, **filters):
        page = self.page("root")
        query = "&".join(f"{k}={v}" for k, v in {"action": action, **filters}.items())
        page.goto(f"/admin/audit?{query}")
        return page.locator("#audit-table tbody tr")


def until_running(page, retry: str):
    """Wait for the deployment on ``page`` to settle; when the simulated rollout
    fails, press ``retry`` (restart or start) like a person would."""
    badge = page.locator(BADGE)
    for _attempt in range(6):
        expect(badge).to_have_attribute("data-status", SETTLED, timeout=20_000)
        if badge.get_attribute("data-status") == "running":
            return
        page.click(f'button[data-action="{retry}"]')
        expect(badge).not_to_have_attribute("data-status", "failed")
    raise AssertionError("the deployment failed six times in a row")


def test_the_customer_acceptance_scenario(live_server):
    # Playwright's sync API refuses to start while another instance is alive in the
    # same thread (tests/browser keeps a session-wide one). A thread of our own has
    # its own event loop, so the scenario drives its own Chromium there.
    outcome = {}

    def run():
        try:
            walk_the_scenario(live_server)
        except BaseException as exc:  # re-raised in the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="acceptance-scenario", daemon=True)
    thread.start()
    thread.join(240)
    assert not thread.is_alive(), "the scenario did not finish within four minutes"
    if "error" in outcome:
        raise outcome["error"]


def walk_the_scenario(server):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        contexts = []

        def new_page(username=None, password=PASSWORD):
            context = browser.new_context(viewport={"width": 1440, "height": 900}, base_url=server.url)
            context.set_default_timeout(15_000)
            contexts.append(context)
            page = context.new_page()
            page.on("pageerror", lambda exc: page.__dict__.setdefault("_errors", []).append(str(exc)))
            if username:
                login(page, username, password)
            return page

        try:
            s = Scenario(server, new_page)
            step_1_first_start_and_root_login(s)
            step_2_root_manages_users_and_reads_the_audit(s)
            step_3_developer_files_a_request(s)
            step_4_operator_reviews_builds_and_reaches_the_image(s)
            step_5_operator_deploys_and_watches_it_live(s)
            step_6_owner_controls_the_deployment_until_the_operator_stops_it(s)
            step_7_a_new_commit_restarts_the_deployment(s)
            for username, page in s.pages.items():
                assert not getattr(page, "_errors", None), f"JavaScript errors on {username}'s pages"
        finally:
            for context in contexts:
                context.close()
            browser.close()


def step_1_first_start_and_root_login(s: Scenario):
    # On SQLite the first start made the database in the instance folder (the
    # PostgreSQL pass hands the app a fresh database with root only).
    assert is_postgres(s.server.target) or (s.server.instance / "samosval.sqlite3").exists()
    assert s.server.query("SELECT username, role FROM users") == [{"username": "root", "role": "admin"}]
    page = s.page("root")
    expect(page.locator("h1")).to_have_text("Панель")
    expect(page.locator('[data-banner="password"]')).to_be_visible()  # root:root is nagged about


def step_2_root_manages_users_and_reads_the_audit(s: Scenario):
    page = s.page("root")
    page.click('[data-nav="admin-menu"]')  # admin-only pages sit under one menu
    page.click('[data-nav="admin.list_users"]')
    for username, role in (
        ("maria", "developer"),
        ("ivan", "developer"),
        ("kolya", "developer"),
        ("olga", "operator"),
    ):
        page.fill("#new-username", username)
        page.fill("#new-password", PASSWORD)
        page.select_option("#new-role", role)
        page.uncheck('input[name="must_change"]')
        page.click('[data-action="create-user"]')
        expect(page.locator(f'tr[data-username="{username}"] [data-role="{role}"]')).to_be_visible()

    ivan = 'tr[data-username="ivan"]'
    page.click(f'{ivan} [data-action="block"]')
    expect(page.locator(f'{ivan} [data-status="blocked"]')).to_be_visible()
    expect(page.locator(f'{ivan} [data-action="unblock"]')).to_be_enabled()
    stranger = s.new_page()
    stranger.goto("/login")
    stranger.fill("#username", "ivan")
    stranger.fill("#password", PASSWORD)
    stranger.click("button[type=submit].btn-primary")
    expect(stranger.locator("[data-login-error]")).to_be_visible()
    page.click(f'{ivan} [data-action="unblock"]')
    expect(page.locator(f'{ivan} [data-status="active"]')).to_be_visible()
    login(stranger, "ivan", PASSWORD)  # unblocked: the same login now works

    page.click('[data-nav="admin-menu"]')  # admin-only pages sit under one menu
    page.click('[data-nav="admin.audit"]')
    everything = page.locator("#audit-table tbody tr").count()
    for action in ("user_create", "user_block", "user_unblock", "login_failed"):
        expect(page.locator(f'#audit-table tr[data-action="{action}"]').first).to_be_visible()
    page.select_option("#f-action", "user_create")
    page.fill("#f-user", "root")
    page.click('[data-action="filter"]')
    rows = page.locator("#audit-table tbody tr")
    expect(rows).to_have_count(4)
    assert everything > 4
    page.fill("#f-q", "kolya")
    page.click('[data-action="filter"]')
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("kolya")


def step_3_developer_files_a_request(s: Scenario):
    page = s.page("maria")
    page.click('[data-nav="requests.list_requests"]')
    page.click('[data-action="new-request"]')
    expect(page.locator("#owner")).to_have_value("maria")  # the creator, until changed
    page.fill("#image_name", "orders-api")
    page.fill("#version_tag", "1.0.0")
    page.fill("#base_image", "python:3.12-slim")
    page.fill("#repo_url", "https://github.com/acme/orders-api.git")
    page.fill("#run_commands", "pip install -r requirements.txt")
    page.fill("#entrypoint", "gunicorn orders.wsgi:app")
    page.fill("#vcpu", "1")

    # Owner and collaborator come from the login suggestions (a <datalist>).
    page.fill("#owner", "")
    page.locator("#owner").press_sequentially("mar")
    expect(page.locator('#owner-options option[value="maria"]')).to_have_count(1)
    page.fill("#owner", "maria")
    page.locator("#collaborator-pick").press_sequentially("kol")
    expect(page.locator('#collaborator-options option[value="kolya"]')).to_have_count(1)
    page.fill("#collaborator-pick", "kolya")
    page.click('[data-action="add-collaborator"]')
    expect(page.locator("#collaborators")).to_have_value("kolya")

    # Static without a commit and 0 MB: the server's errors, next to their fields.
    page.select_option("#update_mode", "static")
    page.fill("#target_commit", "")
    page.fill("#ram_mb", "0")
    # The browser's own checks would stop the form first; the server must hold too.
    page.evaluate("document.querySelector('[data-form=request]').noValidate = true")
    page.click('[data-action="save-request"]')
    expect(page.locator("[data-form-errors]")).to_be_visible()
    for field, value in (("target_commit", ""), ("ram_mb", "0")):
        row = page.locator(".form-row", has=page.locator(f"#{field}"))
        expect(row.locator(f'[data-error-for="{field}"]')).to_be_visible()
        expect(page.locator(f"#{field}")).to_have_value(value)
    expect(page.locator("#image_name")).to_have_value("orders-api")
    expect(page.locator("#collaborators")).to_have_value("kolya")
    expect(page.locator("#update_mode")).to_have_value("static")

    page.select_option("#update_mode", "continuous")
    page.fill("#ram_mb", "512")
    page.click('[data-action="save-request"]')
    expect(page.locator("[data-request-status]")).to_have_attribute("data-request-status", "draft")
    expect(page.locator('[data-field="collaborators"]')).to_have_text("kolya")
    page.click('[data-action="submit"]')
    expect(page.locator("[data-request-status]")).to_have_attribute("data-request-status", "submitted")
    s.request_id = int(re.search(r"/requests/(\d+)$", page.url).group(1))

    ivan = s.page("ivan")
    ivan.goto("/requests")
    expect(ivan.locator("h1")).to_be_visible()
    expect(ivan.locator(f'tr[data-request-id="{s.request_id}"]')).to_have_count(0)
    assert ivan.goto(f"/requests/{s.request_id}").status == 404
    kolya = s.page("kolya")
    kolya.goto("/requests")
    kolya.click(f'tr[data-request-id="{s.request_id}"] a >> nth=0')
    expect(kolya.locator("h1")).to_contain_text("orders-api:1.0.0")


def step_4_operator_reviews_builds_and_reaches_the_image(s: Scenario):
    page = s.page("olga")
    page.goto(f"/requests/{s.request_id}")
    page.click('[data-action="edit"]')
    page.fill("#ram_mb", "768")
    page.click('[data-action="save-request"]')
    expect(page.locator('[data-field="ram_mb"]')).to_have_text("768")
    page.click('[data-action="status-approved"]')
    expect(page.locator("[data-request-status]")).to_have_attribute("data-request-status", "approved")
    expect(page.locator("[data-action=start-build]")).to_be_enabled()

    for _attempt in range(5):  # about one build in seven fails on purpose
        page.goto(f"/requests/{s.request_id}")
        page.click("[data-action=start-build]")
        page.wait_for_url("**/builds/*")
        page.evaluate("() => { window.__sameDocument = true; }")
        log = page.locator("#build-log")
        initial = log.inner_text()
        assert "Build queued by olga" in initial
        badge = page.locator("#build-status .badge")
        expect(badge).to_have_attribute("data-status", FINISHED, timeout=30_000)
        if badge.get_attribute("data-status") == "success":
            break
        expect(page.locator("#build-error")).to_be_visible()
    else:
        raise AssertionError("five builds in a row failed")
    # The log grew in place, without a reload, from the queued line to the image.
    final = log.inner_text()
    assert final.startswith(initial.rstrip("\n")) and "Build succeeded" in final
    assert page.evaluate("() => window.__sameDocument === true")
    page.click("#build-image-link")
    page.wait_for_url("**/images/*")
    expect(page.locator("h1")).to_contain_text("orders-api:1.0.0")
    s.image_id = int(re.search(r"/images/(\d+)$", page.url).group(1))


def step_5_operator_deploys_and_watches_it_live(s: Scenario):
    page = s.page("olga")
    page.fill("#name", "orders-prod")
    page.select_option("#environment", "prod")
    page.fill("#replicas", "2")
    page.fill("#ports", "8000:8000,8001:8001")
    page.click('[data-action="create-deployment"]')
    page.wait_for_url("**/deployments/*")
    s.deployment_id = int(re.search(r"/deployments/(\d+)$", page.url).group(1))
    until_running(page, "restart")
    expect(page.locator('[data-field="ports"]')).to_have_text("8000:8000,8001:8001")

    # Both charts are drawn and gain points.
    for kind in ("cpu", "ram"):
        page.wait_for_function(
            f"() => +document.querySelector('canvas[data-chart=\"{kind}\"]').dataset.points > 1"
        )
    first = int(page.get_attribute('canvas[data-chart="cpu"]', "data-points"))
    page.wait_for_function(
        f"() => +document.querySelector('canvas[data-chart=\"cpu\"]').dataset.points > {first}",
        timeout=15_000,
    )
    assert page.evaluate(PAINTED, "#chart-cpu") > 500 and page.evaluate(PAINTED, "#chart-ram") > 500
    expect(page.locator('[data-latest="cpu"]')).to_contain_text("%")

    # Realtime: off, then on again; new lines arrive through the stream.
    expect(page.locator("[data-conn]")).to_have_attribute("data-conn", "live")
    page.uncheck('[data-action="realtime-toggle"]')
    expect(page.locator("[data-conn]")).to_have_attribute("data-conn", "off")
    last = max(page.evaluate(SEQS) or [0])
    page.check('[data-action="realtime-toggle"]')
    expect(page.locator("[data-conn]")).to_have_attribute("data-conn", "live")
    page.wait_for_function(f"() => ({SEQS})().filter(n => n > {last}).length >= 3", timeout=15_000)
    expect(page.locator("#log-window")).to_contain_text("orders-prod")


def step_6_owner_controls_the_deployment_until_the_operator_stops_it(s: Scenario):
    maria = s.page("maria")
    maria.goto(f"/deployments/{s.deployment_id}")
    badge = maria.locator(BADGE)
    expect(badge).to_have_attribute("data-status", "running")
    maria.click('button[data-action="stop"]')
    expect(badge).to_have_attribute("data-status", "stopped")
    expect(maria.locator('[data-flag="stopped_by_operator"]')).to_be_hidden()
    expect(maria.locator('button[data-action="start"]')).to_be_enabled()
    maria.click('button[data-action="start"]')
    until_running(maria, "start")

    olga = s.page("olga")
    olga.goto(f"/deployments/{s.deployment_id}")
    olga.click('button[data-action="stop"]')
    expect(olga.locator(BADGE)).to_have_attribute("data-status", "stopped")
    # Maria's open page learns it live: stopped by an operator, nothing to press.
    expect(badge).to_have_attribute("data-status", "stopped")
    expect(maria.locator('[data-flag="stopped_by_operator"]')).to_be_visible()
    expect(maria.locator('button[data-action="start"]')).to_have_count(0)
    # And the route refuses the start she is not offered.
    status = maria.evaluate(
        """async (url) => {
        const token = document.querySelector('meta[name="csrf-token"]').content;
        const response = await fetch(url, {method: "POST", credentials: "same-origin",
            headers: {"X-CSRFToken": token, "Accept": "application/json"}});
        return response.status;
    }""",
        f"/deployments/{s.deployment_id}/start",
    )
    assert status == 403
    maria.reload()
    expect(badge).to_have_attribute("data-status", "stopped")
    expect(maria.locator('button[data-action="start"]')).to_have_count(0)


def step_7_a_new_commit_restarts_the_deployment(s: Scenario):
    olga = s.page("olga")
    olga.click('button[data-action="start"]')
    until_running(olga, "restart")

    maria = s.page("maria")  # the owner presses the button on the request page
    maria.goto(f"/requests/{s.request_id}")
    sha = maria.locator("#simulate-commit-sha").input_value()
    maria.click("[data-action=simulate-commit]")
    result = maria.locator("[data-simulate-result]")
    expect(result).to_have_attribute("data-outcome", "processed")
    expect(result).to_contain_text("перезапущено: 1")
    expect(olga.locator("#log-window")).to_contain_text(f"Restarting: commit {sha[:12]}")
    until_running(olga, "restart")
    expect(s.audit_rows("commit_hook_received")).to_have_count(1)
    expect(s.audit_rows("deployments_restarted")).to_have_count(1)
    expect(s.audit_rows("deployment_restart", q="automatic").first).to_contain_text(sha[:12])

    # The same through plain HTTP, with a token root creates in the admin UI.
    root = s.page("root")
    root.goto("/admin/tokens")
    root.fill("#token-name", "ci-acceptance")
    root.click('[data-action="create-token"]')
    token = root.locator("#new-token").inner_text().strip()
    assert token.startswith("smsv_")
    commit = "c0ffee" + sha[6:]
    call = urllib.request.Request(
        f"{s.server.url}/api/hooks/commit",
        method="POST",
        data=json.dumps(
            {"repo_url": "https://github.com/acme/orders-api.git", "branch": "main", "commit": commit}
        ).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(call, timeout=10) as response:
        answer = json.load(response)
    assert answer["outcome"] == "processed" and answer["restarted_deployments"] == [s.deployment_id]
    expect(olga.locator("#log-window")).to_contain_text(f"Restarting: commit {commit[:12]}")
    expect(s.audit_rows("commit_hook_received")).to_have_count(2)
    expect(s.audit_rows("deployments_restarted").first).to_contain_text("ci-acceptance")
    root.goto("/webhooks")
    expect(root.locator('tr[data-outcome="processed"]').first).to_contain_text(commit[:12])
