"""Build pages and endpoints: start, list, detail, the polling JSON, cancel."""

from __future__ import annotations

import json

import pytest

from tests import factories


def builds_count(db):
    return db.execute("SELECT COUNT(*) FROM builds").fetchone()[0]


def start(auth, username, request_id, **kwargs):
    return auth.client_for(username).post(f"/requests/{request_id}/build", **kwargs)


@pytest.mark.parametrize("username", ["oleg", "alice", "root"])
def test_it_lets_staff_start_a_build_of_an_approved_request(auth, db, users, sample, username):
    response = start(auth, username, sample["request_id"])
    build = db.execute("SELECT * FROM builds").fetchone()
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/builds/{build['id']}")
    assert build["status"] == "queued" and build["built_by"] == users[username]
    assert build["next_step_at"] is None and build["status_since"] is not None
    audit = db.execute("SELECT * FROM audit_log WHERE action = 'build_start'").fetchone()
    assert audit["user_id"] == users[username] and audit["target_id"] == build["id"]
    assert json.loads(audit["details"])["request_id"] == sample["request_id"]


@pytest.mark.parametrize("username, status", [("dana", 403), ("carl", 403), ("colin", 403), ("sam", 404)])
def test_it_refuses_developers_and_hides_requests_from_strangers(auth, db, sample, username, status):
    assert start(auth, username, sample["request_id"]).status_code == status
    assert builds_count(db) == 0


@pytest.mark.parametrize("request_status", ["draft", "submitted", "in_review", "rejected"])
def test_it_refuses_to_build_a_request_that_is_not_approved(auth, db, users, request_status):
    request_id = factories.make_request(db, owner_id=users["dana"], status=request_status)
    response = start(auth, "oleg", request_id)
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/requests/{request_id}")
    assert builds_count(db) == 0
    page = auth.client_for("oleg").get(f"/requests/{request_id}")
    assert "flash-error" in page.get_data(as_text=True)


def test_it_needs_the_csrf_token_to_start_a_build(auth, db, sample):
    assert start(auth, "oleg", sample["request_id"], csrf=False).status_code == 400
    assert builds_count(db) == 0


def test_it_asks_anonymous_users_to_log_in(client, db, users, sample):
    build_id = factories.make_build(db, request_id=sample["request_id"], built_by=users["oleg"])
    assert client.get("/builds").status_code == 302
    assert client.get(f"/builds/{build_id}").status_code == 302
    assert client.get(f"/api/builds/{build_id}/log").status_code == 401


def test_it_lists_only_builds_of_visible_requests(auth, db, users, sample):
    mine = factories.make_build(db, request_id=sample["request_id"], built_by=users["oleg"], status="success")
    hidden_request = factories.make_request(
        db, owner_id=users["sam"], image_name="secret-svc", status="approved"
    )
    hidden = factories.make_build(db, request_id=hidden_request, built_by=users["oleg"], status="failed")
    for username, expected in [
        ("oleg", {mine, hidden}),
        ("dana", {mine}),
        ("colin", {mine}),
        ("carl", {mine}),
        ("sam", {hidden}),
        ("ann", set()),
    ]:
        html = auth.client_for(username).get("/builds").get_data(as_text=True)
        shown = {bid for bid in (mine, hidden) if f'data-build-id="{bid}"' in html}
        assert shown == expected, username


def test_it_filters_builds_by_status(auth, db, users, sample):
    ok = factories.make_build(db, request_id=sample["request_id"], built_by=users["oleg"], status="success")
    bad = factories.make_build(db, request_id=sample["request_id"], built_by=users["oleg"], status="failed")
    html = auth.client_for("oleg").get("/builds?status=failed").get_data(as_text=True)
    assert f'data-build-id="{bad}"' in html and f'data-build-id="{ok}"' not in html
    html = auth.client_for("oleg").get("/builds?status=nonsense").get_data(as_text=True)
    assert f'data-build-id="{bad}"' in html and f'data-build-id="{ok}"' in html


