"""A developer files a request in the browser (datalist suggestions and the "Add"
button), submits it, and an operator approves it."""

from playwright.sync_api import expect


def test_it_files_submits_and_approves_a_request(live_server, new_page):
    live_server.create_user("dev1", "developer")
    live_server.create_user("helper", "developer")
    live_server.create_user("op1", "operator")

    page = new_page("dev1")
    page.goto("/requests/new")
    expect(page.locator("#owner")).to_have_value("dev1")
    page.fill("#image_name", "billing-api")
    page.fill("#version_tag", "1.0.0")
    page.fill("#base_image", "python:3.12-slim")
    page.fill("#repo_url", "https://github.com/acme/billing.git")
    page.fill("#run_commands", "pip install -r requirements.txt")
    page.fill("#entrypoint", "gunicorn app:app")

    # The collaborator picker fills its datalist from /api/users/search as we type.
    page.locator("#collaborator-pick").press_sequentially("hel")
    expect(page.locator('#collaborator-options option[value="helper"]')).to_have_count(1)
    page.fill("#collaborator-pick", "helper")
    page.click('[data-action="add-collaborator"]')
    page.fill("#collaborator-pick", "helper")
    page.click('[data-action="add-collaborator"]')  # a second add does not duplicate
    expect(page.locator("#collaborators")).to_have_value("helper")
    expect(page.locator("#collaborator-pick")).to_have_value("")

    # The owner datalist suggests developers only.
    page.fill("#owner", "")
    expect(page.locator('#owner-options option[value="helper"]')).to_have_count(1)
    expect(page.locator("#owner-options option")).to_have_count(2)  # dev1, helper; not op1
    page.fill("#owner", "dev1")

    page.click('[data-action="save-request"]')
    expect(page.locator("[data-request-status]")).to_have_attribute("data-request-status", "draft")
    expect(page.locator("[data-dockerfile]")).to_contain_text("RUN pip install -r requirements.txt")
    page.click('[data-action="submit"]')
    expect(page.locator("[data-request-status]")).to_have_attribute("data-request-status", "submitted")
    request_url = page.url

    operator = new_page("op1")
    operator.goto(request_url)
    expect(operator.locator('[data-action="status-in_review"]')).to_be_visible()
    operator.click('[data-action="status-approved"]')
    expect(operator.locator("[data-request-status]")).to_have_attribute("data-request-status", "approved")
    expect(operator.locator('[data-history-action="request_status"]')).to_have_count(1)

    [row] = live_server.query("SELECT status, collaborators, owner_id FROM image_requests")
    assert row["status"] == "approved" and row["collaborators"] == "helper"
    assert not getattr(page, "_errors", None) and not getattr(operator, "_errors", None)
