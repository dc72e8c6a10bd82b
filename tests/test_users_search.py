"""GET /api/users/search: login suggestions for the datalists."""

from __future__ import annotations

import pytest


def search(client, query: str):
    return client.get("/api/users/search" + query)


def test_it_returns_active_logins_by_prefix(auth):
    response = search(auth.client_for("carl"), "?q=c")
    assert response.status_code == 200
    assert response.get_json() == ["carl", "colin"]
    assert response.headers["Cache-Control"] == "no-store"


def test_it_filters_by_role(auth):
    client = auth.client_for("carl")
    assert search(client, "?q=&role=developer").get_json() == [
        "ann",
        "carl",
        "colin",
        "dana",
        "joanna",
        "sam",
    ]
    assert search(client, "?q=o&role=developer").get_json() == []
    assert search(auth.client_for("oleg"), "?q=o&role=operator").get_json() == ["oleg"]
    assert search(client, "?role=wizard").status_code == 400


@pytest.mark.parametrize("role", ["admin", "operator"])
def test_it_lets_a_developer_look_up_developers_only(auth, role):
    """The request form needs developers (owner, collaborators): nothing lists admins."""
    response = search(auth.client_for("carl"), f"?q=&role={role}")
    assert response.status_code == 403 and "error" in response.get_json()
    assert search(auth.client_for("carl"), "?q=").get_json() == [
        "ann",
        "carl",
        "colin",
        "dana",
        "joanna",
        "sam",
    ]  # no root, alice or oleg


def test_it_lets_staff_look_up_every_role(auth):
    assert search(auth.client_for("oleg"), "?q=&role=admin").get_json() == ["alice", "root"]
    assert "oleg" in search(auth.client_for("alice"), "?q=").get_json()


def test_it_never_returns_blocked_users(auth):
    assert search(auth.client_for("carl"), "?q=b").get_json() == []


def test_it_is_case_insensitive_and_literal(auth):
    client = auth.client_for("carl")
    assert search(client, "?q=JO").get_json() == ["joanna"]
    assert search(client, "?q=%25").get_json() == []
    assert search(client, "?q=_").get_json() == []


def test_it_returns_at_most_20(auth, db):
    for number in range(25):
        db.execute(
            "INSERT INTO users (username, password_hash, role, is_active, created_at) "
            "VALUES (?, 'x', 'developer', 1, '2026-01-01T00:00:00Z')",
            (f"dev{number:02d}",),
        )
    logins = search(auth.client_for("carl"), "?q=dev").get_json()
    assert len(logins) == 20 and logins == sorted(logins)


def test_it_answers_401_json_to_anonymous_callers(client, users):
    response = search(client, "?q=a")
    assert response.status_code == 401
    assert "error" in response.get_json()