def test_it_shows_the_build_log_page(auth, db, users, sample):
    build_id = factories.make_build(
        db, request_id=sample["request_id"], built_by=users["oleg"], status="building"
    )
    db.execute(
        "UPDATE builds SET build_log = ?, steps_done = 2, steps_total = 8 WHERE id = ?",
        ("Cloning into '/workspace/billing-api'...\n<script>x</script>\n", build_id),
    )
    html = auth.client_for("dana").get(f"/builds/{build_id}").get_data(as_text=True)
    assert "Cloning into" in html
    assert "&lt;script&gt;x&lt;/script&gt;" in html  # the log is text, never markup
    assert 'data-status="building"' in html
    assert 'id="build-data"' in html and "build_log.js" in html
    assert 'data-action="cancel-build"' not in html  # developers cannot cancel
    html = auth.client_for("oleg").get(f"/builds/{build_id}").get_data(as_text=True)
    assert 'data-action="cancel-build"' in html
    assert auth.client_for("sam").get(f"/builds/{build_id}").status_code == 404
    assert auth.client_for("oleg").get("/builds/999999").status_code == 404


def test_it_serves_the_log_after_an_offset(auth, db, users, sample):
    build_id = factories.make_build(
        db, request_id=sample["request_id"], built_by=users["oleg"], status="building"
    )
    db.execute(
        "UPDATE builds SET build_log = ?, steps_done = 3, steps_total = 12 WHERE id = ?",
        ("first line\nвторая строка\n", build_id),
    )
    client = auth.client_for("colin")
    whole = client.get(f"/api/builds/{build_id}/log").get_json()
    assert whole == {
        "status": "building",
        "log": "first line\nвторая строка\n",
        "offset": 25,
        "steps_done": 3,
        "steps_total": 12,
        "progress": 0.25,
        "image_id": None,
        "error_message": None,
        "finished": False,
    }
    tail = client.get(f"/api/builds/{build_id}/log?offset=11").get_json()
    assert tail["log"] == "вторая строка\n" and tail["offset"] == 25
    assert client.get(f"/api/builds/{build_id}/log?offset=25").get_json()["log"] == ""
    assert client.get(f"/api/builds/{build_id}/log?offset=500").get_json()["log"] == ""
    for bad in ("-1", "abc", "1.5"):
        response = client.get(f"/api/builds/{build_id}/log?offset={bad}")
        assert response.status_code == 400 and "error" in response.get_json()
    hidden = auth.client_for("sam").get(f"/api/builds/{build_id}/log")
    assert hidden.status_code == 404 and "error" in hidden.get_json()


def test_it_lets_staff_cancel_an_active_build(auth, db, users, sample):
    build_id = factories.make_build(
        db, request_id=sample["request_id"], built_by=users["oleg"], status="building"
    )
    assert auth.client_for("dana").post(f"/builds/{build_id}/cancel").status_code == 403
    assert auth.client_for("sam").post(f"/builds/{build_id}/cancel").status_code == 404
    assert auth.client_for("oleg").post(f"/builds/{build_id}/cancel", csrf=False).status_code == 400
    response = auth.client_for("alice").post(f"/builds/{build_id}/cancel")
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/builds/{build_id}")
    build = db.execute("SELECT * FROM builds WHERE id = ?", (build_id,)).fetchone()
    assert build["status"] == "cancelled" and build["finished_at"]
    assert build["build_log"].endswith("Build cancelled by alice.\n")
    audit = db.execute("SELECT user_id FROM audit_log WHERE action = 'build_cancel'").fetchall()
    assert [row["user_id"] for row in audit] == [users["alice"]]
    # A finished build cannot be cancelled again: refused with a message, nothing changes.
    again = auth.client_for("oleg").post(f"/builds/{build_id}/cancel", follow_redirects=True)
    assert "flash-error" in again.get_data(as_text=True)
    assert db.execute("SELECT COUNT(*) FROM audit_log WHERE action = 'build_cancel'").fetchone()[0] == 1
    refused = auth.client_for("oleg").post(
        f"/builds/{build_id}/cancel", headers={"Accept": "application/json"}
    )
    assert refused.status_code == 409 and "error" in refused.get_json()


def test_it_follows_a_build_from_the_button_to_the_image(auth, db, users, sample, engine, clock):
    engine.build_failure_rate = 0
    client = auth.client_for("oleg")
    location = client.post(f"/requests/{sample['request_id']}/build").headers["Location"]
    build_id = int(location.rsplit("/", 1)[1])
    offset, text, seen = 0, "", []
    for _ in range(200):
        engine.step(clock.advance(0.5))
        payload = client.get(f"/api/builds/{build_id}/log?offset={offset}").get_json()
        text += payload["log"]
        offset = payload["offset"]
        seen.append(payload["status"])
        if payload["finished"]:
            break
    assert payload["status"] == "success" and payload["progress"] == 1.0 and payload["image_id"]
    assert text == db.execute("SELECT build_log FROM builds WHERE id = ?", (build_id,)).fetchone()[0]
    assert "building" in seen
    html = client.get(f"/builds/{build_id}").get_data(as_text=True)
    assert f"/images/{payload['image_id']}" in html


