"""Administration of users: who may reach /admin, creating users, blocking,
role changes and password resets, and what each one writes to the audit log."""

from __future__ import annotations

import json

import pytest

from samosval.simulator.runtime import get_state
from tests.conftest import PASSWORD

JSON = {"Accept": "application/json"}


def admin_routes(users):
    target = users["sam"]
    return [
        ("get", "/admin/users"),
        ("post", "/admin/users/create"),
        ("post", f"/admin/users/{target}/block"),
        ("post", f"/admin/users/{target}/unblock"),
        ("post", f"/admin/users/{target}/role"),
        ("post", f"/admin/users/{target}/reset_password"),
        ("get", "/admin/audit"),
        ("get", "/admin/audit.csv"),
    ]


def audit_rows(db, action):
    return db.execute("SELECT * FROM audit_log WHERE action = ? ORDER BY id", (action,)).fetchall()


def user_row(db, username):
    return db.execute("SELECT * FROM users WHERE username = ?", (username,)).fetchone()


# --- who may come in ---------------------------------------------------------------


@pytest.mark.parametrize("persona", ["oleg", "dana", "colin"])
def test_it_refuses_every_admin_route_to_non_admins(auth, users, db, persona):
    client = auth.client_for(persona)
    for method, path in admin_routes(users):
        response = getattr(client, method)(
            path, data={"role": "admin", "username": "evil1", "password": "password123"}
        )
        assert response.status_code == 403, (persona, path)
    assert user_row(db, "sam")["is_active"] == 1 and user_row(db, "sam")["role"] == "developer"
    assert user_row(db, "evil1") is None
    assert db.execute("SELECT COUNT(*) FROM audit_log WHERE action LIKE 'user_%'").fetchone()[0] == 0


def test_it_answers_non_admin_json_callers_with_403_json(auth, users):
    response = auth.client_for("oleg").post(f"/admin/users/{users['sam']}/block", headers=JSON)
    assert response.status_code == 403 and response.is_json and response.json["error"]


def test_it_sends_anonymous_visitors_to_login(client, users):
    for method, path in admin_routes(users):
        response = getattr(client, method)(path)
        if method == "post":
            # without a session there is no CSRF token either; both refusals are fine,
            # what matters is that nothing happens and no page is shown
            assert response.status_code in (302, 400), path
        else:
            assert response.status_code == 302 and response.location.startswith("/login"), path


@pytest.mark.parametrize("persona", ["root", "alice"])
def test_it_lets_admins_in(auth, persona):
    client = auth.client_for(persona)
    assert client.get("/admin/users").status_code == 200
    assert client.get("/admin/audit").status_code == 200


# --- the users table -----------------------------------------------------------------


def test_it_lists_users_with_role_status_and_last_login(auth, users):
    page = auth.client_for("root").get("/admin/users").get_data(as_text=True)
    for name in ("root", "alice", "oleg", "dana", "bob"):
        assert f'data-username="{name}"' in page
    assert f'data-username="bob" data-user-id="{users["bob"]}" data-active="0"' in page
    assert 'data-role="operator"' in page


def test_it_filters_users_by_role_and_text(auth):
    client = auth.client_for("root")
    page = client.get("/admin/users?role=operator").get_data(as_text=True)
    assert 'data-username="oleg"' in page and 'data-username="dana"' not in page
    page = client.get("/admin/users?q=ann").get_data(as_text=True)
    assert 'data-username="ann"' in page and 'data-username="joanna"' in page
    assert 'data-username="dana"' not in page
    page = client.get("/admin/users?q=ann&role=admin").get_data(as_text=True)
    assert "data-user-id" not in page
    # LIKE wildcards in the text are literal
    assert "data-user-id" not in client.get("/admin/users?q=%25").get_data(as_text=True)


