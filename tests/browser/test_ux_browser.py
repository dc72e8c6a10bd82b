"""What a person notices in the first ten minutes (issue 19), in Chromium:
axe-core finds no serious or critical violation on any main page; at a phone's and a
laptop's width the page body never scrolls sideways and the nav can be used; a failed
build is retried; the main flow works with the keyboard alone."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from samosval.db import connect
from tests import factories
from tests.browser.conftest import DESKTOP, PHONE, ROOT
from tests.live import PASSWORD

pytestmark = pytest.mark.browser

AXE = Path(os.environ.get("SAMOSVAL_TEST_AXE") or ROOT / "tests/.cache/axe.min.js")


@pytest.fixture
def world(live_server):
    """Users of every role, a request in review, a running and a failed deployment,
    a failed build and an open alert."""
    ids = {
        "olga": live_server.create_user("olga", "operator"),
        "dora": live_server.create_user("dora", "developer"),
        "adam": live_server.create_user("adam", "admin"),
    }
    db = connect(live_server.target)
    try:
        approved = factories.make_request(
            db, owner_id=ids["dora"], status="approved", run_commands="pip install -r requirements.txt"
        )
        factories.make_request(db, owner_id=ids["dora"], status="in_review", image_name="queue-me")
        image_id = factories.make_image(db, request_id=approved)
        running = factories.make_deployment(db, image_id=image_id, name="billing-live")
        failed = factories.make_deployment(db, image_id=image_id, name="billing-broken", status="failed")
        build_id = factories.make_build(db, request_id=approved, built_by=ids["olga"], status="failed")
        db.execute(
            "UPDATE builds SET build_log = ?, error_message = ? WHERE id = ?",
            (
                "10:00:00 Build queued by olga\n10:00:01 Step 1/3 : FROM python:3.12\n"
                "10:00:02 ERROR: build failed: exit code 1\n",
                "exit code 1",
                build_id,
            ),
        )
        db.execute(
            "INSERT INTO alerts (alert_type, target_type, target_id, message, message_params, "
            "resolved, created_at) VALUES ('deployment_failed', 'deployment', ?, ?, ?, 0, "
            "'2026-01-01T00:00:00Z')",
            (
                failed,
                "Deployment billing-broken failed: port already allocated",
                json.dumps({"id": failed, "name": "billing-broken", "reason": "port already allocated"}),
            ),
        )
        db.commit()
    finally:
        db.close()
    return {"request": approved, "running": running, "failed": failed, "build": build_id, **ids}


def axe_violations(page) -> list[dict]:
    if not AXE.is_file():
        pytest.fail("axe-core missing: run scripts/test.sh (it fetches it into tests/.cache)")
    if not page.evaluate("() => !!window.axe"):
        page.evaluate(AXE.read_text())  # through the DevTools protocol: the page's CSP still holds
    results = page.evaluate("""async () => {
        const r = await axe.run(document, {runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}});
        return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                       nodes: v.nodes.slice(0, 3).map(n => n.target.join(" "))}));
    }""")
    return [v for v in results if v["impact"] in ("serious", "critical")]


def main_pages(world) -> list[tuple[str, str]]:
    """(who, path): every main page, as the role that uses it."""
    return [
        (None, "/login"),
        ("dora", "/dashboard"),
        ("olga", "/dashboard"),
        ("adam", "/dashboard"),
        ("dora", "/requests"),
        ("dora", "/requests/new"),
        ("dora", f"/requests/{world['request']}"),
        ("olga", "/builds"),
        ("olga", f"/builds/{world['build']}"),
        ("olga", "/images"),
        ("olga", "/deployments"),
        ("olga", f"/deployments/{world['running']}"),
        ("olga", f"/deployments/{world['failed']}"),
        ("olga", "/alerts"),
        ("olga", "/hooks/deliveries"),
        ("adam", "/admin/users"),
        ("adam", "/admin/audit"),
        ("dora", "/account/sessions"),
    ]


def test_axe_finds_no_serious_or_critical_violation_on_any_main_page(new_page, world):
    pages, failures = {}, []
    for who, path in main_pages(world):
        if who not in pages:
            pages[who] = new_page(who)
        page = pages[who]
        page.goto(path)
        page.wait_for_load_state("domcontentloaded")
        page.wait_for_timeout(300)  # page scripts have run
        found = axe_violations(page)
        if found:
            failures.append(f"{path} as {who}: {found}")
    assert not failures, "\n".join(failures)


def test_the_palette_dialog_passes_axe_and_opens_from_the_keyboard(new_page, world):
    page = new_page("dora")
    page.goto("/dashboard")
    page.keyboard.press("Control+k")
    expect(page.locator("[data-palette]")).to_be_visible()
    expect(page.locator("#palette-input")).to_be_focused()
    page.keyboard.type("billing")
    expect(page.locator(".palette-item", has_text="billing-live")).to_be_visible()
    assert axe_violations(page) == []
    while "billing-live" not in page.locator(".palette-item.active").inner_text():
        page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/deployments/{world['running']}")


def no_horizontal_overflow(page) -> None:
    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{page.url}: the page body is {overflow}px wider than the screen"


@pytest.mark.parametrize("size", ["phone", "desktop"])
def test_pages_fit_the_screen_and_the_nav_works(new_page, world, size):
    viewport = PHONE if size == "phone" else DESKTOP
    page = new_page("olga", viewport=viewport)
    for path in ("/dashboard", "/deployments", "/requests/new", f"/deployments/{world['running']}"):
        page.goto(path)
        page.wait_for_timeout(300)
        no_horizontal_overflow(page)
        nav = page.locator("#mainnav")
        toggle = page.locator('[data-action="nav-toggle"]')
        if size == "phone":
            expect(nav).to_be_hidden()
            expect(toggle).to_be_visible()
            toggle.click()
            expect(toggle).to_have_attribute("aria-expanded", "true")
            expect(nav.locator("a").first).to_be_visible()
            no_horizontal_overflow(page)
            # the nav takes no more than the screen's width and its links are tappable
            box = nav.locator('a[data-nav="requests.list_requests"]').bounding_box()
            assert box and box["height"] >= 32 and box["x"] + box["width"] <= viewport["width"]
            page.keyboard.press("Escape")
            expect(nav).to_be_hidden()
        else:
            expect(toggle).to_be_hidden()
            expect(nav.locator('a[data-nav="requests.list_requests"]')).to_be_visible()
            top = page.locator("header.topbar").bounding_box()
            assert top["height"] < 130, "the top bar wraps into many rows"
    page.goto("/dashboard")
    if size == "phone":
        page.click('[data-action="nav-toggle"]')
    page.click('#mainnav a[data-nav="deployments.list_deployments"]')
    page.wait_for_url("**/deployments")


def test_a_failed_build_is_retried_from_its_page(new_page, world, live_server):
    page = new_page("olga")
    page.goto(f"/builds/{world['build']}")
    expect(page.locator("#build-error-box")).to_be_visible()
    expect(page.locator("#build-error-box")).to_contain_text("exit code 1")
    page.click('[data-action="retry-build"]')
    page.wait_for_url(re.compile(rf".*/builds/(?!{world['build']}$)\d+$"))
    expect(page.locator("#build-status .badge")).to_have_attribute("data-status", "success", timeout=30_000)
    expect(page.locator(".toast-success")).to_be_visible()
    new_id = int(page.url.rsplit("/", 1)[1])
    rows = live_server.query(
        "SELECT request_id, status FROM builds WHERE id IN (?, ?) ORDER BY id", (world["build"], new_id)
    )
    assert [r["status"] for r in rows] == ["failed", "success"]
    assert rows[0]["request_id"] == rows[1]["request_id"]
    # the log: numbered lines with their time, steps that fold
    line = page.locator("#build-log .bl-line").first
    expect(line).to_have_attribute("data-line", "1")
    assert re.fullmatch(r"\d\d:\d\d:\d\d", page.locator("#build-log .bl-time").first.inner_text())
    steps = page.locator("#build-log details.bl-step")
    assert steps.count() >= 3
    page.click('[data-action="collapse-all"]')
    expect(steps.first).not_to_have_attribute("open", "")


def tab_to(page, selector: str, limit: int = 120) -> None:
    """Press Tab until the focused element matches ``selector`` (keyboard only)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => !!document.activeElement && document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"Tab never reached {selector} on {page.url}")


