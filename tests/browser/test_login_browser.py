"""Logging in through a real browser, and switching the language."""

from playwright.sync_api import expect

from tests.browser.conftest import login


def test_it_logs_root_in_and_shows_the_russian_dashboard(new_page):
    page = new_page()
    login(page, "root", "root")
    expect(page.locator("h1")).to_have_text("Панель")
    expect(page.locator('[data-banner="password"]')).to_be_visible()


def test_it_switches_to_english_and_back(new_page):
    page = new_page()
    login(page, "root", "root")
    page.click('button[data-lang="en"]')
    expect(page.locator("h1")).to_have_text("Dashboard")
    page.click('button[data-lang="ru"]')
    expect(page.locator("h1")).to_have_text("Панель")


def test_it_refuses_a_wrong_password(new_page):
    page = new_page()
    page.goto("/login")
    page.fill("#username", "root")
    page.fill("#password", "wrong-password")
    page.click("button[type=submit].btn-primary")
    expect(page.locator("[data-login-error]")).to_be_visible()
