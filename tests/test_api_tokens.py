"""Personal access tokens and the JSON API (issue 22): creating, showing once,
hashing, scopes, the owner's role on top, blocking, revocation and expiry on a fake
clock, CSRF with a cookie but not with a token, the error shape and cursor pages."""

from __future__ import annotations

import re

import pytest

from samosval.domain import access_tokens
from samosval.domain.tokens import hash_token
from tests import factories

DAY = 86400.0


@pytest.fixture
def tokens(app, db, users, engine, clock):
    """``make(persona, scopes, days)`` -> a token created through the domain."""
    from types import SimpleNamespace

    def make(persona: str, scopes=("read",), days=90) -> str:
        row = db.execute("SELECT * FROM users WHERE username = ?", (persona,)).fetchone()
        owner = SimpleNamespace(id=row["id"], username=row["username"], role=row["role"])
        return access_tokens.create_token(db, owner, f"{persona} script", scopes, days, now=clock())[1]

    return make


@pytest.fixture(autouse=True)
def english(client):
    """Refusals of a token are read by anonymous callers: English via the session."""
    with client.session_transaction() as session:
        session["lang"] = "en"


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def audit_rows(db, action: str) -> list:
    return db.execute("SELECT * FROM audit_log WHERE action = ? ORDER BY id", (action,)).fetchall()


# --- the tokens page ------------------------------------------------------------------------


def test_it_shows_a_new_token_once_and_stores_only_its_hash(auth, db, engine):
    client = auth.client_for("dana")
    page = client.post("/account/tokens", data={"name": "ci", "scopes": ["read", "write"], "days": ""})
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    token = re.search(r'id="new-token">(smpat_[\w-]+)<', page.get_data(as_text=True)).group(1)
    row = db.execute("SELECT * FROM api_tokens").fetchone()
    assert row["token_hash"] == hash_token(token) and token not in str(dict(row).values())
    assert row["scopes"] == "read write" and row["expires_ts"] - engine.clock() == 90 * DAY
    again = client.get("/account/tokens").get_data(as_text=True)
    assert token not in again and row["token_prefix"] in again
    assert audit_rows(db, "api_token_create")[0]["target_id"] == row["id"]


@pytest.mark.parametrize(
    "form, field",
    [
        ({"name": "", "scopes": ["read"]}, "name"),
        ({"name": "x" * 81, "scopes": ["read"]}, "name"),
        ({"name": "ci", "scopes": []}, "scopes"),
        ({"name": "ci", "scopes": ["root"]}, "scopes"),
        ({"name": "ci", "scopes": ["admin"]}, "scopes"),  # dana is a developer
        ({"name": "ci", "scopes": ["read"], "days": "366"}, "days"),
        ({"name": "ci", "scopes": ["read"], "days": "0"}, "days"),
        ({"name": "ci", "scopes": ["read"], "days": "soon"}, "days"),
    ],
)
def test_it_refuses_a_bad_token_form(auth, db, form, field):
    response = auth.client_for("dana").post("/account/tokens", data=form)
    assert response.status_code == 400
    assert f'id="error-{field}"' in response.get_data(as_text=True)
    assert db.execute("SELECT COUNT(*) FROM api_tokens").fetchone()[0] == 0


def test_an_admin_may_give_the_admin_scope(auth, db):
    response = auth.client_for("alice").post(
        "/account/tokens", data={"name": "ops", "scopes": ["admin"], "days": "365"}
    )
    assert response.status_code == 200
    assert db.execute("SELECT scopes FROM api_tokens").fetchone()[0] == "admin"


def test_it_revokes_own_tokens_only(auth, db, tokens, client):
    token = tokens("dana")
    token_id = db.execute("SELECT id FROM api_tokens").fetchone()[0]
    assert auth.client_for("sam").post(f"/account/tokens/{token_id}/revoke").status_code == 404
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200
    response = auth.client_for("dana").post(f"/account/tokens/{token_id}/revoke")
    assert response.status_code == 302
    refused = client.get("/api/v1/me", headers=bearer(token))
    assert refused.status_code == 401
    assert refused.get_json() == {"error": {"code": "unauthorized", "message": "The token has been revoked."}}
    again = auth.client_for("dana").post(
        f"/account/tokens/{token_id}/revoke", headers={"Accept": "application/json"}
    )
    assert again.status_code == 409  # already revoked
    assert len(audit_rows(db, "api_token_revoke")) == 1
    assert "revoked" in auth.client_for("dana").get("/account/tokens").get_data(as_text=True)


def test_it_shows_when_a_token_was_last_used(auth, db, tokens, client, clock):
    token = tokens("dana")
    assert db.execute("SELECT last_used_at FROM api_tokens").fetchone()[0] is None
    client.get("/api/v1/me", headers=bearer(token))
    used = db.execute("SELECT last_used_at FROM api_tokens").fetchone()[0]
    assert used is not None
    page = auth.client_for("dana").get("/account/tokens").get_data(as_text=True)
    assert "never" not in page.split("data-last-used>")[1].split("<")[0]


