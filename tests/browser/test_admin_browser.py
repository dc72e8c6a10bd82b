"""Acceptance 12.2 in a real browser: root creates a developer and an operator,
blocks and unblocks one of them, and finds it in the audit log."""

from playwright.sync_api import expect

from tests.browser.conftest import login

NEW_PASSWORD = "nina-password-1"


def create_user(page, username, role):
    page.fill("#new-username", username)
    page.fill("#new-password", NEW_PASSWORD)
    page.select_option("#new-role", role)
    page.uncheck('input[name="must_change"]')
    page.click('[data-action="create-user"]')
    expect(page.locator(f'tr[data-username="{username}"]')).to_be_visible()


def test_it_lets_root_manage_users_and_search_the_audit_log(new_page, live_server):
    page = new_page("root", "root")
    page.on("dialog", lambda dialog: dialog.accept())
    page.click('[data-nav="admin-menu"]')  # admin-only pages sit under one menu
    page.click('[data-nav="admin.list_users"]')
    expect(page.locator("h1")).to_have_text("Пользователи")

    # a bad form keeps the values and says what is wrong
    page.fill("#new-username", "Bad Name")
    page.fill("#new-password", "short")
    page.select_option("#new-role", "developer")
    page.click('[data-action="create-user"]')
    expect(page.locator('[data-error-for="username"]')).to_be_visible()
    expect(page.locator('[data-error-for="password"]')).to_be_visible()
    expect(page.locator("#new-username")).to_have_value("Bad Name")
    expect(page.locator("#new-password")).to_have_value("")

    create_user(page, "nina", "developer")
    create_user(page, "olga", "operator")
    expect(page.locator('tr[data-username="olga"] [data-role="operator"]')).to_be_visible()
    # root's row offers no block button
    expect(page.locator('tr[data-username="root"] [data-action="block"]')).to_have_count(0)

    # nina is signed in elsewhere when she gets blocked
    nina = new_page("nina", NEW_PASSWORD)
    page.click('tr[data-username="nina"] [data-action="block"]')
    expect(page.locator('tr[data-username="nina"] [data-status="blocked"]')).to_be_visible()
    nina.goto("/dashboard")
    expect(nina).to_have_url(f"{live_server.url}/login?next=/dashboard")
    nina.fill("#username", "nina")
    nina.fill("#password", NEW_PASSWORD)
    nina.click("button[type=submit].btn-primary")
    expect(nina.locator("[data-login-error]")).to_be_visible()

    page.click('tr[data-username="nina"] [data-action="unblock"]')
    expect(page.locator('tr[data-username="nina"] [data-status="active"]')).to_be_visible()
    login(nina, "nina", NEW_PASSWORD)

    # the audit log, filtered to blocks, shows exactly that one
    page.click('[data-nav="admin-menu"]')  # admin-only pages sit under one menu
    page.click('[data-nav="admin.audit"]')
    page.select_option("#f-action", "user_block")
    page.fill("#f-user", "root")
    page.click('[data-action="filter"]')
    expect(page).to_have_url(
        f"{live_server.url}/admin/audit?user=root&action=user_block&q=&from=&to=&target_type="
    )
    rows = page.locator("#audit-table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("username: nina")
    expect(rows.first.locator("[data-target-link]")).to_have_attribute("href", "/admin/users?q=nina")
    assert live_server.query("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'user_create'")[0]["n"] == 2
    assert not getattr(page, "_errors", None)
