"""Releases in a real browser (issue 20), at desktop and phone widths: a developer's
rollback of a prod deployment waits for approval, an operator approves it in another
browser, and the developer's page follows live (no reload): the rollback is the
current release and the deployment is pinned."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from samosval.db import connect
from tests import factories
from tests.browser.conftest import VIEWPORTS

pytestmark = pytest.mark.browser


@pytest.fixture
def prod_deployment(live_server):
    live_server.create_user("olga", "operator")
    owner = live_server.create_user("dora", "developer")
    db = connect(live_server.target)
    try:
        request_id = factories.make_request(db, owner_id=owner, status="approved")
        image_id = factories.make_image(db, request_id=request_id)
        deployment_id = factories.make_deployment(
            db, image_id=image_id, name="billing-prod", environment="prod"
        )
        factories.make_release(db, deployment_id=deployment_id, number=1, commit="a" * 40)
        factories.make_release(db, deployment_id=deployment_id, number=2, commit="b" * 40, current=True)
        db.execute(
            "INSERT INTO protected_environments (environment, protected_at) "
            "VALUES ('prod', '2026-01-01T00:00:00Z')"
        )
        return deployment_id
    finally:
        db.close()


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
def test_a_rollback_waits_for_approval_and_the_page_follows_live(
    new_page, live_server, prod_deployment, viewport
):
    size = VIEWPORTS[viewport]
    dora = new_page("dora", locale="en", viewport=size)
    dora.goto(f"/deployments/{prod_deployment}")
    current = dora.locator('[data-card="releases"] tr[aria-current="true"]')
    expect(current).to_have_attribute("data-release", "2")

    # The developer rolls back from the releases table: prod is protected, so it waits.
    dora.once("dialog", lambda dialog: dialog.accept())
    button = dora.locator('[data-action="rollback"][data-release="1"]')
    button.scroll_into_view_if_needed()
    expect(button).to_be_visible()
    button.click()
    dora.wait_for_url(f"**/deployments/{prod_deployment}")
    pending = dora.locator('[data-release-notices] [data-pending-release="3"]')
    expect(pending).to_be_visible()
    expect(pending.locator('[data-action="approve"]')).to_have_count(0)  # not her own
    expect(dora.locator("[data-pinned]")).to_have_count(0)
    expect(current).to_have_attribute("data-release", "2")
    assert (
        live_server.query("SELECT status FROM deployments WHERE id = ?", (prod_deployment,))[0]["status"]
        == "running"
    )
    dora.evaluate("() => { window.__notReloaded = true; }")

    # An operator sees it waiting (the count in the navigation) and approves it.
    olga = new_page("olga", locale="en", viewport=size)
    olga.goto("/approvals")
    expect(olga.locator('[data-nav="approvals"] [data-pending-approvals]')).to_have_text("1")
    row = olga.locator("[data-pending-release]")
    expect(row).to_have_count(1)
    approve = row.locator('[data-action="approve"]')
    approve.scroll_into_view_if_needed()
    approve.click()
    olga.wait_for_url(f"**/deployments/{prod_deployment}")

    # The developer's page follows without a reload: v3 is current, and pinned.
    expect(current).to_have_attribute("data-release", "3", timeout=20_000)
    expect(dora.locator("[data-pinned]")).to_be_visible(timeout=20_000)
    expect(dora.locator("[data-pinned]")).to_contain_text("dora")
    expect(pending).to_have_count(0)
    expect(dora.locator("[data-status-badge] .badge")).to_have_attribute(
        "data-status", "running", timeout=20_000
    )
    assert dora.evaluate("() => window.__notReloaded === true")
    if viewport == "phone":  # the table scrolls inside its card, the page does not
        assert dora.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")
    assert not getattr(dora, "_errors", None) and not getattr(olga, "_errors", None)