def keyboard_login(page, username: str) -> None:
    page.goto("/login")
    tab_to(page, "#username")
    page.keyboard.type(username)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url("**/dashboard")


def test_the_main_flow_works_with_the_keyboard_alone(browser, live_server, world):
    def fresh():
        context = browser.new_context(viewport=DESKTOP, base_url=live_server.url)
        context.set_default_timeout(15_000)
        return context.new_page()

    # A developer creates and submits a request.
    dev = fresh()
    keyboard_login(dev, "dora")
    tab_to(dev, '[data-action="new-request"]')
    dev.keyboard.press("Enter")
    dev.wait_for_url("**/requests/new")
    for selector, text in (
        ("#image_name", "keyboard-app"),
        ("#version_tag", "1.0.0"),
        ("#base_image", "python:3.12-slim"),
        ("#repo_url", "https://github.com/acme/kb.git"),
        ("#entrypoint", "python -m kb"),
        ("#vcpu", "1"),
    ):
        tab_to(dev, selector)
        dev.keyboard.type(text)
    tab_to(dev, "#owner")
    dev.keyboard.press("Control+a")
    dev.keyboard.type("dora")
    tab_to(dev, '[data-action="save-request"]')
    dev.keyboard.press("Enter")
    dev.wait_for_url(re.compile(r".*/requests/\d+$"))
    request_id = int(dev.url.rsplit("/", 1)[1])
    tab_to(dev, '[data-action="submit"]')
    dev.keyboard.press("Enter")
    expect(dev.locator("[data-request-status]")).to_have_attribute("data-request-status", "submitted")

    # An operator approves it, builds it, deploys the image and opens the live log.
    op = fresh()
    keyboard_login(op, "olga")
    op.goto(f"/requests/{request_id}")
    for status in ("in_review", "approved"):
        tab_to(op, f'[data-action="status-{status}"]')
        op.keyboard.press("Enter")
        expect(op.locator("[data-request-status]")).to_have_attribute("data-request-status", status)
    tab_to(op, '[data-action="start-build"]')
    op.keyboard.press("Enter")
    op.wait_for_url("**/builds/*")
    expect(op.locator("#build-status .badge")).to_have_attribute("data-status", "success", timeout=30_000)
    tab_to(op, "#build-image-link")
    op.keyboard.press("Enter")
    op.wait_for_url("**/images/*")
    tab_to(op, "#name")
    op.keyboard.type("kb-dev")
    tab_to(op, "#ports")
    op.keyboard.type("8000:8000")
    tab_to(op, '[data-action="create-deployment"]')
    op.keyboard.press("Enter")
    op.wait_for_url(re.compile(r".*/deployments/\d+$"))
    expect(op.locator("[data-status-badge] .badge")).to_have_attribute(
        "data-status", "running", timeout=30_000
    )
    tab_to(op, "#log-window")
    expect(op.locator("#log-window [data-seq]").first).to_be_attached(timeout=20_000)
    assert op.evaluate("() => document.activeElement.id") == "log-window"
    op.context.close()
    dev.context.close()


