"""Login limits count failures only, per address and per username *from one address*;
a guesser spread over many addresses meets growing per-username delays (fake clock,
no sleeping), never a lock-out. /account/password has the same limits."""

from __future__ import annotations

import pytest

from samosval.domain import login_throttle
from tests.conftest import PASSWORD


def from_address(app, address: str):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def login(client, username="dana", password=PASSWORD):
    return client.post("/login", data={"username": username, "password": password})


def test_it_lets_six_correct_logins_in_a_minute_through(app, users):
    client = from_address(app, "10.0.0.1")
    for _ in range(6):
        assert login(client).status_code == 302
        assert client.post("/logout").status_code == 302


def test_it_stops_one_address_after_five_wrong_passwords(app, users):
    client = from_address(app, "10.0.0.1")
    for _ in range(5):
        assert login(client, password="wrong-password").status_code == 401
    assert login(client).status_code == 429


def test_it_lets_the_owner_in_from_another_address(app, users):
    attacker = from_address(app, "203.0.113.7")
    for _ in range(8):
        login(attacker, "root", "not-the-password")
    assert login(attacker, "root", "root").status_code == 429
    assert login(from_address(app, "192.0.2.10"), "root", "root").status_code == 302


def test_it_does_not_count_successes_against_the_address(app, users):
    client = from_address(app, "10.0.0.1")
    for _ in range(4):
        login(client, password="wrong-password")
    for _ in range(3):
        assert login(client).status_code == 302
        client.post("/logout")
    assert login(client, password="wrong-password").status_code == 401  # the 5th failure
    assert login(client).status_code == 429


@pytest.fixture
def guessing(app, engine, clock, users):
    """Guesses for ``dana`` from a new address each time (no per-address limit applies)."""
    counter = iter(range(1, 10_000))

    def guess(password="wrong-password"):
        return login(from_address(app, f"198.51.100.{next(counter) % 250}"), password=password)

    return guess


def test_it_makes_a_spread_out_guesser_wait_longer_and_longer(app, guessing, clock, db):
    for _ in range(login_throttle.FREE_FAILURES):
        assert guessing().status_code == 401
    waits = []
    for _ in range(9):
        assert guessing().status_code == 401
        refused = guessing()
        assert refused.status_code == 429
        waits.append(int(refused.headers["Retry-After"]))
        clock.advance(waits[-1])
    assert waits == [1, 2, 4, 8, 16, 32, 64, 128, 180]
    # Refused attempts are not even checked, and cost the guesser nothing more.
    assert db.execute("SELECT failures FROM login_throttle WHERE username = 'dana'").fetchone()[0] == 19


def test_it_never_locks_the_owner_out(app, guessing, clock):
    for _ in range(login_throttle.FREE_FAILURES + 12):
        guessing()
        clock.advance(login_throttle.MAX_DELAY_SECONDS)
    guessing()  # the attack goes on
    assert guessing(PASSWORD).status_code == 429  # the owner waits too, at most the cap...
    clock.advance(login_throttle.MAX_DELAY_SECONDS)
    assert guessing(PASSWORD).status_code == 302  # ...and is in


def test_it_says_how_long_to_wait(app, guessing, clock):
    for _ in range(login_throttle.FREE_FAILURES):
        guessing()
    for wait in (1, 2):
        guessing()
        clock.advance(wait)
    guessing()  # the 13th failure: 4 s
    response = guessing()
    assert response.status_code == 429 and response.headers["Retry-After"] == "4"
    assert "4" in response.get_data(as_text=True) and 'id="password"' in response.get_data(as_text=True)


def test_it_forgets_failures_after_a_quiet_hour(app, guessing, clock):
    for _ in range(login_throttle.FREE_FAILURES + 1):
        guessing()
    clock.advance(login_throttle.FORGET_AFTER_SECONDS + 1)
    for _ in range(login_throttle.FREE_FAILURES):
        assert guessing().status_code == 401


def test_it_allows_a_few_dozen_guesses_an_hour_at_most():
    assert login_throttle.guesses_per_hour() <= 40
    assert login_throttle.delay_after(10_000) == login_throttle.MAX_DELAY_SECONDS


def test_it_throttles_unknown_usernames_alike_and_keeps_the_table_small(app, engine, clock, db, users):
    for number in range(30):
        login(from_address(app, f"198.51.100.{number}"), f"ghost{number}", "whatever1")
    assert db.execute("SELECT COUNT(*) FROM login_throttle").fetchone()[0] == 30
    clock.advance(login_throttle.FORGET_AFTER_SECONDS + 1)
    login(from_address(app, "198.51.100.99"), "ghost-late", "whatever1")
    assert db.execute("SELECT username FROM login_throttle").fetchall()[0][0] == "ghost-late"


# --- /account/password --------------------------------------------------------------------


def change(client, current="wrong-password", new="brand-new-pass"):
    return client.post(
        "/account/password", data={"current_password": current, "new_password": new, "confirm_password": new}
    )


def test_it_limits_and_audits_wrong_current_passwords(app, auth, users, db):
    client = auth.client_for("dana")
    for _ in range(5):
        assert change(client).status_code == 400
    assert change(client, current=PASSWORD).status_code == 429
    failed = db.execute(
        "SELECT user_id, target_id FROM audit_log WHERE action = 'password_change_failed'"
    ).fetchall()
    assert [tuple(row) for row in failed] == [(users["dana"], users["dana"])] * 5


def test_it_counts_only_wrong_current_passwords(app, auth, users):
    client = auth.client_for("dana")
    for _ in range(6):  # a right current password with a bad new one is no guess
        assert change(client, current=PASSWORD, new="short").status_code == 400
    assert change(client, current=PASSWORD).status_code == 302


def test_it_shares_the_username_delay_with_the_login(app, auth, engine, clock, users):
    client = auth.client_for("dana")
    for number in range(login_throttle.FREE_FAILURES + 1):
        login(from_address(app, f"198.51.100.{number}"), password="wrong-password")
    response = change(client, current=PASSWORD)
    assert response.status_code == 429 and response.headers["Retry-After"] == "1"