def test_it_shows_builds_and_the_build_button_on_the_request_page(auth, db, users, sample):
    build_id = factories.make_build(
        db,
        request_id=sample["request_id"],
        built_by=users["oleg"],
        status="success",
        image_id=sample["image_id"],
    )
    html = auth.client_for("oleg").get(f"/requests/{sample['request_id']}").get_data(as_text=True)
    assert 'data-action="start-build"' in html
    assert f'data-build-id="{build_id}"' in html and f'data-image-id="{sample["image_id"]}"' in html
    html = auth.client_for("dana").get(f"/requests/{sample['request_id']}").get_data(as_text=True)
    assert 'data-action="start-build"' not in html and f'data-build-id="{build_id}"' in html
    draft = factories.make_request(db, owner_id=users["dana"], status="draft")
    html = auth.client_for("oleg").get(f"/requests/{draft}").get_data(as_text=True)
    assert 'data-action="start-build"' not in html


def retry(auth, username, build_id, **kwargs):
    return auth.client_for(username).post(f"/builds/{build_id}/retry", **kwargs)


@pytest.mark.parametrize("old_status", ["failed", "cancelled"])
def test_a_retry_of_a_failed_build_queues_a_new_build_of_the_same_request(
    auth, db, users, sample, old_status
):
    old = factories.make_build(db, request_id=sample["request_id"], built_by=users["oleg"], status=old_status)
    page = auth.client_for("oleg").get(f"/builds/{old}").get_data(as_text=True)
    assert 'data-action="retry-build"' in page
    response = retry(auth, "alice", old)
    new = db.execute("SELECT * FROM builds WHERE id != ?", (old,)).fetchone()
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/builds/{new['id']}")
    assert new["request_id"] == sample["request_id"] and new["status"] == "queued"
    assert new["built_by"] == users["alice"]
    assert db.execute("SELECT status FROM builds WHERE id = ?", (old,)).fetchone()[0] == old_status
    details = json.loads(
        db.execute("SELECT details FROM audit_log WHERE action = 'build_start'").fetchone()[0]
    )
    assert details["retry_of"] == old


@pytest.mark.parametrize("status", ["success", "queued", "building"])
def test_it_refuses_to_retry_a_build_that_did_not_fail(auth, db, users, sample, status):
    old = factories.make_build(db, request_id=sample["request_id"], built_by=users["oleg"], status=status)
    assert 'data-action="retry-build"' not in auth.client_for("oleg").get(f"/builds/{old}").get_data(
        as_text=True
    )
    response = retry(auth, "oleg", old)
    assert response.status_code == 302 and builds_count(db) == 1


@pytest.mark.parametrize("username, status", [("dana", 403), ("carl", 403), ("sam", 404)])
def test_only_who_may_build_may_retry(auth, db, users, sample, username, status):
    old = factories.make_build(db, request_id=sample["request_id"], built_by=users["oleg"], status="failed")
    if status == 403:
        page = auth.client_for(username).get(f"/builds/{old}").get_data(as_text=True)
        assert 'data-action="retry-build"' not in page
    assert retry(auth, username, old).status_code == status
    assert retry(auth, "oleg", old, csrf=False).status_code == 400
    assert builds_count(db) == 1


def test_it_refuses_to_retry_when_the_request_is_no_longer_approved(auth, db, users):
    request_id = factories.make_request(db, owner_id=users["dana"], status="approved")
    old = factories.make_build(db, request_id=request_id, built_by=users["oleg"], status="failed")
    db.execute("UPDATE image_requests SET status = 'rejected' WHERE id = ?", (request_id,))
    db.commit()
    assert 'data-action="retry-build"' not in auth.client_for("oleg").get(f"/builds/{old}").get_data(
        as_text=True
    )
    assert retry(auth, "oleg", old).status_code == 302 and builds_count(db) == 1