def test_the_request_form_reads_as_one_form(new_page, world):
    page = new_page("dora")
    page.goto("/requests/new")
    # Required fields are marked; placeholders read as examples, not as values.
    expect(page.locator('label[for="image_name"] .required-mark')).to_have_count(1)
    expect(page.locator('label[for="repo_branch"] .required-mark')).to_have_count(0)
    assert page.get_attribute("#image_name", "placeholder").startswith("например")
    # Continuous mode: the commit does not apply; static mode needs it.
    expect(page.locator("#target_commit")).to_be_disabled()
    page.select_option("#update_mode", "static")
    expect(page.locator("#target_commit")).to_be_enabled()
    expect(page.locator('label[for="target_commit"] .required-mark')).to_have_count(1)
    page.select_option("#update_mode", "continuous")
    expect(page.locator("#target_commit")).to_be_disabled()
    # Collaborators: one control, the picker labelled, who is added shown and removable.
    expect(page.locator("[data-collaborators-raw]")).to_be_hidden()
    expect(page.locator('label[for="collaborator-pick"]')).to_be_visible()
    for login in ("olga", "adam"):
        page.fill("#collaborator-pick", login)
        page.keyboard.press("Enter")
    expect(page.locator(".chip")).to_have_count(2)
    expect(page.locator("#collaborators")).to_have_value("olga, adam")
    page.click('.chip:has-text("olga") [data-action="remove-collaborator"]')
    expect(page.locator(".chip")).to_have_count(1)
    expect(page.locator("#collaborators")).to_have_value("adam")


