"""The dashboard gives each role its own work and 14-day trends; the command
palette's search is bounded and shows only what the user may see (issue 19)."""

from __future__ import annotations

import json

import pytest

from samosval.domain import dashboard as dashboard_domain
from tests import factories

NOW = 1_800_000_000.0  # the fake clock of the test app: 2027-01-15 08:00 UTC


def page(auth, username):
    response = auth.client_for(username).get("/dashboard")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_a_developer_sees_their_requests_and_deployments_needing_attention(auth, db, users, sample):
    db.execute("UPDATE deployments SET status = 'failed' WHERE id = ?", (sample["deployment_id"],))
    mine = factories.make_request(db, owner_id=users["dana"], status="draft", image_name="dana-draft")
    db.commit()
    html = page(auth, "dana")
    assert 'data-card="my-requests"' in html and f'data-request-id="{mine}"' in html
    attention = html[html.index('data-card="needs-attention"') :]
    assert f'data-deployment-id="{sample["deployment_id"]}"' in attention
    assert 'data-card="review-queue"' not in html
    # a stranger sees neither
    html = page(auth, "sam")
    assert (
        f'data-request-id="{mine}"' not in html and "Со всеми вашими развёртываниями всё в порядке." in html
    )


def test_an_operator_sees_the_review_queue_failing_deployments_and_running_builds(auth, db, users, sample):
    waiting = factories.make_request(db, owner_id=users["sam"], status="submitted", image_name="queue-me")
    build_id = factories.make_build(
        db, request_id=sample["request_id"], built_by=users["oleg"], status="building"
    )
    db.execute("UPDATE deployments SET status = 'failed' WHERE id = ?", (sample["deployment_id"],))
    db.commit()
    html = page(auth, "oleg")
    assert f'data-request-id="{waiting}"' in html[html.index('data-card="review-queue"') :]
    assert (
        f'data-deployment-id="{sample["deployment_id"]}"'
        in html[html.index('data-card="failing-deployments"') :]
    )
    assert f'data-build-id="{build_id}"' in html[html.index('data-card="running-builds"') :]
    assert 'data-card="my-requests"' not in html


def test_trends_count_per_day_and_the_failure_rate_of_what_finished(db, users, sample):
    from samosval.auth import User
    from samosval.domain.users import get_user

    day = "2027-01-14"
    for status in ("success", "failed", "failed", "building"):
        build_id = factories.make_build(
            db, request_id=sample["request_id"], built_by=users["oleg"], status=status
        )
        db.execute("UPDATE builds SET created_at = ? WHERE id = ?", (f"{day}T10:00:00Z", build_id))
    db.execute(
        "UPDATE builds SET created_at = '2026-01-01T00:00:00Z' WHERE created_at NOT LIKE ?", (f"{day}%",)
    )
    db.execute("UPDATE deployments SET created_at = '2026-01-01T00:00:00Z'")
    db.commit()
    trends = dashboard_domain.trends(db, User(get_user(db, users["oleg"])), NOW)
    assert len(trends["labels"]) == 14 and trends["labels"][-1] == "2027-01-15"
    i = trends["labels"].index(day)
    assert trends["builds"][i] == 4 and trends["failure_rate"][i] == pytest.approx(66.7)
    assert trends["failure_rate"][0] is None and sum(trends["deployments"]) == 0
    # a stranger's trends do not count builds of requests they cannot see
    stranger = dashboard_domain.trends(db, User(get_user(db, users["sam"])), NOW)
    assert sum(stranger["builds"]) == 0 and stranger["empty"]


def test_the_dashboard_draws_trends_with_chart_js_and_says_when_there_is_nothing(auth, users):
    html = page(auth, "sam")
    assert 'src="/static/js/dashboard.js"' in html and "<script>" not in html
    data = json.loads(html.split('id="dashboard-data">', 1)[1].split("</script>", 1)[0])
    assert len(data["trends"]["labels"]) == 14
    assert "За 14 дней не было ни сборок, ни развёртываний." in html


def palette(auth, username, q="", **kwargs):
    return auth.client_for(username).get("/api/palette", query_string={"q": q}, **kwargs)


def test_the_palette_finds_only_what_the_user_may_see(auth, db, users, sample):
    hidden = factories.make_request(db, owner_id=users["sam"], status="draft", image_name="billing-secret")
    db.commit()
    items = palette(auth, "dana", "billing").get_json()["items"]
    urls = {item["url"] for item in items}
    assert f"/requests/{sample['request_id']}" in urls and f"/requests/{hidden}" not in urls
    assert any(item["kind"] == "deployment" for item in items)
    assert f"/requests/{hidden}" in {i["url"] for i in palette(auth, "oleg", "billing").get_json()["items"]}
    assert palette(auth, "dana", "BILLING").get_json()["items"] == items  # any case, on either database
    by_id = palette(auth, "dana", f"#{sample['request_id']}").get_json()["items"]
    assert f"/requests/{sample['request_id']}" in {i["url"] for i in by_id}
    assert palette(auth, "dana", f"#{hidden}").get_json()["items"] == [] or f"/requests/{hidden}" not in {
        i["url"] for i in palette(auth, "dana", f"#{hidden}").get_json()["items"]
    }


def test_the_palette_lists_the_pages_of_the_users_menu(auth, users):
    labels = {i["label"] for i in palette(auth, "dana").get_json()["items"] if i["kind"] == "page"}
    assert "Заявки" in labels and "Пользователи" not in labels
    assert "Пользователи" in {i["label"] for i in palette(auth, "root").get_json()["items"]}


def test_the_palette_is_bounded_and_refuses_long_or_odd_input(auth, db, users, sample):
    for n in range(20):
        factories.make_request(db, owner_id=users["dana"], status="draft", image_name=f"many-{n}")
    db.commit()
    items = palette(auth, "dana", "many").get_json()["items"]
    assert len([i for i in items if i["kind"] == "request"]) == dashboard_domain.PALETTE_PER_KIND
    response = palette(auth, "dana", "x" * 101)
    assert response.status_code == 400 and response.get_json()["error"]
    assert palette(auth, "dana", "%_\\'\"").status_code == 200  # LIKE wildcards are matched literally
    assert palette(auth, "dana", "%").get_json()["items"] == []
    # SQLite's LIKE stops at a NUL: "%<NUL>%" must not match every row.
    assert palette(auth, "dana", "\x00").get_json()["items"] == []


def test_the_palette_asks_anonymous_callers_to_log_in(client):
    assert client.get("/api/palette?q=a").status_code == 401


def test_every_page_has_a_favicon_and_the_ico_path_answers(client):
    assert client.get("/favicon.ico").status_code == 301
    response = client.get("/static/favicon.svg")
    assert response.status_code == 200 and response.mimetype == "image/svg+xml"
    response.close()
    assert 'rel="icon"' in client.get("/login").get_data(as_text=True)


def test_times_are_relative_with_the_exact_utc_time_on_hover(app, engine):  # engine: the fake clock
    from samosval.templating import format_time

    with app.test_request_context("/"):
        html = str(format_time("2027-01-15T07:55:00Z"))  # 5 minutes before the fake clock
        assert html == (
            '<time datetime="2027-01-15T07:55:00Z" title="2027-01-15 07:55:00 UTC">5 мин. назад</time>'
        )
        assert ">только что<" in str(format_time("2027-01-15T08:00:00Z"))
        assert format_time(None) == "—"
