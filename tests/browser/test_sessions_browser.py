"""Two browsers signed in as one user: logging out in one leaves the other signed in;
"Sign out everywhere" ends both. At a laptop's and a phone's width."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import VIEWPORTS


@pytest.fixture
def two_browsers(new_page, live_server):
    live_server.create_user("twin", "developer")

    def make(viewport):
        return new_page("twin", viewport=viewport), new_page("twin", viewport=viewport)

    return make


def is_signed_in(page) -> bool:
    page.goto("/dashboard")
    return urlsplit(page.url).path == "/dashboard"  # else the login page, /login?next=...


@pytest.mark.parametrize("width", list(VIEWPORTS))
def test_it_logs_out_only_the_browser_it_is_clicked_in(two_browsers, width):
    first, second = two_browsers(VIEWPORTS[width])
    first.locator('[data-action="logout"]').click()
    first.wait_for_url("**/login")
    assert not is_signed_in(first)
    assert is_signed_in(second)
    expect(second.locator("h1")).to_be_visible()


@pytest.mark.parametrize("width", list(VIEWPORTS))
def test_it_signs_out_everywhere(two_browsers, width):
    first, second = two_browsers(VIEWPORTS[width])
    first.goto("/account/sessions")
    expect(first.locator("#sessions-table tbody tr[data-session-id]")).to_have_count(2)
    expect(first.locator('tr[data-current="1"]')).to_have_count(1)
    first.on("dialog", lambda dialog: dialog.accept())  # "Sign out of every browser?"
    button = first.locator('[data-action="sign-out-everywhere"]')
    button.scroll_into_view_if_needed()
    button.click()
    first.wait_for_url("**/login")
    assert not is_signed_in(first)
    assert not is_signed_in(second)


def test_it_ends_the_other_browsers_session_from_the_list(two_browsers):
    first, second = two_browsers(VIEWPORTS["desktop"])
    first.goto("/account/sessions")
    first.locator('tr:not([data-current]) [data-action="end-session"]').click()
    expect(first.locator("#sessions-table tbody tr[data-session-id]")).to_have_count(1)
    assert is_signed_in(first)
    assert not is_signed_in(second)