def test_it_hides_buttons_the_admin_may_not_use(auth, users):
    page = auth.client_for("alice").get("/admin/users").get_data(as_text=True)
    rows = {
        name: page.split(f'data-username="{name}"', 1)[1].split("</tr>", 1)[0]
        for name in ("root", "alice", "dana", "bob")
    }
    assert 'data-action="block"' not in rows["root"] and 'data-action="change-role"' not in rows["root"]
    assert 'data-action="reset-password"' not in rows["root"]  # only root resets root
    assert 'data-action="block"' not in rows["alice"] and 'data-action="reset-password"' not in rows["alice"]
    assert 'data-action="block"' in rows["dana"] and 'data-action="change-role"' in rows["dana"]
    assert 'data-action="unblock"' in rows["bob"]


# --- creating users ---------------------------------------------------------------------


def test_it_creates_a_user_and_audits_who_did_it(auth, users, db, client):
    response = auth.client_for("root").post(
        "/admin/users/create",
        data={"username": "Nina.Dev", "password": "long-enough-1", "role": "developer", "must_change": "1"},
    )
    assert response.status_code == 302 and response.location == "/admin/users"
    row = user_row(db, "nina.dev")
    assert row["role"] == "developer" and row["is_active"] == 1 and row["must_change_password"] == 1
    [entry] = audit_rows(db, "user_create")
    assert entry["user_id"] == users["root"] and entry["target_id"] == row["id"]
    assert json.loads(entry["details"]) == {"username": "nina.dev", "role": "developer"}
    assert "long-enough-1" not in entry["details"]
    assert (
        client.post("/login", data={"username": "nina.dev", "password": "long-enough-1"}).status_code == 302
    )


def test_it_creates_a_user_without_forcing_a_password_change(auth, db):
    auth.client_for("root").post(
        "/admin/users/create", data={"username": "opx", "password": "long-enough-1", "role": "operator"}
    )
    assert user_row(db, "opx")["must_change_password"] == 0


@pytest.mark.parametrize(
    "form, field",
    [
        ({"username": "", "password": "long-enough-1", "role": "developer"}, "username"),
        ({"username": "ab", "password": "long-enough-1", "role": "developer"}, "username"),
        ({"username": "bad name", "password": "long-enough-1", "role": "developer"}, "username"),
        ({"username": "nina<script>", "password": "long-enough-1", "role": "developer"}, "username"),
        ({"username": "x" * 33, "password": "long-enough-1", "role": "developer"}, "username"),
        ({"username": "dana", "password": "long-enough-1", "role": "developer"}, "username"),
        ({"username": "DANA", "password": "long-enough-1", "role": "developer"}, "username"),
        ({"username": "nina", "password": "short", "role": "developer"}, "password"),
        ({"username": "nina", "password": "", "role": "developer"}, "password"),
        ({"username": "nina", "password": "long-enough-1", "role": "superuser"}, "role"),
        ({"username": "nina", "password": "long-enough-1", "role": ""}, "role"),
    ],
)
def test_it_rejects_a_bad_new_user_and_keeps_the_form(auth, db, form, field):
    users_before = db.execute("SELECT COUNT(*) FROM users").fetchone()[0]
    response = auth.client_for("root").post("/admin/users/create", data=form)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert f'data-error-for="{field}"' in page
    if form["username"] and field != "username":
        assert f'value="{form["username"]}"' in page
    if form["password"]:
        assert form["password"] not in page  # never echoed back
    assert db.execute("SELECT COUNT(*) FROM users").fetchone()[0] == users_before
    assert audit_rows(db, "user_create") == []


def test_it_reports_validation_errors_as_json(auth):
    response = auth.client_for("root").post(
        "/admin/users/create", headers=JSON, data={"username": "a", "password": "x", "role": "x"}
    )
    assert response.status_code == 400
    assert set(response.json["errors"]) == {"username", "password", "role"}


def test_it_refuses_a_create_without_csrf(auth, db):
    response = auth.client_for("root").post(
        "/admin/users/create",
        csrf=False,
        data={"username": "nina", "password": "long-enough-1", "role": "developer"},
    )
    assert response.status_code == 400 and user_row(db, "nina") is None


