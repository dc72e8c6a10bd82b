"""Password policy (NIST SP 800-63B in spirit), the forced change after an admin
reset, and root's default password: tolerated on a loopback ``python app.py``,
changed at first login anywhere else and under the production command."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

from samosval.domain import password_policy
from samosval.security import is_loopback_host
from tests.conftest import PASSWORD

ROOT = Path(__file__).resolve().parents[1]


# --- the policy ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "password, username, rule",
    [
        ("", "nina", password_policy.TOO_SHORT),
        ("seven77", "nina", password_policy.TOO_SHORT),
        ("x" * 257, "nina", password_policy.TOO_LONG),
        ("password123", "nina", password_policy.TOO_COMMON),
        ("Qwerty123", "nina", password_policy.TOO_COMMON),  # case does not help
        ("iloveyou", "nina", password_policy.TOO_COMMON),
        ("nina.developer", "nina.developer", password_policy.SAME_AS_USERNAME),
        ("Nina.Developer", "nina.developer", password_policy.SAME_AS_USERNAME),
    ],
)
def test_it_refuses_with_the_rule_that_failed(password, username, rule):
    assert password_policy.check(password, username) == rule


@pytest.mark.parametrize(
    "password",
    [
        "kettle-lamp-42",
        "a" * 7 + "b",
        "x" * 64,
        "y" * 256,
        "correct horse battery staple",
        "пароль-на-русском",
    ],
)
def test_it_accepts_long_or_uncommon_passwords(password):
    assert password_policy.check(password, "nina") is None


def test_it_uses_a_list_of_at_least_ten_thousand_common_passwords():
    common = password_policy.common_passwords()
    assert len(common) >= 10_000
    assert {"123456", "password", "qwerty", "dragon"} <= common


def test_it_says_which_rule_failed_in_russian(auth, users):
    root = auth.client_for("root")
    response = root.post(
        "/admin/users/create", data={"username": "nina", "password": "password1", "role": "developer"}
    )
    assert response.status_code == 400
    assert "один из самых распространённых" in response.get_data(as_text=True)
    response = root.post(
        "/admin/users/create", data={"username": "nina", "password": "short", "role": "developer"}
    )
    assert "не меньше 8 символов" in response.get_data(as_text=True)


def test_it_applies_the_policy_to_a_password_change(auth, users):
    client = auth.client_for("dana")
    for new, words in (("dana", "не меньше 8 символов"), ("12345678", "самых распространённых")):
        response = client.post(
            "/account/password",
            data={"current_password": PASSWORD, "new_password": new, "confirm_password": new},
        )
        assert response.status_code == 400 and words in response.get_data(as_text=True)
    response = client.post(
        "/account/password",
        headers={"Accept": "application/json"},
        data={"current_password": PASSWORD, "new_password": "x" * 64, "confirm_password": "x" * 64},
    )
    assert response.status_code == 302


def test_it_refuses_the_username_as_password_at_creation(auth, users, db):
    response = auth.client_for("root").post(
        "/admin/users/create",
        data={"username": "longusername", "password": "LongUserName", "role": "developer"},
    )
    assert response.status_code == 400 and "не должен совпадать с логином" in response.get_data(as_text=True)


# --- the forced change after an admin reset ------------------------------------------------


def reset(auth, users, username="sam") -> str:
    page = (
        auth.client_for("root").post(f"/admin/users/{users[username]}/reset_password").get_data(as_text=True)
    )
    return page.split("data-password>", 1)[1].split("<", 1)[0]


@pytest.fixture
def after_reset(app, auth, users):
    password = reset(auth, users)
    client = app.test_client()
    assert auth.login(client, "sam", password).status_code == 302
    client.temporary_password = password
    return client


@pytest.mark.parametrize(
    "path", ["/dashboard", "/requests", "/requests/new", "/account/sessions", "/deployments", "/nonexistent"]
)
def test_it_answers_only_the_change_form_after_a_reset(after_reset, path):
    response = after_reset.get(path)
    assert response.status_code == 302 and response.location == "/account/password"


def test_it_explains_the_refusal_to_json_clients(after_reset):
    response = after_reset.get("/api/users/search?q=", headers={"Accept": "application/json"})
    assert response.status_code == 403
    body = response.get_json()
    error = body["error"]  # under /api: {"error": {"code", "message", ...}}
    assert "/account/password" in error["message"] and error["change_password_url"] == "/account/password"


def test_it_refuses_actions_too_until_the_change(after_reset, db):
    response = after_reset.post("/requests/new", data={"image_name": "x"})
    assert response.status_code == 302 and response.location == "/account/password"
    assert db.execute("SELECT COUNT(*) FROM image_requests").fetchone()[0] == 0


def test_it_still_serves_the_form_static_files_and_logout(after_reset):
    page = after_reset.get("/account/password")
    assert page.status_code == 200 and 'data-banner="password"' in page.get_data(as_text=True)
    static = after_reset.get("/static/css/theme.css")
    assert static.status_code == 200
    static.close()
    assert after_reset.post("/logout").location == "/login"


def test_it_lets_everything_answer_after_the_change(after_reset):
    new = "sams-own-secret-1"
    response = after_reset.post(
        "/account/password",
        data={
            "current_password": after_reset.temporary_password,
            "new_password": new,
            "confirm_password": new,
        },
    )
    assert response.status_code == 302
    page = after_reset.get("/dashboard")
    assert page.status_code == 200 and 'data-banner="password"' not in page.get_data(as_text=True)


def test_it_lets_a_user_log_in_with_the_password_the_admin_typed(app, auth, users):
    """The spec's flow: the admin creates dev1 with a password, dev1 logs in and works."""
    root = auth.client_for("root")
    assert 'name="must_change" value="1" checked' not in root.get("/admin/users").get_data(as_text=True)
    root.post(
        "/admin/users/create", data={"username": "dev1", "password": "dev1-secret-pass", "role": "developer"}
    )
    client = app.test_client()
    assert auth.login(client, "dev1", "dev1-secret-pass").status_code == 302
    page = client.get("/dashboard")
    assert page.status_code == 200 and 'data-banner="password"' not in page.get_data(as_text=True)


