"""Server-side sessions: one per browser, listed and ended at /account/sessions, by an
admin from the user's page, after the idle timeout or the absolute lifetime (fake
clock), and a fresh one (with a fresh CSRF token) at every login."""

from __future__ import annotations

import hashlib

import pytest

from samosval.domain import sessions as session_domain
from tests.conftest import PASSWORD

HOUR = 3600.0


def browser(app, auth, username="dana", agent="Browser A"):
    """A separate browser signed in as ``username``."""
    client = app.test_client()
    client.environ_base["HTTP_USER_AGENT"] = agent
    assert auth.login(client, username).status_code == 302
    return client


def signed_in(client) -> bool:
    return client.get("/dashboard").status_code == 200


def session_rows(db, user_id):
    return db.execute("SELECT * FROM sessions WHERE user_id = ? ORDER BY id", (user_id,)).fetchall()


def listed_ids(client, path="/account/sessions"):
    response = client.get(path, headers={"Accept": "application/json"})
    assert response.status_code == 200
    return [s["id"] for s in response.get_json()["sessions"]]


# --- one session per browser ---------------------------------------------------------


def test_it_keeps_the_other_browser_signed_in_on_logout(app, auth, users):
    first, second = browser(app, auth), browser(app, auth, agent="Browser B")
    assert first.post("/logout").status_code == 302
    assert not signed_in(first)
    assert signed_in(second)


def test_it_signs_out_every_browser_everywhere(app, auth, users, db):
    first, second = browser(app, auth), browser(app, auth, agent="Browser B")
    response = first.post("/account/sessions/end_all")
    assert response.status_code == 302 and response.location == "/login"
    assert not signed_in(first) and not signed_in(second)
    assert session_rows(db, users["dana"]) == []
    assert db.execute("SELECT COUNT(*) FROM audit_log WHERE action = 'sessions_end_all'").fetchone()[0] == 1


def test_it_stores_only_the_tokens_digest(app, auth, users, db):
    client = browser(app, auth)
    with client.session_transaction() as cookie_session:
        token = cookie_session["_user_id"]
    [row] = session_rows(db, users["dana"])
    assert row["token_hash"] == hashlib.sha256(token.encode()).hexdigest() != token
    assert row["user_agent"] == "Browser A" and row["address"] == "127.0.0.1"


def test_it_truncates_a_long_user_agent(app, auth, users, db):
    browser(app, auth, agent="X" * 5000)
    [row] = session_rows(db, users["dana"])
    assert len(row["user_agent"]) == session_domain.USER_AGENT_MAX


def test_it_keeps_at_most_so_many_sessions_a_person(app, auth, users, db, monkeypatch):
    monkeypatch.setattr(session_domain, "MAX_SESSIONS_PER_USER", 3)
    clients = [browser(app, auth, agent=f"Browser {n}") for n in range(5)]
    assert len(session_rows(db, users["dana"])) == 3
    assert signed_in(clients[-1]) and not signed_in(clients[0])


def test_it_starts_a_new_session_and_csrf_token_at_every_login(app, auth, users):
    """Session fixation: nothing a visitor's cookie carried before the login survives it."""
    client = app.test_client()
    client.get("/login")
    with client.session_transaction() as before:
        before["planted"] = "by an attacker"
        csrf_before = before["csrf_token"]
    auth.login(client, "dana")
    with client.session_transaction() as after:
        first_token = after["_user_id"]
        assert "planted" not in after
        assert after.get("csrf_token") != csrf_before
    client.post("/logout")
    auth.login(client, "dana")
    with client.session_transaction() as again:
        assert again["_user_id"] != first_token


def test_it_refuses_a_cookie_from_before_server_side_sessions(app, users):
    """The old cookie format ("<user id>:<version>") names no session."""
    client = app.test_client()
    with client.session_transaction() as cookie_session:
        cookie_session["_user_id"] = f"{users['dana']}:0"
        cookie_session["_fresh"] = True
    assert not signed_in(client)


# --- the sessions page ------------------------------------------------------------------


def test_it_lists_own_sessions_with_the_current_one_marked(app, auth, users):
    first = browser(app, auth)
    browser(app, auth, agent="Browser B")
    page = first.get("/account/sessions")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Browser A" in html and "Browser B" in html
    assert html.count('data-current="1"') == 1
    assert 'data-action="sign-out-everywhere"' in html
    data = first.get("/account/sessions", headers={"Accept": "application/json"}).get_json()
    assert [s["user_agent"] for s in data["sessions"] if s["current"]] == ["Browser A"]
    assert "token_hash" not in str(data)


def test_it_lists_no_other_users_sessions(app, auth, users):
    browser(app, auth, "sam", agent="Sams browser")
    assert "Sams browser" not in browser(app, auth).get("/account/sessions").get_data(as_text=True)


