"""The small page scripts in a real browser, at desktop and phone widths: every
data-confirm question is really asked (and "no" sends nothing), the deployment's
buttons are swapped from the page's one <template> of forms, page URLs come from
data attributes, and the list pages' shared filter form works."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from samosval.db import connect, transaction
from tests import factories
from tests.browser.conftest import VIEWPORTS

BADGE = "[data-status-badge] .badge"


@pytest.fixture(params=sorted(VIEWPORTS))
def viewport(request):
    return VIEWPORTS[request.param]


def answer_next_dialog(page, accept: bool) -> list[str]:
    """Answer the next confirm() and return the list its question is put in."""
    questions: list[str] = []

    def handle(dialog):
        questions.append(dialog.message)
        if accept:
            dialog.accept()
        else:
            dialog.dismiss()

    page.once("dialog", handle)
    return questions


def seed_deployment(live_server, **fields) -> tuple[int, int]:
    owner = live_server.create_user("dora", "developer")
    db = connect(live_server.target)
    try:
        request_id = factories.make_request(db, owner_id=owner, status="approved")
        image_id = factories.make_image(db, request_id=request_id)
        return request_id, factories.make_deployment(db, image_id=image_id, **fields)
    finally:
        db.close()


def test_it_asks_before_cancelling_a_build(live_server, new_page, viewport):
    oleg = live_server.create_user("oleg", "operator")
    db = connect(live_server.target)
    try:
        request_id = factories.make_request(db, owner_id=oleg, status="approved")
        # Building, with its next step an hour away: the engine leaves it as it is.
        # One transaction: the running engine must never see it queued.
        with transaction(db):
            build_id = factories.make_build(db, request_id=request_id, built_by=oleg)
            db.execute(
                "UPDATE builds SET status = 'building', steps_total = 5, status_since = ?, "
                "next_step_at = ? WHERE id = ?",
                (time.time(), time.time() + 3600, build_id),
            )
    finally:
        db.close()
    page = new_page("oleg", viewport=viewport)
    page.goto(f"/builds/{build_id}")
    badge = page.locator("#build-status .badge")
    expect(badge).to_have_attribute("data-status", "building")
    button = page.locator('button[data-action="cancel-build"]')
    question = page.locator("#build-cancel form").get_attribute("data-confirm")
    assert question == "Отменить эту сборку?"

    asked = answer_next_dialog(page, accept=False)
    button.click()
    expect(button).to_be_visible()
    assert asked == [question]

    asked = answer_next_dialog(page, accept=True)
    button.click()
    expect(badge).to_have_attribute("data-status", "cancelled")
    assert asked == [question]
    expect(page.locator('button[data-action="cancel-build"]')).to_have_count(0)
    # "No" sent nothing: exactly one cancellation reached the server.
    assert live_server.query("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'build_cancel'")[0]["n"] == 1
    assert not page.__dict__.get("_errors")


def test_it_swaps_deployment_buttons_and_asks_before_deleting(live_server, new_page, viewport):
    live_server.create_user("olga", "operator")
    _, deployment_id = seed_deployment(live_server, name="billing-gone")
    page = new_page("olga", viewport=viewport)
    page.goto(f"/deployments/{deployment_id}")
    actions = page.locator("[data-actions] [data-deployment-action]")
    expect(page.locator(BADGE)).to_have_attribute("data-status", "running")
    expect(actions).to_have_count(3)  # stop, restart, delete
    page.click('button[data-action="stop"]')
    expect(page.locator(BADGE)).to_have_attribute("data-status", "stopped")
    # Rebuilt from the <template>: start and delete, in the domain's order, all usable.
    expect(actions).to_have_count(2)
    assert actions.evaluate_all("forms => forms.map(f => f.dataset.deploymentAction)") == ["start", "delete"]
    expect(page.locator('button[data-action="start"]')).to_be_visible()

    delete = page.locator('button[data-action="delete"]')
    question = page.locator('[data-deployment-action="delete"]').get_attribute("data-confirm")
    assert "billing-gone" in question
    asked = answer_next_dialog(page, accept=False)
    delete.click()
    assert asked == [question]
    expect(delete).to_be_visible()
    assert (
        live_server.query("SELECT COUNT(*) AS n FROM deployments WHERE id = ?", (deployment_id,))[0]["n"] == 1
    )

    asked = answer_next_dialog(page, accept=True)
    delete.click()
    page.wait_for_url("**/deployments")
    assert asked == [question]
    assert (
        live_server.query("SELECT COUNT(*) AS n FROM deployments WHERE id = ?", (deployment_id,))[0]["n"] == 0
    )
    expect(page.locator(f'tr[data-deployment-id="{deployment_id}"]')).to_have_count(0)
    assert not page.__dict__.get("_errors")


def test_it_asks_before_blocking_a_user(live_server, new_page, viewport):
    live_server.create_user("nina", "developer")
    page = new_page("root", "root", viewport=viewport)
    page.goto("/admin/users")
    row = page.locator('tr[data-username="nina"]')
    asked = answer_next_dialog(page, accept=False)
    row.locator('[data-action="block"]').click()
    assert asked and "nina" in asked[0]
    expect(row.locator('[data-status="active"]')).to_be_visible()
    asked = answer_next_dialog(page, accept=True)
    row.locator('[data-action="block"]').click()
    expect(row.locator('[data-status="blocked"]')).to_be_visible()
    assert len(asked) == 1
    assert not page.__dict__.get("_errors")


def test_it_filters_a_list_and_resets_it(live_server, new_page, viewport):
    live_server.create_user("olga", "operator")
    _, running = seed_deployment(live_server, name="svc-running")
    db = connect(live_server.target)
    try:
        image_id = db.execute("SELECT image_id FROM deployments WHERE id = ?", (running,)).fetchone()[0]
        stopped = factories.make_deployment(
            db, image_id=image_id, name="svc-stopped", status="stopped", environment="prod"
        )
    finally:
        db.close()
    page = new_page("olga", viewport=viewport)
    page.goto("/deployments")
    rows = page.locator('table[data-table="deployments"] tbody tr')
    expect(rows).to_have_count(2)
    expect(page.locator('[data-action="reset"]')).to_have_count(0)
    page.select_option("#filter-status", "stopped")
    page.click('[data-action="filter"]')
    expect(rows).to_have_count(1)
    expect(page.locator(f'tr[data-deployment-id="{stopped}"]')).to_be_visible()
    expect(page.locator("#filter-status")).to_have_value("stopped")
    page.click('[data-action="reset"]')
    expect(rows).to_have_count(2)
    expect(page.locator("#filter-status")).to_have_value("")
    # The table scrolls inside its own box on a phone instead of widening the page.
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")
    assert not page.__dict__.get("_errors")


def test_it_suggests_owners_through_the_url_it_was_given(live_server, new_page, viewport):
    live_server.create_user("olga", "operator")
    live_server.create_user("dmitry", "developer")
    page = new_page("olga", viewport=viewport)
    page.goto("/requests")
    owner = page.locator("#filter-owner")
    assert owner.get_attribute("data-suggest-url") == "/api/users/search"
    with page.expect_response(lambda r: "/api/users/search?q=dm" in r.url) as answer:
        owner.fill("dm")
    assert answer.value.json() == ["dmitry"]
    expect(page.locator('#owner-options option[value="dmitry"]')).to_have_count(1)
    assert not page.__dict__.get("_errors")
