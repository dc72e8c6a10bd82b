"""The request status flow: who may move a request where, what is refused, and the
audit rows and history every move leaves."""

from __future__ import annotations

import json

import pytest

from samosval.domain.requests import REQUEST_STATUSES, TRANSITIONS
from tests import factories

ALLOWED = [(old, new) for old, targets in TRANSITIONS.items() for new in targets]
REFUSED = [
    (old, new)
    for old in REQUEST_STATUSES
    for new in REQUEST_STATUSES
    if new != old and new not in TRANSITIONS[old]
]


def make(db, users, status="draft"):
    return factories.make_request(
        db, owner_id=users["dana"], created_by=users["carl"], collaborators="colin", status=status
    )


def status_of(db, request_id):
    return db.execute("SELECT status FROM image_requests WHERE id = ?", (request_id,)).fetchone()[0]


def status_audits(db):
    return db.execute(
        "SELECT action, user_id, target_type, target_id, details FROM audit_log "
        "WHERE action IN ('request_submit', 'request_status') ORDER BY id"
    ).fetchall()


def flashed_error(client):
    with client.session_transaction() as sess:
        return [message for category, message in sess.get("_flashes", []) if category == "error"]


def test_the_flow_table_covers_every_status():
    assert set(TRANSITIONS) == set(REQUEST_STATUSES)
    assert ("draft", "approved") in REFUSED and ("approved", "rejected") in REFUSED


@pytest.mark.parametrize("login", ["carl", "dana"])
def test_it_lets_the_creator_or_owner_submit_a_draft(auth, db, users, login):
    request_id = make(db, users)
    response = auth.client_for(login).post(f"/requests/{request_id}/submit")
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/requests/{request_id}")
    assert status_of(db, request_id) == "submitted"
    [entry] = status_audits(db)
    assert entry["action"] == "request_submit" and entry["user_id"] == users[login]
    assert entry["target_type"] == "request" and entry["target_id"] == request_id
    assert json.loads(entry["details"]) == {"old": "draft", "new": "submitted"}


@pytest.mark.parametrize("login", ["colin"])
def test_it_refuses_a_submit_by_a_collaborator(auth, db, users, login):
    request_id = make(db, users)
    client = auth.client_for(login)
    assert 'data-action="submit"' not in client.get(f"/requests/{request_id}").get_data(as_text=True)
    response = client.post(f"/requests/{request_id}/submit")
    # A permission refusal is a real 403 (tests/security: the authorization matrix).
    assert response.status_code == 403
    assert 'data-status-code="403"' in response.get_data(as_text=True)
    assert status_of(db, request_id) == "draft" and status_audits(db) == []


@pytest.mark.parametrize("status", ["submitted", "in_review", "approved", "rejected"])
def test_it_refuses_to_submit_what_is_not_a_draft(auth, db, users, status):
    request_id = make(db, users, status)
    client = auth.client_for("carl")
    response = client.post(f"/requests/{request_id}/submit")
    assert response.status_code == 302 and flashed_error(client)
    assert status_of(db, request_id) == status and status_audits(db) == []
    json_response = client.post(f"/requests/{request_id}/submit", headers={"Accept": "application/json"})
    assert json_response.status_code == 409 and "error" in json_response.get_json()


@pytest.mark.parametrize("login", ["oleg", "alice"])
@pytest.mark.parametrize("old, new", ALLOWED)
def test_it_lets_staff_make_every_allowed_move(auth, db, users, login, old, new):
    request_id = make(db, users, old)
    client = auth.client_for(login)
    if new != "submitted" or old != "draft":
        page = client.get(f"/requests/{request_id}").get_data(as_text=True)
        assert f'data-action="status-{new}"' in page
    response = client.post(f"/requests/{request_id}/status", data={"status": new})
    assert response.status_code == 302 and not flashed_error(client)
    assert status_of(db, request_id) == new
    [entry] = status_audits(db)
    assert entry["user_id"] == users[login]
    assert entry["action"] == ("request_submit" if old == "draft" else "request_status")
    assert json.loads(entry["details"]) == {"old": old, "new": new}


@pytest.mark.parametrize("old, new", REFUSED)
def test_it_refuses_a_move_the_flow_does_not_allow(auth, db, users, old, new):
    request_id = make(db, users, old)
    client = auth.client_for("oleg")
    page = client.get(f"/requests/{request_id}").get_data(as_text=True)
    assert f'data-action="status-{new}"' not in page
    response = client.post(f"/requests/{request_id}/status", data={"status": new})
    assert response.status_code == 302 and flashed_error(client)
    assert status_of(db, request_id) == old and status_audits(db) == []
    json_response = client.post(
        f"/requests/{request_id}/status", data={"status": new}, headers={"Accept": "application/json"}
    )
    assert json_response.status_code == 409


@pytest.mark.parametrize("status", REQUEST_STATUSES)
def test_it_refuses_a_move_to_the_same_status(auth, db, users, status):
    request_id = make(db, users, status)
    response = auth.client_for("oleg").post(
        f"/requests/{request_id}/status", data={"status": status}, headers={"Accept": "application/json"}
    )
    assert response.status_code == 409 and status_audits(db) == []