def test_it_ends_a_chosen_session(app, auth, users, db):
    first, second = browser(app, auth), browser(app, auth, agent="Browser B")
    other = [r["id"] for r in session_rows(db, users["dana"]) if r["user_agent"] == "Browser B"][0]
    response = first.post("/account/sessions/end", data={"session_id": str(other)})
    assert response.status_code == 302 and response.location == "/account/sessions"
    assert signed_in(first) and not signed_in(second)
    assert listed_ids(first) == [r["id"] for r in session_rows(db, users["dana"])]
    audit = db.execute("SELECT * FROM audit_log WHERE action = 'session_end'").fetchone()
    assert audit["user_id"] == users["dana"] and audit["target_id"] == users["dana"]


def test_it_ends_the_current_session_like_a_logout(app, auth, users, db):
    client = browser(app, auth)
    [row] = session_rows(db, users["dana"])
    response = client.post("/account/sessions/end", data={"session_id": str(row["id"])})
    assert response.location == "/login" and not signed_in(client)


@pytest.mark.parametrize("value", ["", "abc", "-1", "0", "1e9", str(2**63), "9" * 40])
def test_it_refuses_a_bad_session_id(app, auth, users, value):
    client = browser(app, auth)
    response = client.post(
        "/account/sessions/end", data={"session_id": value}, headers={"Accept": "application/json"}
    )
    assert response.status_code == 400 and "error" in response.get_json()
    assert signed_in(client)


