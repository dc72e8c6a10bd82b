"""Editing a deployment's environment variables in a real browser, on a laptop and
on a phone: a secret is saved, then shown masked with only "replace" and "delete";
its value is nowhere in the page, and a bad name is explained next to the field."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from samosval.db import connect
from tests import factories
from tests.browser.conftest import VIEWPORTS

pytestmark = pytest.mark.browser

SECRET = "browser-Secret-" + "Xy7" * 4


@pytest.fixture
def deployment(live_server):
    owner = live_server.create_user("dora", "developer")
    db = connect(live_server.target)
    try:
        request_id = factories.make_request(db, owner_id=owner, status="approved")
        image_id = factories.make_image(db, request_id=request_id)
        return factories.make_deployment(db, image_id=image_id, name="billing-env")
    finally:
        db.close()


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
def test_it_saves_a_secret_and_shows_it_masked(new_page, deployment, viewport):
    page = new_page("dora", locale="en", viewport=VIEWPORTS[viewport])
    page.goto(f"/deployments/{deployment}")
    page.click('[data-action="edit-env"]')
    page.wait_for_url(f"**/deployments/{deployment}/env")

    # A bad name first: the form comes back with the reason next to the field.
    page.fill('input[name="rows-0-key"]', "1BAD")
    page.fill('input[name="rows-0-value"]', "x")
    page.click('[data-action="save-env"]')
    expect(page.locator('[data-error-for="rows-0-key"]')).to_be_visible()

    page.fill('input[name="rows-0-key"]', "LOG_LEVEL")
    page.fill('input[name="rows-0-value"]', "debug")
    page.fill('input[name="rows-1-key"]', "API_TOKEN")
    page.check('input[name="rows-1-secret"]')
    page.fill('input[name="rows-1-value"]', SECRET)
    page.click('[data-action="save-env"]')
    page.wait_for_url(f"**/deployments/{deployment}")

    section = page.locator('[data-card="env"]')
    expect(section.locator('[data-env-row="API_TOKEN"] [data-masked]')).to_have_text("***")
    expect(section.locator('[data-env-row="LOG_LEVEL"]')).to_contain_text("debug")
    assert SECRET not in page.content()

    # The form offers only replace and delete for the secret, and never its value.
    page.click('[data-action="edit-env"]')
    row = page.locator('tr[data-env-row="API_TOKEN"]')
    expect(row.locator("[data-masked]")).to_have_text("***")
    expect(row.locator('input[type="password"]')).to_have_value("")
    expect(row.locator('[data-action="delete-env"]')).to_be_visible()
    assert SECRET not in page.content()
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")

    # Delete it: the deployment page no longer lists it.
    row.locator('[data-action="delete-env"]').check()
    page.click('[data-action="save-env"]')
    page.wait_for_url(f"**/deployments/{deployment}")
    expect(page.locator('[data-card="env"] [data-env-row="API_TOKEN"]')).to_have_count(0)
    assert not getattr(page, "_errors", None)