# --- blocking --------------------------------------------------------------------------


def test_it_blocks_a_user_and_ends_their_session_and_streams(app, auth, users, db):
    dana = auth.client_for("dana")
    assert dana.get("/dashboard").status_code == 200
    with app.app_context():
        revocations = get_state().revocation_count(users["dana"])
    response = auth.client_for("root").post(f"/admin/users/{users['dana']}/block")
    assert response.status_code == 302
    row = user_row(db, "dana")
    assert row["is_active"] == 0 and row["session_version"] == 1
    with app.app_context():
        assert get_state().revocation_count(users["dana"]) == revocations + 1
    follow = dana.get("/dashboard")
    assert follow.status_code == 302 and follow.location.startswith("/login")
    assert (
        app.test_client().post("/login", data={"username": "dana", "password": PASSWORD}).status_code == 401
    )
    [entry] = audit_rows(db, "user_block")
    assert (
        entry["user_id"] == users["root"]
        and entry["target_type"] == "user"
        and entry["target_id"] == users["dana"]
    )


def test_it_unblocks_a_user(app, auth, users, db):
    response = auth.client_for("alice").post(f"/admin/users/{users['bob']}/unblock")
    assert response.status_code == 302
    assert user_row(db, "bob")["is_active"] == 1
    assert app.test_client().post("/login", data={"username": "bob", "password": PASSWORD}).status_code == 302
    [entry] = audit_rows(db, "user_unblock")
    assert entry["user_id"] == users["alice"] and entry["target_id"] == users["bob"]


def test_it_returns_to_the_filtered_list_after_an_action(auth, users):
    response = auth.client_for("root").post(
        f"/admin/users/{users['dana']}/block", data={"next": "/admin/users?role=developer"}
    )
    assert response.location == "/admin/users?role=developer"
    response = auth.client_for("root").post(
        f"/admin/users/{users['dana']}/unblock", data={"next": "https://evil.example/"}
    )
    assert response.location == "/admin/users"


@pytest.mark.parametrize("action", ["block", "unblock", "role", "reset_password"])
def test_it_protects_root_at_the_route(auth, users, db, action):
    response = auth.client_for("alice").post(
        f"/admin/users/{users['root']}/{action}", data={"role": "developer"}
    )
    assert response.status_code == 403
    root = user_row(db, "root")
    assert root["is_active"] == 1 and root["role"] == "admin" and root["session_version"] == 0
    assert db.execute("SELECT COUNT(*) FROM audit_log WHERE action LIKE 'user_%'").fetchone()[0] == 0


def test_it_says_why_root_cannot_be_blocked(auth, users):
    client = auth.client_for("alice")
    page = client.post(f"/admin/users/{users['root']}/block").get_data(as_text=True)
    assert "root нельзя заблокировать" in page
    response = client.post(f"/admin/users/{users['root']}/block", headers=JSON)
    assert response.status_code == 403 and "root" in response.json["error"]


def test_it_refuses_self_block(auth, users, db):
    client = auth.client_for("alice")
    response = client.post(f"/admin/users/{users['alice']}/block")
    assert response.status_code == 403
    assert "Нельзя заблокировать самого себя" in response.get_data(as_text=True)
    assert user_row(db, "alice")["is_active"] == 1
    assert client.get("/admin/users").status_code == 200  # still signed in


def test_it_refuses_blocking_twice(auth, users, db):
    response = auth.client_for("root").post(f"/admin/users/{users['bob']}/block", headers=JSON)
    assert response.status_code == 409 and response.json["error"]
    response = auth.client_for("root").post(f"/admin/users/{users['dana']}/unblock", headers=JSON)
    assert response.status_code == 409
    assert audit_rows(db, "user_block") == [] and audit_rows(db, "user_unblock") == []


def test_it_answers_404_for_an_unknown_user(auth):
    client = auth.client_for("root")
    for action in ("block", "unblock", "role", "reset_password"):
        assert client.post(f"/admin/users/99999/{action}", data={"role": "admin"}).status_code == 404


