"""Creating a personal access token on /account/tokens: shown once, it works on the
API at once; revoked, it stops. At a laptop's and a phone's width."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import VIEWPORTS


@pytest.mark.parametrize("width", list(VIEWPORTS))
def test_it_creates_a_token_shown_once_and_revokes_it(new_page, live_server, width):
    live_server.create_user("scripter", "developer")
    page = new_page("scripter", viewport=VIEWPORTS[width])
    page.goto("/account/sessions")
    page.locator('[data-action="api-tokens"]').click()
    page.wait_for_url("**/account/tokens")
    page.fill("#token-name", "nightly deploy")
    page.locator('input[data-scope="write"]').check()
    expect(page.locator('input[data-scope="admin"]')).to_have_count(0)  # a developer cannot grant it
    page.locator('[data-action="create-api-token"]').click()

    shown = page.locator("#new-token")
    expect(shown).to_be_visible()
    token = shown.inner_text().strip()
    assert token.startswith("smpat_")
    box = shown.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= VIEWPORTS[width]["width"] + 1  # fits the screen

    me = page.request.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status == 200 and me.json()["username"] == "scripter"
    assert me.json()["token_scopes"] == ["read", "write"]

    page.goto("/account/tokens")
    assert token not in page.content()  # shown once
    row = page.locator("#api-tokens tbody tr").first
    expect(row).to_have_attribute("data-state", "active")

    page.on("dialog", lambda dialog: dialog.accept())  # "Revoke this token?"
    button = row.locator('[data-action="revoke-api-token"]')
    button.scroll_into_view_if_needed()
    button.click()
    expect(page.locator("#api-tokens tbody tr").first).to_have_attribute("data-state", "revoked")
    refused = page.request.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert refused.status == 401 and refused.json()["error"]["code"] == "unauthorized"
    assert not page.__dict__.get("_errors")
