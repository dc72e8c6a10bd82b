"""The deployment page in a real browser: charts drawn, logs live through SSE, the
Realtime toggle, and the badge following stop/start without a reload."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from samosval.db import connect
from tests import factories

pytestmark = pytest.mark.browser

# How many pixels of a canvas are painted: a blank canvas has none.
PAINTED = """(selector) => {
  const canvas = document.querySelector(selector);
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let painted = 0;
  for (let i = 3; i < data.length; i += 4) { if (data[i] !== 0) painted++; }
  return painted;
}"""
SEQS = "() => Array.from(document.querySelectorAll('#log-window [data-seq]')).map(n => +n.dataset.seq)"


@pytest.fixture
def deployment(live_server):
    live_server.create_user("olga", "operator")
    owner = live_server.create_user("dora", "developer")
    db = connect(live_server.target)
    try:
        request_id = factories.make_request(db, owner_id=owner, status="approved")
        image_id = factories.make_image(db, request_id=request_id)
        return factories.make_deployment(db, image_id=image_id, name="billing-live")
    finally:
        db.close()


def points(page, kind: str) -> int:
    return int(page.get_attribute(f'canvas[data-chart="{kind}"]', "data-points"))


def test_it_draws_both_charts_and_streams_logs_until_realtime_is_off(new_page, deployment):
    page = new_page("dora")
    page.goto(f"/deployments/{deployment}")
    expect(page.locator("[data-conn]")).to_have_attribute("data-conn", "live")

    # Charts: drawn, and growing with each poll.
    page.wait_for_function("() => +document.querySelector('canvas[data-chart=\"ram\"]').dataset.points > 0")
    first = points(page, "cpu")
    page.wait_for_function(
        f"() => +document.querySelector('canvas[data-chart=\"cpu\"]').dataset.points > {first}",
        timeout=10_000,
    )
    assert page.evaluate(PAINTED, "#chart-cpu") > 500
    assert page.evaluate(PAINTED, "#chart-ram") > 500
    expect(page.locator("[data-chart-fallback]")).to_be_hidden()
    expect(page.locator('[data-latest="cpu"]')).to_contain_text("%")

    # Logs arrive live.
    page.wait_for_function(f"() => ({SEQS})().length > 5")
    count = len(page.evaluate(SEQS))
    page.wait_for_function(f"() => ({SEQS})().length > {count}")

    # Realtime off: the stream closes and nothing more arrives.
    page.uncheck('[data-action="realtime-toggle"]')
    expect(page.locator("[data-conn]")).to_have_attribute("data-conn", "off")
    page.wait_for_timeout(300)  # lines already in flight land
    stopped_at = page.evaluate(SEQS)
    page.wait_for_timeout(1500)
    assert page.evaluate(SEQS) == stopped_at

    # Realtime on again: it resumes after the last line shown, no gap and no duplicate.
    page.check('[data-action="realtime-toggle"]')
    expect(page.locator("[data-conn]")).to_have_attribute("data-conn", "live")
    page.wait_for_function(f"() => ({SEQS})().length > {len(stopped_at) + 5}")
    seqs = page.evaluate(SEQS)
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert not getattr(page, "_errors", None)


def test_it_follows_stop_and_start_without_a_reload(new_page, deployment):
    owner = new_page("dora")
    owner.goto(f"/deployments/{deployment}")
    operator = new_page("olga")
    operator.goto(f"/deployments/{deployment}")
    for page in (owner, operator):
        expect(page.locator("[data-conn]")).to_have_attribute("data-conn", "live")
        page.evaluate("() => { window.__sameDocument = true; }")
    badge = "[data-status-badge] .badge"
    expect(owner.locator(badge)).to_have_attribute("data-status", "running")
    expect(owner.locator('[data-deployment-action="stop"]')).to_be_visible()

    operator.click('button[data-action="stop"]')
    expect(operator.locator(badge)).to_have_attribute("data-status", "stopped")
    expect(operator.locator('button[data-action="start"]')).to_be_visible()
    # The owner's page learns it from the stream: stopped, by an operator, no buttons left.
    expect(owner.locator(badge)).to_have_attribute("data-status", "stopped")
    expect(owner.locator('[data-flag="stopped_by_operator"]')).to_be_visible()
    expect(owner.locator("[data-deployment-action]")).to_have_count(0)

    operator.click('button[data-action="start"]')
    expect(owner.locator(badge)).to_have_attribute("data-status", "running", timeout=15_000)
    expect(operator.locator(badge)).to_have_attribute("data-status", "running")
    expect(owner.locator('[data-flag="stopped_by_operator"]')).to_be_hidden()
    expect(owner.locator('button[data-action="stop"]')).to_be_visible()
    for page in (owner, operator):
        assert page.evaluate("() => window.__sameDocument === true"), "the page reloaded"
        assert not getattr(page, "_errors", None)