# --- what a token may do --------------------------------------------------------------------------


def test_a_token_acts_as_its_owner(client, tokens):
    body = client.get("/api/v1/me", headers=bearer(tokens("dana", ("read", "write")))).get_json()
    assert body["username"] == "dana" and body["role"] == "developer"
    assert body["token_scopes"] == ["read", "write"]


def test_a_read_token_cannot_write(client, db, tokens, sample):
    token = tokens("oleg", ("read",))
    assert client.get(f"/api/v1/requests/{sample['request_id']}", headers=bearer(token)).status_code == 200
    response = client.post(f"/api/v1/requests/{sample['request_id']}/builds", headers=bearer(token))
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "insufficient_scope"
    assert db.execute("SELECT COUNT(*) FROM builds").fetchone()[0] == 0
    refused = audit_rows(db, "api_token_refused")
    assert refused and '"scope"' in refused[-1]["details"]


def test_a_write_token_cannot_read(client, tokens, sample):
    token = tokens("oleg", ("write",))
    assert client.get("/api/v1/requests", headers=bearer(token)).status_code == 403
    assert (
        client.post(f"/api/v1/requests/{sample['request_id']}/builds", headers=bearer(token)).status_code
        == 201
    )


def test_users_and_audit_need_the_admin_scope(client, tokens):
    reader = tokens("alice", ("read", "write"))
    assert client.get("/api/v1/users", headers=bearer(reader)).status_code == 403
    admin = tokens("alice", ("admin",))
    assert client.get("/api/v1/users", headers=bearer(admin)).status_code == 200
    assert client.get("/api/v1/audit", headers=bearer(admin)).status_code == 200


def test_a_token_never_exceeds_its_owners_role(client, db, users, tokens, app):
    """An admin-scoped token of an admin who is then demoted reaches no admin route."""
    token = tokens("alice", ("read", "admin"))
    db.execute("UPDATE users SET role = 'developer' WHERE username = 'alice'")
    db.commit()
    assert client.get("/api/v1/users", headers=bearer(token)).status_code == 403
    assert client.get("/api/v1/me", headers=bearer(token)).get_json()["role"] == "developer"


def test_a_developer_token_cannot_read_another_teams_request(client, tokens, sample):
    token = tokens("sam", ("read", "write"))
    response = client.get(f"/api/v1/requests/{sample['request_id']}", headers=bearer(token))
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"
    listed = client.get("/api/v1/requests", headers=bearer(token)).get_json()
    assert listed == {"items": [], "next_cursor": None}
    own = client.get(f"/api/v1/requests/{sample['request_id']}", headers=bearer(tokens("colin")))
    assert own.status_code == 200


def test_a_token_stops_working_when_its_owner_is_blocked(client, db, tokens, auth, users):
    token = tokens("dana")
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200
    auth.client_for("alice").post(f"/admin/users/{users['dana']}/block")
    response = client.get("/api/v1/me", headers=bearer(token))
    assert response.status_code == 401
    assert "blocked" in response.get_json()["error"]["message"]


def test_it_expires_on_the_clock(client, db, tokens, clock):
    token = tokens("dana", days=1)
    clock.advance(DAY - 1)
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200
    clock.advance(1)
    response = client.get("/api/v1/me", headers=bearer(token))
    assert response.status_code == 401 and response.get_json()["error"]["message"] == "The token has expired."
    assert '"expired"' in audit_rows(db, "api_token_refused")[-1]["details"]


def test_unknown_tokens_are_refused_and_audited(client, db):
    for header in ("Bearer smpat_nope", "Bearer ", "bearer " + "x" * 5000):
        response = client.get("/api/v1/me", headers={"Authorization": header})
        assert response.status_code == 401, header
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert len(audit_rows(db, "api_token_refused")) == 3


def test_a_token_works_on_the_pages_json_too(client, tokens, sample):
    """Every /api route takes a token, the pages' own JSON included."""
    response = client.get(
        f"/api/deployments/{sample['deployment_id']}/metrics", headers=bearer(tokens("dana"))
    )
    assert response.status_code == 200


def test_a_token_is_ignored_outside_the_api(client, tokens):
    assert client.get("/requests", headers=bearer(tokens("dana"))).status_code == 302  # to the login


# --- CSRF: none with a token, still with a cookie ----------------------------------------------------


def test_a_token_needs_no_csrf_token(client, db, tokens, sample):
    response = client.post(
        f"/api/v1/requests/{sample['request_id']}/builds",
        csrf=False,
        headers=bearer(tokens("oleg", ("read", "write"))),
    )
    assert response.status_code == 201