def test_it_refuses_to_end_another_users_session_as_missing(app, auth, users, db):
    sams = browser(app, auth, "sam")
    [sam_row] = session_rows(db, users["sam"])
    response = browser(app, auth).post(
        "/account/sessions/end",
        data={"session_id": str(sam_row["id"])},
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 404
    assert signed_in(sams)


def test_it_refuses_the_end_buttons_without_csrf(app, auth, users):
    client = browser(app, auth)
    assert client.post("/account/sessions/end_all", csrf=False).status_code == 400
    assert signed_in(client)


# --- an admin, on another user's page ------------------------------------------------------


def test_it_lets_an_admin_see_and_end_a_users_sessions(app, auth, users, db):
    first, second = browser(app, auth), browser(app, auth, agent="Browser B")
    root = auth.client_for("root")
    page = root.get(f"/admin/users/{users['dana']}/sessions")
    assert page.status_code == 200
    assert "Browser A" in page.get_data(as_text=True) and "Browser B" in page.get_data(as_text=True)
    assert f'href="/admin/users/{users["dana"]}/sessions"' in root.get("/admin/users").get_data(as_text=True)
    one = session_rows(db, users["dana"])[0]["id"]
    assert (
        root.post(f"/admin/users/{users['dana']}/sessions/end", data={"session_id": str(one)}).status_code
        == 302
    )
    assert not signed_in(first) and signed_in(second)
    assert root.post(f"/admin/users/{users['dana']}/sessions/end", data={"all": "1"}).status_code == 302
    assert not signed_in(second) and signed_in(root)


@pytest.mark.parametrize("persona", ["oleg", "dana"])
def test_it_refuses_another_users_sessions_to_non_admins(app, auth, users, persona):
    client = auth.client_for(persona)
    assert client.get(f"/admin/users/{users['sam']}/sessions").status_code == 403
    assert client.post(f"/admin/users/{users['sam']}/sessions/end", data={"all": "1"}).status_code == 403


def test_it_answers_404_for_a_missing_user(auth, users):
    assert auth.client_for("root").get("/admin/users/987654/sessions").status_code == 404


# --- timeouts on the engine's (fake) clock --------------------------------------------------


@pytest.fixture
def timed(app, engine, clock, users):
    """Sessions on the fake clock, with a 30-minute idle timeout and a 1-day lifetime."""
    app.config.update(SESSION_IDLE_MINUTES=30, SESSION_MAX_DAYS=1)
    return clock


def test_it_ends_a_session_left_idle(app, auth, timed, db, users):
    client = browser(app, auth)
    timed.advance(29 * 60)
    assert signed_in(client)  # used: the idle clock starts again
    timed.advance(29 * 60)
    assert signed_in(client)
    timed.advance(31 * 60)
    assert not signed_in(client)
    assert session_rows(db, users["dana"]) == []  # and the dead row is gone


def test_it_ends_a_session_at_its_absolute_lifetime_however_busy(app, auth, timed):
    client = browser(app, auth)
    for _ in range(int(24 * 60 / 20) - 1):
        timed.advance(20 * 60)
        assert signed_in(client)
    timed.advance(20 * 60 + 1)
    assert not signed_in(client)


def test_it_lists_only_live_sessions(app, auth, timed, users):
    old = browser(app, auth, agent="Old")
    timed.advance(20 * 60)
    new = browser(app, auth, agent="New")
    timed.advance(15 * 60)  # Old idle for 35 minutes now
    html = new.get("/account/sessions").get_data(as_text=True)
    assert "New" in html and "Old" not in html
    assert not signed_in(old)


def test_it_forgets_sessions_that_can_no_longer_be_alive_at_the_next_login(app, auth, timed, db, users):
    browser(app, auth, "sam")  # and then the browser is closed for good
    browser(app, auth, "dana")
    timed.advance(31 * 60)
    browser(app, auth, "carl")
    assert [row["user_id"] for row in db.execute("SELECT user_id FROM sessions")] == [users["carl"]]


def test_it_writes_last_seen_at_most_once_a_minute(app, auth, timed, db, users):
    client = browser(app, auth)
    [row] = session_rows(db, users["dana"])
    for _ in range(5):
        timed.advance(10)
        client.get("/dashboard")
    assert session_rows(db, users["dana"])[0]["last_seen_at"] == row["last_seen_at"]
    timed.advance(15)
    client.get("/dashboard")
    assert session_rows(db, users["dana"])[0]["last_seen_at"] > row["last_seen_at"]


def test_it_is_alive_only_within_both_limits():
    session = {
        "user_id": 1,
        "session_version": 2,
        "created_at": "2027-01-01T00:00:00Z",
        "last_seen_at": "2027-01-01T10:00:00Z",
    }
    user = {"id": 1, "session_version": 2, "is_active": 1}
    start = 1798761600.0  # 2027-01-01T00:00:00Z
    alive = lambda now, **kw: session_domain.is_alive(  # noqa: E731
        {**session, **kw.get("s", {})},
        {**user, **kw.get("u", {})},
        now=now,
        idle_seconds=HOUR,
        max_seconds=12 * HOUR,
    )
    assert alive(start + 10.5 * HOUR)
    assert not alive(start + 11.01 * HOUR)  # idle
    assert not alive(start + 10.5 * HOUR, s={"created_at": "2026-12-31T22:00:00Z"})  # too old
    assert not alive(start + 10.5 * HOUR, u={"session_version": 3})  # ended everywhere
    assert not alive(start + 10.5 * HOUR, u={"is_active": 0})  # blocked
    assert not alive(start + 10.5 * HOUR, u={"id": 2})


# --- everything that ends every session still does ------------------------------------------


def test_it_ends_every_session_on_a_password_change_but_keeps_this_browser(app, auth, users):
    first, second = browser(app, auth), browser(app, auth, agent="Browser B")
    response = first.post(
        "/account/password",
        data={
            "current_password": PASSWORD,
            "new_password": "brand-new-pass",
            "confirm_password": "brand-new-pass",
        },
    )
    assert response.status_code == 302
    assert signed_in(first) and not signed_in(second)


@pytest.mark.parametrize(
    "action, data", [("block", {}), ("role", {"role": "operator"}), ("reset_password", {})]
)
def test_it_ends_every_session_on_an_admin_action(app, auth, users, action, data):
    first, second = browser(app, auth), browser(app, auth, agent="Browser B")
    auth.client_for("root").post(f"/admin/users/{users['dana']}/{action}", data=data)
    assert not signed_in(first) and not signed_in(second)


def test_it_adds_the_session_tables_to_a_version_3_database(tmp_path):
    from samosval import migrations
    from samosval.db import connect

    path = str(tmp_path / "v3.sqlite3")
    db = connect(path)
    try:
        migrations.upgrade(db)
        db.execute("DROP TABLE sessions")
        db.execute("DROP TABLE login_throttle")
        db.execute("PRAGMA user_version = 3")
        assert migrations.upgrade(db)[0] == 4
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        indexes = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"sessions", "login_throttle"} <= tables
        assert {"idx_sessions_user", "idx_login_throttle_age"} <= indexes
    finally:
        db.close()


def test_it_ends_an_open_live_log_when_its_session_expires(app, auth, timed, users, sample):
    """An expiry is noticed at the stream's next access check (its heartbeat)."""
    from samosval.sse import parse_events

    app.config["SSE_HEARTBEAT_SECONDS"] = 0.2
    client = browser(app, auth)
    stream = client.get(f"/api/deployments/{sample['deployment_id']}/logs/stream", buffered=False)
    try:
        body = iter(stream.response)
        next(body), next(body)  # retry, status
        timed.advance(29 * 60)
        assert next(body).startswith(b":")  # a heartbeat: still allowed
        timed.advance(31 * 60)  # no request for 60 minutes: the session is over
        events = parse_events(b"".join(body).decode())
        assert events[-1].get("event") == "end" and '"logged_out"' in events[-1]["data"]
    finally:
        stream.close()