def test_it_refuses_a_block_without_csrf(auth, users, db):
    response = auth.client_for("root").post(f"/admin/users/{users['dana']}/block", csrf=False)
    assert response.status_code == 400 and user_row(db, "dana")["is_active"] == 1


# --- roles --------------------------------------------------------------------------------


def test_it_changes_a_role_and_signs_the_user_out(app, auth, users, db):
    carl = auth.client_for("carl")
    response = auth.client_for("root").post(f"/admin/users/{users['carl']}/role", data={"role": "operator"})
    assert response.status_code == 302
    row = user_row(db, "carl")
    assert row["role"] == "operator" and row["session_version"] == 1
    assert carl.get("/dashboard").status_code == 302
    [entry] = audit_rows(db, "user_role_change")
    assert json.loads(entry["details"]) == {"username": "carl", "old": "developer", "new": "operator"}
    assert entry["user_id"] == users["root"] and entry["target_id"] == users["carl"]


def test_it_writes_nothing_when_the_role_is_the_same(auth, users, db):
    response = auth.client_for("root").post(f"/admin/users/{users['carl']}/role", data={"role": "developer"})
    assert response.status_code == 302
    assert user_row(db, "carl")["session_version"] == 0 and audit_rows(db, "user_role_change") == []


@pytest.mark.parametrize("role", ["", "root", "superuser", "ADMIN"])
def test_it_rejects_an_unknown_role(auth, users, db, role):
    response = auth.client_for("root").post(f"/admin/users/{users['carl']}/role", data={"role": role})
    assert response.status_code == 400
    assert user_row(db, "carl")["role"] == "developer"


def test_it_refuses_changing_ones_own_role(auth, users, db):
    response = auth.client_for("alice").post(
        f"/admin/users/{users['alice']}/role", data={"role": "developer"}
    )
    assert response.status_code == 403 and user_row(db, "alice")["role"] == "admin"


# --- password reset -------------------------------------------------------------------------


def test_it_resets_a_password_and_shows_it_once(app, auth, users, db):
    sam = auth.client_for("sam")
    response = auth.client_for("root").post(f"/admin/users/{users['sam']}/reset_password")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    page = response.get_data(as_text=True)
    password = page.split("data-password>", 1)[1].split("<", 1)[0]
    assert len(password) >= 12
    row = user_row(db, "sam")
    assert row["must_change_password"] == 1 and row["session_version"] == 1
    assert sam.get("/dashboard").status_code == 302  # signed out
    fresh = app.test_client()
    assert fresh.post("/login", data={"username": "sam", "password": PASSWORD}).status_code == 401
    assert fresh.post("/login", data={"username": "sam", "password": password}).status_code == 302
    assert fresh.get("/dashboard").location == "/account/password"  # the change comes first
    assert 'data-banner="password"' in fresh.get("/account/password").get_data(as_text=True)
    [entry] = audit_rows(db, "user_password_reset")
    assert password not in (entry["details"] or "") and entry["target_id"] == users["sam"]
    # not kept anywhere for a second look
    assert password not in auth.client_for("root").get("/admin/users").get_data(as_text=True)


def test_it_gives_the_temporary_password_to_json_callers(auth, users):
    response = auth.client_for("root").post(f"/admin/users/{users['sam']}/reset_password", headers=JSON)
    assert response.status_code == 200 and len(response.json["temporary_password"]) >= 12


def test_it_lets_only_root_reset_root(auth, users, db):
    assert auth.client_for("alice").post(f"/admin/users/{users['root']}/reset_password").status_code == 403
    # root resetting root is resetting their own password: the password page is for that
    assert auth.client_for("root").post(f"/admin/users/{users['root']}/reset_password").status_code == 403
    assert audit_rows(db, "user_password_reset") == []


def test_it_lets_root_reset_another_admin(auth, users, db):
    assert auth.client_for("root").post(f"/admin/users/{users['alice']}/reset_password").status_code == 200
    assert user_row(db, "alice")["must_change_password"] == 1