def test_a_session_cookie_still_needs_a_csrf_token(auth, db, sample):
    client = auth.client_for("oleg")
    refused = client.post(f"/api/v1/requests/{sample['request_id']}/builds", csrf=False)
    assert refused.status_code == 400 and refused.get_json()["error"]["code"] == "invalid"
    assert db.execute("SELECT COUNT(*) FROM builds").fetchone()[0] == 0
    assert client.post(f"/api/v1/requests/{sample['request_id']}/builds").status_code == 201


def test_a_bad_token_with_a_good_cookie_is_still_refused(auth, sample):
    """With a bearer header the cookie is not looked at: no falling back to it."""
    client = auth.client_for("oleg")
    response = client.post(
        f"/api/v1/requests/{sample['request_id']}/builds",
        csrf=False,
        headers={"Authorization": "Bearer smpat_wrong"},
    )
    assert response.status_code == 401


# --- the error shape and pagination -------------------------------------------------------------------


def test_every_api_error_has_one_shape(client, tokens, sample):
    token = bearer(tokens("dana", ("read", "write")))
    answers = [
        client.get("/api/v1/requests/987654", headers=token),  # refused: 404
        client.get("/api/v1/requests?status=nope", headers=token),  # input: 400
        client.post("/api/v1/requests", json={"image_name": 5}, headers=token),  # body: 400
        client.delete("/api/v1/requests", headers=token),  # 405
        client.get("/api/v1/nothing-here", headers=token),  # 404
        client.get("/api/users/search?role=king", headers=token),  # the pages' JSON: 400
        client.post(f"/api/v1/requests/{sample['request_id']}/submit", headers=token),  # conflict: 409
    ]
    for response in answers:
        body = response.get_json()
        assert set(body) == {"error"}, body
        assert isinstance(body["error"]["code"], str) and body["error"]["message"], body
    assert answers[2].get_json()["error"]["errors"]["image_name"]


def test_it_creates_a_request_with_the_forms_rules(client, db, tokens):
    token = bearer(tokens("dana", ("read", "write")))
    bad = client.post(
        "/api/v1/requests",
        headers=token,
        json={"image_name": "Bad Name", "repo_url": "nope", "base_image": "python:3.12", "version_tag": "1"},
    )
    assert bad.status_code == 400 and set(bad.get_json()["error"]["errors"]) >= {"image_name", "repo_url"}
    good = client.post(
        "/api/v1/requests",
        headers=token,
        json={
            "image_name": "billing-api",
            "repo_url": "https://github.com/acme/billing.git",
            "base_image": "python:3.12-slim",
            "version_tag": "1.0.0",
        },
    )
    assert good.status_code == 201, good.get_json()
    body = good.get_json()
    assert body["status"] == "draft" and body["owner_username"] == "dana"
    submitted = client.post(f"/api/v1/requests/{body['id']}/submit", headers=token)
    assert submitted.get_json() == {"id": body["id"], "status": "submitted"}


def test_lists_are_paged_with_a_cursor(client, db, users, tokens):
    ids = [factories.make_request(db, owner_id=users["dana"], image_name=f"app-{n}") for n in range(5)]
    token = bearer(tokens("dana"))
    seen, cursor = [], None
    while True:
        url = "/api/v1/requests?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(url, headers=token).get_json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(ids, reverse=True)
    assert client.get("/api/v1/requests?cursor=garbage!", headers=token).status_code == 400


def test_deployment_actions_logs_and_rollback(client, db, users, tokens, sample):
    token = bearer(tokens("dana", ("read", "write")))
    deployment_id = sample["deployment_id"]
    state = client.get(f"/api/v1/deployments/{deployment_id}", headers=token).get_json()
    assert "stop" in state["actions"]
    stopped = client.post(
        f"/api/v1/deployments/{deployment_id}/actions", json={"action": "stop"}, headers=token
    )
    assert stopped.status_code == 200 and stopped.get_json()["status"] == "stopped"
    logs = client.get(f"/api/v1/deployments/{deployment_id}/logs", headers=token).get_json()
    assert logs["lines"] and logs["next_after"] == logs["lines"][-1]["seq"]
    later = client.get(f"/api/v1/deployments/{deployment_id}/logs?after={logs['next_after']}", headers=token)
    assert later.get_json()["lines"] == []
    factories.make_release(db, deployment_id=deployment_id, number=1)
    factories.make_release(db, deployment_id=deployment_id, number=2, current=True)
    db.commit()
    releases = client.get(f"/api/v1/deployments/{deployment_id}/releases", headers=token).get_json()
    assert [(item["number"], item["current"]) for item in releases["items"]] == [(2, True), (1, False)]
    refused = client.post(f"/api/v1/deployments/{deployment_id}/rollback", json={"release": 2}, headers=token)
    assert refused.status_code == 409  # v2 is the current release
    rolled = client.post(f"/api/v1/deployments/{deployment_id}/rollback", json={"release": 1}, headers=token)
    assert rolled.status_code == 200, rolled.get_json()
    assert rolled.get_json()["pinned"] is True and rolled.get_json()["release"]["rollback_of"] == 1
