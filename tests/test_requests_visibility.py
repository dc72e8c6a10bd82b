"""Who sees which request (spec 3.2): in the list, on the detail page, as JSON, and
for every action. Hidden requests answer 404."""

from __future__ import annotations

import pytest

from tests import factories
from tests.test_requests_form import valid_form

SEES_SAMPLE = ["root", "alice", "oleg", "dana", "carl", "colin"]
HIDDEN_FROM = ["sam", "ann", "joanna"]


def list_ids(client, query="") -> list[int]:
    data = client.get("/requests" + query, headers={"Accept": "application/json"}).get_json()
    return [item["id"] for item in data["items"]]


@pytest.mark.parametrize("login", SEES_SAMPLE)
def test_it_shows_the_request_to_staff_and_members(auth, sample, login):
    client = auth.client_for(login)
    request_id = sample["request_id"]
    assert list_ids(client) == [request_id]
    page = client.get("/requests").get_data(as_text=True)
    assert f'data-request-id="{request_id}"' in page
    assert client.get(f"/requests/{request_id}").status_code == 200
    data = client.get(f"/requests/{request_id}", headers={"Accept": "application/json"}).get_json()
    assert data["id"] == request_id and data["owner_username"] == "dana"


@pytest.mark.parametrize("login", HIDDEN_FROM)
def test_it_hides_the_request_from_everyone_else(auth, sample, login):
    client = auth.client_for(login)
    request_id = sample["request_id"]
    assert list_ids(client) == []
    assert 'data-request-id="' not in client.get("/requests").get_data(as_text=True)
    assert client.get(f"/requests/{request_id}").status_code == 404
    response = client.get(f"/requests/{request_id}", headers={"Accept": "application/json"})
    assert response.status_code == 404 and "error" in response.get_json()


@pytest.mark.parametrize("login", HIDDEN_FROM)
def test_it_answers_404_to_every_action_on_a_hidden_request(auth, db, users, login):
    request_id = factories.make_request(
        db, owner_id=users["dana"], created_by=users["carl"], collaborators="colin"
    )
    client = auth.client_for(login)
    assert client.get(f"/requests/{request_id}/edit").status_code == 404
    assert client.post(f"/requests/{request_id}/edit", data=valid_form()).status_code == 404
    assert client.post(f"/requests/{request_id}/submit").status_code == 404
    assert client.post(f"/requests/{request_id}/status", data={"status": "draft"}).status_code == 404
    assert db.execute("SELECT status FROM image_requests").fetchone()[0] == "draft"


def test_the_same_404_for_a_missing_and_a_hidden_request(auth, sample):
    client = auth.client_for("sam")
    hidden = client.get(f"/requests/{sample['request_id']}")
    missing = client.get("/requests/9999")
    assert hidden.status_code == missing.status_code == 404
    # Only the language switch's "come back here" path differs.
    assert hidden.get_data(as_text=True) == missing.get_data(as_text=True).replace(
        "/requests/9999", f"/requests/{sample['request_id']}"
    )


def test_it_matches_collaborators_by_whole_login(auth, db, users):
    for_ann = factories.make_request(db, owner_id=users["dana"], collaborators="ann")
    for_joanna = factories.make_request(db, owner_id=users["dana"], collaborators="joanna, colin")
    assert list_ids(auth.client_for("ann")) == [for_ann]
    assert list_ids(auth.client_for("joanna")) == [for_joanna]
    assert auth.client_for("ann").get(f"/requests/{for_joanna}").status_code == 404
    assert auth.client_for("joanna").get(f"/requests/{for_ann}").status_code == 404


def test_it_lets_a_collaborator_added_through_the_form_see_the_request(auth, db):
    auth.client_for("carl").post("/requests/new", data=valid_form(collaborators="Ann"))
    request_id = db.execute("SELECT id FROM image_requests").fetchone()[0]
    assert auth.client_for("ann").get(f"/requests/{request_id}").status_code == 200
    assert auth.client_for("joanna").get(f"/requests/{request_id}").status_code == 404


def test_it_sends_anonymous_users_to_the_login(client, sample):
    assert "/login" in client.get("/requests").headers["Location"]
    assert "/login" in client.get(f"/requests/{sample['request_id']}").headers["Location"]
    response = client.get("/requests", headers={"Accept": "application/json"})
    assert response.status_code == 401


# --- list filters, order, pagination ---------------------------------------------


@pytest.fixture
def several(db, users):
    ids = {}
    ids["a"] = factories.make_request(
        db, owner_id=users["dana"], created_by=users["carl"], image_name="alpha", status="draft"
    )
    ids["b"] = factories.make_request(
        db,
        owner_id=users["carl"],
        created_by=users["carl"],
        image_name="beta",
        status="approved",
        repo_url="https://gitlab.com/team/special_repo.git",
    )
    ids["c"] = factories.make_request(
        db,
        owner_id=users["sam"],
        created_by=users["sam"],
        image_name="gamma",
        status="submitted",
        collaborators="carl",
    )
    db.execute("UPDATE image_requests SET updated_at = '2026-02-0' || id || 'T00:00:00Z'")
    return ids


def test_it_lists_newest_first(auth, several):
    assert list_ids(auth.client_for("oleg")) == [several["c"], several["b"], several["a"]]


def test_it_filters_by_status_owner_and_text(auth, several):
    client = auth.client_for("oleg")
    assert list_ids(client, "?status=approved") == [several["b"]]
    assert list_ids(client, "?status=bogus") == [several["c"], several["b"], several["a"]]
    assert list_ids(client, "?owner=Dana") == [several["a"]]
    assert list_ids(client, "?q=gam") == [several["c"]]
    assert list_ids(client, "?q=special_repo") == [several["b"]]
    assert list_ids(client, "?q=%25") == []  # a LIKE wildcard is searched literally
    assert list_ids(client, "?q=a&status=draft") == [several["a"]]


def test_it_narrows_a_developers_list_to_their_own(auth, several):
    client = auth.client_for("carl")
    assert list_ids(client) == [several["c"], several["b"], several["a"]]
    assert list_ids(client, "?mine=1") == [several["b"], several["a"]]
    assert 'name="mine"' in client.get("/requests").get_data(as_text=True)
    assert 'name="mine"' not in auth.client_for("oleg").get("/requests").get_data(as_text=True)


def test_it_paginates_keeping_the_filters(app, auth, db, users):
    app.config["PER_PAGE"] = 2
    for number in range(5):
        factories.make_request(db, owner_id=users["dana"], image_name=f"svc{number}")
    client = auth.client_for("oleg")
    assert len(list_ids(client, "?owner=dana")) == 2
    page = client.get("/requests?owner=dana").get_data(as_text=True)
    assert 'rel="next"' in page and "owner=dana" in page.split('rel="next"')[1].split(">")[0]
    assert len(list_ids(client, "?owner=dana&page=3")) == 1
    assert list_ids(client, "?page=abc") == list_ids(client)