def nav_rows(page) -> int:
    """How many rows the top-level items of the main navigation take."""
    return page.evaluate("""() => new Set([...document.querySelectorAll(
        "#mainnav > a, #mainnav > details > summary")].map(e => Math.round(e.getBoundingClientRect().top))).size""")


@pytest.mark.parametrize("locale", ["ru", "en"])
def test_an_admins_nav_fits_one_row_and_its_admin_menu_works_by_keyboard(new_page, world, locale):
    page = new_page("adam")
    if locale == "en":
        page.click('[data-lang="en"]')
    page.goto("/dashboard")
    widths = page.evaluate("""() => [...document.querySelectorAll(
        ".topbar > *, #mainnav > a, #mainnav > details > summary, .topbar-right > *")].map(
        e => (e.dataset.nav || e.className || e.tagName) + ":" + Math.round(e.getBoundingClientRect().width))""")
    assert nav_rows(page) == 1, f"the admin's navigation wraps at 1440 px: {widths}"
    top = page.locator("header.topbar").bounding_box()
    assert top["height"] < 70, "the top bar wraps into two rows"
    menu = page.locator('[data-nav="admin-menu"]')
    items = page.locator(".nav-menu-list a")
    expect(items.first).to_be_hidden()
    menu.focus()
    page.keyboard.press("Enter")
    expect(items).to_have_count(5)
    expect(items.first).to_be_visible()
    assert axe_violations(page) == []
    page.keyboard.press("Escape")
    expect(items.first).to_be_hidden()
    expect(menu).to_be_focused()
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    expect(page.locator('.nav-menu-list a[data-nav="admin.list_users"]')).to_be_focused()
    page.keyboard.press("Enter")
    page.wait_for_url("**/admin/users")
    expect(page.locator('[data-nav="admin-menu"]')).to_have_class(re.compile(r"\bactive\b"))
    # a click elsewhere closes the open menu
    page.click('[data-nav="admin-menu"]')
    expect(items.first).to_be_visible()
    page.click("main h1")
    expect(items.first).to_be_hidden()


def test_an_admins_phone_menu_opens_the_admin_menu(new_page, world):
    page = new_page("adam", viewport=PHONE)
    page.goto("/dashboard")
    page.click('[data-action="nav-toggle"]')
    page.click('[data-nav="admin-menu"]')
    link = page.locator('.nav-menu-list a[data-nav="admin.audit"]')
    expect(link).to_be_visible()
    box = link.bounding_box()
    assert box["height"] >= 32 and box["x"] + box["width"] <= PHONE["width"]
    no_horizontal_overflow(page)
    link.click()
    page.wait_for_url("**/admin/audit")
