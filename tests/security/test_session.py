"""Sessions: cookie flags, a stolen cookie that stops working on logout, block, role
change and password reset, and no user enumeration through login answers or timing."""

from __future__ import annotations

import json
import re
import statistics
import time

import pytest
from werkzeug.security import generate_password_hash

import samosval.domain.users as user_domain
from samosval.security import limiter
from samosval.sse import parse_events
from tests.conftest import PASSWORD
from tests.security.conftest import build_app


def session_cookie(response) -> str:
    cookies = [value for value in response.headers.getlist("Set-Cookie") if value.startswith("session=")]
    assert cookies, "no session cookie was set"
    return cookies[-1]


def replay(app, cookie_value: str):
    """A new browser holding a copy of a cookie (what a thief would do)."""
    thief = app.test_client()
    thief.set_cookie("session", cookie_value)
    return thief


def stolen_cookie(client) -> str:
    return client.get_cookie("session").value


def assert_signed_out(app, cookie_value: str) -> None:
    thief = replay(app, cookie_value)
    page = thief.get("/dashboard")
    assert page.status_code == 302 and page.location.startswith("/login"), "old cookie still opens pages"
    assert thief.get("/api/users/search?q=d").status_code == 401, "old cookie still opens the API"


# --- cookie flags ------------------------------------------------------------------------


def test_it_sets_http_only_same_site_lax_cookies(client, users):
    response = client.post("/login", data={"username": "dana", "password": PASSWORD})
    assert response.status_code == 302
    cookie = session_cookie(response)
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Path=/" in cookie
    # No long-lived "remember me" cookie that would outlive the session rules.
    assert not any(v.startswith("remember_token=") for v in response.headers.getlist("Set-Cookie"))


def test_it_marks_cookies_secure_when_configured(tmp_path):
    (tmp_path / "secure").mkdir()
    app = build_app(tmp_path / "secure")
    app.config["SESSION_COOKIE_SECURE"] = True
    limiter.reset()
    response = app.test_client().post(
        "/login", data={"username": "root", "password": "root"}, base_url="https://localhost"
    )
    assert "Secure" in session_cookie(response)


def test_it_keeps_the_login_cookie_usable_for_its_owner(auth, app):
    cookie = stolen_cookie(auth.client_for("dana"))
    assert replay(app, cookie).get("/dashboard").status_code == 200  # the replay itself works


# --- a copied cookie dies with the session ------------------------------------------------


def test_it_refuses_the_old_cookie_after_logout(auth, app, db):
    client = auth.client_for("dana")
    cookie = stolen_cookie(client)
    response = client.post("/logout")
    assert response.status_code == 302 and response.location.startswith("/login")
    assert_signed_out(app, cookie)
    assert db.execute("SELECT COUNT(*) FROM audit_log WHERE action = 'logout'").fetchone()[0] == 1


def test_it_can_log_in_again_after_logout(auth, app, client):
    auth.client_for("dana").post("/logout")
    response = auth.login(client, "dana")
    assert response.status_code == 302
    assert client.get("/dashboard").status_code == 200


@pytest.mark.parametrize(
    "action, data",
    [
        ("block", {}),
        ("role", {"role": "operator"}),
        ("reset_password", {}),
    ],
)
def test_it_refuses_the_old_cookie_after_an_admin_action(auth, app, users, action, data):
    cookie = stolen_cookie(auth.client_for("dana"))
    response = auth.client_for("root").post(f"/admin/users/{users['dana']}/{action}", data=data)
    assert response.status_code in (200, 302)
    assert_signed_out(app, cookie)


def test_it_keeps_a_blocked_users_cookie_dead_after_unblocking(auth, app, users):
    cookie = stolen_cookie(auth.client_for("dana"))
    root = auth.client_for("root")
    root.post(f"/admin/users/{users['dana']}/block")
    root.post(f"/admin/users/{users['dana']}/unblock")
    assert_signed_out(app, cookie)


def test_it_ends_an_open_log_stream_when_the_user_is_blocked(auth, users, sample):
    stream = auth.client_for("dana").get(
        f"/api/deployments/{sample['deployment_id']}/logs/stream", buffered=False
    )
    try:
        assert stream.status_code == 200
        body = iter(stream.response)
        first = [next(body) for _ in range(2)]  # retry, status
        assert any(e.get("event") == "status" for e in parse_events(b"".join(first).decode()))
        auth.client_for("root").post(f"/admin/users/{users['dana']}/block")
        rest = parse_events(b"".join(body).decode())  # ends at once, not at a line or heartbeat
        assert all("data" not in e for e in rest if e.get("event") != "end")
        assert [json.loads(e["data"]) for e in rest if e.get("event") == "end"] == [{"reason": "blocked"}]
    finally:
        stream.close()