# --- root:root -----------------------------------------------------------------------------------


def test_it_keeps_root_root_with_a_banner_on_a_loopback_dev_server(app, auth, users):
    assert app.config["FORCE_ROOT_PASSWORD_CHANGE"] is False
    page = auth.client_for("root").get("/dashboard")
    assert page.status_code == 200 and 'data-banner="password"' in page.get_data(as_text=True)


def test_it_makes_root_change_root_when_forced(app, users):
    app.config["FORCE_ROOT_PASSWORD_CHANGE"] = True
    client = app.test_client()
    assert client.post("/login", data={"username": "root", "password": "root"}).status_code == 302
    assert client.get("/admin/users").location == "/account/password"
    response = client.post(
        "/account/password",
        data={
            "current_password": "root",
            "new_password": "root-for-real-now",
            "confirm_password": "root-for-real-now",
        },
    )
    assert response.status_code == 302
    assert client.get("/admin/users").status_code == 200


def test_it_never_forces_an_admin_reset_by_the_flag_alone(app, auth, users):
    """The flag is about root's default password; other users are not touched."""
    app.config["FORCE_ROOT_PASSWORD_CHANGE"] = True
    assert auth.client_for("alice").get("/dashboard").status_code == 200


@pytest.mark.parametrize(
    "host, loopback",
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("example.org", False),
        ("", False),
    ],
)
def test_it_knows_which_hosts_are_loopback(host, loopback):
    assert is_loopback_host(host) is loopback


def test_it_forces_the_change_under_the_production_command(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMOSVAL_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("SAMOSVAL_SIMULATOR_AUTOSTART", "0")
    monkeypatch.setenv("SAMOSVAL_SECRET_KEY", "wsgi-test")
    monkeypatch.delenv("SAMOSVAL_DATABASE", raising=False)
    app = runpy.run_path(str(ROOT / "wsgi.py"))["app"]
    assert app.config["FORCE_ROOT_PASSWORD_CHANGE"] is True
