"""Login, logout, blocked users, rate limits, open redirects, own password."""

from __future__ import annotations

import pytest

from tests.conftest import PASSWORD


def audit_actions(db, action):
    return db.execute("SELECT * FROM audit_log WHERE action = ? ORDER BY id", (action,)).fetchall()


def test_it_redirects_anonymous_pages_to_login(client):
    response = client.get("/dashboard")
    assert response.status_code == 302
    assert response.location.startswith("/login?next=")


@pytest.mark.parametrize(
    "url",
    [
        "/api/users/search?q=da",
        "/api/builds/1/log",
        "/api/deployments/1/metrics",
        "/api/deployments/1/logs/stream",
    ],
)
def test_it_answers_anonymous_api_calls_with_401_json(app, client, url):
    with app.test_request_context(url):  # a real route, so a 404 cannot pass for a refusal
        from flask import request

        assert request.url_rule is not None
    response = client.get(url)
    assert response.status_code == 401
    assert response.is_json and response.get_json()["error"]


def test_it_logs_in_root_with_the_spec_default(client, db):
    response = client.post("/login", data={"username": "root", "password": "root"})
    assert response.status_code == 302 and response.location == "/dashboard"
    page = client.get("/dashboard")
    assert page.status_code == 200
    assert "Панель" in page.get_data(as_text=True)
    rows = audit_actions(db, "login")
    assert len(rows) == 1 and rows[0]["ip"] == "127.0.0.1"


def test_it_refuses_a_wrong_password_and_audits_it(client, users, db):
    response = client.post("/login", data={"username": "dana", "password": "nope-nope"})
    assert response.status_code == 401
    assert "Неверный логин или пароль" in response.get_data(as_text=True)
    failed = audit_actions(db, "login_failed")
    assert len(failed) == 1 and failed[0]["ip"] == "127.0.0.1"
    assert "nope-nope" not in (failed[0]["details"] or "")


def test_it_gives_the_same_message_for_unknown_users(client, users):
    unknown = client.post("/login", data={"username": "ghost", "password": "whatever1"})
    wrong = client.post("/login", data={"username": "dana", "password": "whatever1"})
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.get_data(as_text=True).count("Неверный логин") == 1
    assert wrong.get_data(as_text=True).count("Неверный логин") == 1


def test_it_refuses_a_blocked_user(client, users):
    response = client.post("/login", data={"username": "bob", "password": PASSWORD})
    assert response.status_code == 401
    assert client.get("/dashboard").status_code == 302


def test_it_logs_out_a_user_blocked_while_logged_in(auth, db):
    client = auth.client_for("dana")
    assert client.get("/dashboard").status_code == 200
    db.execute("UPDATE users SET is_active = 0 WHERE username = 'dana'")
    response = client.get("/dashboard")
    assert response.status_code == 302 and response.location.startswith("/login")


def test_it_honours_a_local_next(client, users):
    response = client.post("/login?next=/requests", data={"username": "dana", "password": PASSWORD})
    assert response.location == "/requests"


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
        "javascript:alert(1)",
        "http:/evil.example",
    ],
)
def test_it_refuses_an_open_redirect(client, users, target):
    response = client.post(
        "/login", query_string={"next": target}, data={"username": "dana", "password": PASSWORD}
    )
    assert response.status_code == 302
    assert response.location == "/dashboard"


def test_it_logs_out_only_by_post(auth):
    client = auth.client_for("dana")
    assert client.get("/logout").status_code == 405
    response = client.post("/logout")
    assert response.status_code == 302
    assert client.get("/dashboard").status_code == 302


def test_it_rate_limits_logins_per_username(client, users):
    for _ in range(5):
        client.post("/login", data={"username": "dana", "password": "wrong-password"})
    response = client.post("/login", data={"username": "dana", "password": PASSWORD})
    assert response.status_code == 429
    assert "Слишком много попыток" in response.get_data(as_text=True)


def test_it_rate_limits_logins_per_ip(client, users):
    for i in range(20):
        client.post("/login", data={"username": f"nobody{i}", "password": "wrong-password"})
    response = client.post("/login", data={"username": "sam", "password": PASSWORD})
    assert response.status_code == 429


def test_it_refuses_a_post_without_csrf_token(client, users):
    response = client.post("/login", data={"username": "dana", "password": PASSWORD}, csrf=False)
    assert response.status_code == 400
    assert "токен безопасности" in response.get_data(as_text=True)


def test_it_changes_the_own_password_and_ends_other_sessions(auth, app):
    first = auth.client_for("dana")
    second = app.test_client()
    auth.login(second, "dana")
    response = first.post(
        "/account/password",
        data={
            "current_password": PASSWORD,
            "new_password": "brand-new-pass",
            "confirm_password": "brand-new-pass",
        },
    )
    assert response.status_code == 302
    assert first.get("/dashboard").status_code == 200  # the changing session stays in
    assert second.get("/dashboard").status_code == 302  # the other one is signed out
    fresh = app.test_client()
    assert auth.login(fresh, "dana", "brand-new-pass").status_code == 302


@pytest.mark.parametrize(
    "form, field",
    [
        (
            {
                "current_password": "wrong",
                "new_password": "brand-new-pass",
                "confirm_password": "brand-new-pass",
            },
            "current_password",
        ),
        (
            {"current_password": PASSWORD, "new_password": "short", "confirm_password": "short"},
            "new_password",
        ),
        (
            {
                "current_password": PASSWORD,
                "new_password": "brand-new-pass",
                "confirm_password": "other-pass-x",
            },
            "confirm_password",
        ),
    ],
)
def test_it_explains_a_refused_password_change(auth, form, field):
    client = auth.client_for("dana")
    response = client.post("/account/password", data=form)
    assert response.status_code == 400
    assert f'data-error-for="{field}"' in response.get_data(as_text=True)


def test_it_shows_the_default_password_banner_until_root_changes_it(auth):
    root = auth.client_for("root")
    assert 'data-banner="password"' in root.get("/dashboard").get_data(as_text=True)
    root.post(
        "/account/password",
        data={"current_password": "root", "new_password": "a-better-one", "confirm_password": "a-better-one"},
    )
    assert 'data-banner="password"' not in root.get("/dashboard").get_data(as_text=True)


def test_it_shows_no_root_banner_to_another_admin(auth):
    """alice cannot change root's password: a banner about it would only nag."""
    assert 'data-banner="password"' not in auth.client_for("alice").get("/dashboard").get_data(as_text=True)


def test_it_never_shows_the_banner_to_developers(auth):
    assert 'data-banner="password"' not in auth.client_for("dana").get("/dashboard").get_data(as_text=True)
