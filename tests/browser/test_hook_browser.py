"""The "Simulate new commit" button restarts a running continuous deployment in
place, and the audit log (or, before it exists, the deliveries page) shows it."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from samosval.db import connect
from tests import factories


def test_the_button_restarts_a_running_deployment_and_the_audit_shows_it(live_server, new_page):
    oleg = live_server.create_user("oleg", "operator")
    live_server.create_user("alice", "admin")
    dana = live_server.create_user("dana", "developer")
    db = connect(live_server.target)
    try:
        request_id = factories.make_request(db, owner_id=dana, created_by=dana, status="approved")
        image_id = factories.make_image(db, request_id=request_id)
        deployment_id = factories.make_deployment(db, image_id=image_id, created_by=oleg)
    finally:
        db.close()

    page = new_page("oleg")
    page.goto(f"/requests/{request_id}")
    sha_input = page.locator("#simulate-commit-sha")
    expect(sha_input).to_have_value(re.compile(r"^[0-9a-f]{40}$"))
    sha = sha_input.input_value()
    page.click("[data-action=simulate-commit]")
    result = page.locator("[data-simulate-result]")
    expect(result).to_have_attribute("data-outcome", "processed")
    expect(result).to_contain_text("перезапущено: 1")
    link = result.locator(f'a[data-deployment-id="{deployment_id}"]')
    expect(link).to_be_visible()
    expect(link).to_have_attribute("href", f"/deployments/{deployment_id}")  # from the page's URL pattern
    assert page.url.endswith(f"/requests/{request_id}")  # no navigation
    # A fresh sha is ready for the next click, so a second click is a new commit.
    expect(sha_input).not_to_have_value(sha)

    (row,) = live_server.query("SELECT status, last_commit FROM deployments WHERE id = ?", (deployment_id,))
    assert row["last_commit"] == sha and row["status"] in ("deploying", "running")

    admin = new_page("alice")
    if admin.goto("/admin/audit").status != 404:  # the audit page is another area's
        expect(admin.locator('tr[data-action="deployments_restarted"]')).to_have_count(1)
        expect(admin.locator('tr[data-action="commit_hook_received"]')).to_have_count(1)
    admin.goto("/webhooks")
    delivery = admin.locator('tr[data-outcome="processed"]')
    expect(delivery).to_contain_text(sha[:12])
    expect(delivery).to_contain_text("перезапущено: 1, помечено: 0")
    assert not page.__dict__.get("_errors") and not admin.__dict__.get("_errors")