def test_it_ends_the_open_log_streams_of_the_session_that_logs_out(auth, app, sample):
    """A live log belongs to a browser's session: logging out there ends it at once
    (not at the next heartbeat)."""
    dana = auth.client_for("dana")
    stream = dana.get(f"/api/deployments/{sample['deployment_id']}/logs/stream", buffered=False)
    try:
        body = iter(stream.response)
        next(body), next(body)  # retry, status
        dana.post("/logout")
        events = parse_events(b"".join(body).decode())
        assert all("data" not in e for e in events if e.get("event") != "end")
        assert [json.loads(e["data"]) for e in events if e.get("event") == "end"] == [
            {"reason": "logged_out"}
        ]
    finally:
        stream.close()
    assert app.extensions["samosval"].state.open_stream_count() == 0


def test_it_keeps_the_streams_of_another_browser_when_one_logs_out(auth, app, sample, engine, clock):
    """Logging out in one browser leaves the same user's other browser, and its live
    log, alone."""
    stream = auth.client_for("dana").get(
        f"/api/deployments/{sample['deployment_id']}/logs/stream", buffered=False
    )
    try:
        body = iter(stream.response)
        next(body), next(body)  # retry, status
        other_browser = app.test_client()
        auth.login(other_browser, "dana")
        other_browser.post("/logout")
        app.extensions["samosval"].state.runtime(sample["deployment_id"]).logs.append(
            clock.now, "INFO", "still streaming"
        )
        line = next(body).decode()
        assert "still streaming" in line
    finally:
        stream.close()


# --- no user enumeration ---------------------------------------------------------------------


def _login_page_without_noise(response, username: str) -> str:
    text = response.get_data(as_text=True)
    text = re.sub(r'name="csrf[-_]token" (content|value)="[^"]*"', "CSRF", text)
    return text.replace(f'value="{username}"', 'value="USERNAME"')


def test_it_answers_unknown_wrong_and_blocked_logins_alike(client, users):
    answers = {
        "unknown": ("nobody-here", "password123"),
        "wrong password": ("dana", "not-the-password"),
        "blocked": ("bob", PASSWORD),
    }
    responses = {
        case: client.post("/login", data={"username": u, "password": p}) for case, (u, p) in answers.items()
    }
    assert {r.status_code for r in responses.values()} == {401}
    bodies = {case: _login_page_without_noise(r, answers[case][0]) for case, r in responses.items()}
    assert bodies["unknown"] == bodies["wrong password"] == bodies["blocked"]
    assert "data-login-error" in bodies["unknown"]
    assert client.get("/dashboard").status_code == 302


def _failed_login_seconds(client, username: str, password: str) -> float:
    start = time.perf_counter()
    response = client.post("/login", data={"username": username, "password": password})
    elapsed = time.perf_counter() - start
    assert response.status_code == 401
    return elapsed


def test_it_takes_as_long_for_an_unknown_user_as_for_a_wrong_password(app, client, db, users, monkeypatch):
    """With production-strength hashes (the suite normally uses cheap ones), a
    failed login costs the same whether or not the user exists."""
    app.config["LOGIN_RATE_LIMIT_IP"] = "1000 per minute"
    app.config["LOGIN_RATE_LIMIT_USER"] = "1000 per minute"
    real_hash = generate_password_hash(PASSWORD)  # werkzeug's default method, as in production
    monkeypatch.setattr(user_domain, "_DUMMY_HASH", generate_password_hash("samosval-dummy-password"))
    db.execute("UPDATE users SET password_hash = ? WHERE username = 'dana'", (real_hash,))
    client.post("/login", data={"username": "warm-up", "password": "x"})  # first-request costs
    unknown_times, wrong_times = [], []
    for _ in range(10):  # interleaved, so a busy moment of the machine hits both alike
        unknown_times.append(_failed_login_seconds(client, "no-such-user", "wrong-password"))
        wrong_times.append(_failed_login_seconds(client, "dana", "wrong-password"))
    unknown, wrong = statistics.median(unknown_times), statistics.median(wrong_times)
    ratio = unknown / wrong
    print(
        f"\nlogin timing: unknown {unknown * 1000:.1f} ms, wrong password {wrong * 1000:.1f} ms, "
        f"ratio {ratio:.2f}"
    )
    assert 0.5 <= ratio <= 2.0, (unknown, wrong)