def test_it_refuses_an_unknown_status(auth, db, users):
    request_id = make(db, users, "submitted")
    response = auth.client_for("oleg").post(
        f"/requests/{request_id}/status", data={"status": "done"}, headers={"Accept": "application/json"}
    )
    assert response.status_code == 400
    assert status_of(db, request_id) == "submitted"


@pytest.mark.parametrize("login", ["carl", "dana", "colin"])
@pytest.mark.parametrize(
    "old, new",
    [
        ("submitted", "approved"),
        ("submitted", "in_review"),
        ("in_review", "rejected"),
        ("approved", "draft"),
        ("submitted", "draft"),
    ],
)
def test_it_refuses_review_moves_by_developers(auth, db, users, login, old, new):
    request_id = make(db, users, old)
    client = auth.client_for(login)
    assert 'data-action="status-' not in client.get(f"/requests/{request_id}").get_data(as_text=True)
    response = client.post(
        f"/requests/{request_id}/status", data={"status": new}, headers={"Accept": "application/json"}
    )
    assert response.status_code == 403
    assert status_of(db, request_id) == old and status_audits(db) == []


@pytest.mark.parametrize("login", ["carl", "dana"])
def test_it_lets_the_creator_or_owner_rework_a_rejected_request(auth, db, users, login):
    request_id = make(db, users, "rejected")
    client = auth.client_for(login)
    page = client.get(f"/requests/{request_id}").get_data(as_text=True)
    assert 'data-action="status-draft"' in page
    assert 'data-action="status-in_review"' not in page
    assert client.post(f"/requests/{request_id}/status", data={"status": "draft"}).status_code == 302
    assert status_of(db, request_id) == "draft"
    [entry] = status_audits(db)
    assert entry["action"] == "request_status"
    assert json.loads(entry["details"]) == {"old": "rejected", "new": "draft"}


def test_it_refuses_a_rework_by_a_collaborator(auth, db, users):
    request_id = make(db, users, "rejected")
    response = auth.client_for("colin").post(
        f"/requests/{request_id}/status", data={"status": "draft"}, headers={"Accept": "application/json"}
    )
    assert response.status_code == 403 and status_of(db, request_id) == "rejected"


def test_it_refuses_a_status_post_without_csrf(auth, db, users):
    request_id = make(db, users, "submitted")
    response = auth.client_for("oleg").post(
        f"/requests/{request_id}/status", data={"status": "approved"}, csrf=False
    )
    assert response.status_code == 400 and status_of(db, request_id) == "submitted"


def test_it_shows_the_status_history_in_order(auth, db, users):
    client = auth.client_for("carl")
    from tests.test_requests_form import valid_form

    client.post("/requests/new", data=valid_form())
    request_id = db.execute("SELECT id FROM image_requests").fetchone()[0]
    client.post(f"/requests/{request_id}/submit")
    operator = auth.client_for("oleg")
    operator.post(f"/requests/{request_id}/status", data={"status": "in_review"})
    operator.post(f"/requests/{request_id}/status", data={"status": "rejected"})
    client.post(f"/requests/{request_id}/edit", data=valid_form(version_tag="2.0.2"))
    page = client.get(f"/requests/{request_id}").get_data(as_text=True)
    history = page.split('data-card="status-history"')[1]
    actions = [chunk.split('"')[0] for chunk in history.split('data-history-action="')[1:]]
    assert actions == ["request_create", "request_submit", "request_status", "request_status"]
    assert 'data-status="rejected"' in history and "oleg" in history
    assert "request_edit" not in history


def test_a_full_review_cycle_as_json(auth, db, users):
    request_id = make(db, users)
    headers = {"Accept": "application/json"}
    assert auth.client_for("carl").post(f"/requests/{request_id}/submit", headers=headers).get_json() == {
        "id": request_id,
        "status": "submitted",
    }
    operator = auth.client_for("oleg")
    for status in ("in_review", "approved"):
        assert (
            operator.post(
                f"/requests/{request_id}/status", data={"status": status}, headers=headers
            ).get_json()["status"]
            == status
        )


def test_an_approved_request_offers_only_valid_actions_with_one_primary(auth, db, users):
    request_id = make(db, users, "approved")
    page = auth.client_for("oleg").get(f"/requests/{request_id}").get_data(as_text=True)
    assert 'data-action="status-in_review"' not in page  # approved: the next step is a build
    assert 'data-action="status-draft"' in page and 'data-action="start-build"' in page
    actions = page[page.index('data-actions="request"') : page.index('data-card="request-fields"')]
    assert actions.count("btn-primary") == 0  # the one primary action is "Start build"
    response = auth.client_for("oleg").post(
        f"/requests/{request_id}/status", data={"status": "in_review"}, headers={"Accept": "application/json"}
    )
    assert response.status_code == 409


def test_a_request_in_review_has_one_primary_action(auth, db, users):
    request_id = make(db, users, "in_review")
    page = auth.client_for("oleg").get(f"/requests/{request_id}").get_data(as_text=True)
    actions = page[page.index('data-actions="request"') : page.index('data-card="request-fields"')]
    assert (
        actions.count("btn-primary") == 1
        and 'class="btn btn-danger" data-action="status-rejected"' in actions
    )
