"""Failed bearer authentications are limited per address (a 429 in the /api error
shape) and their audit rows are bounded; a valid token from a limited address still
works, and realistic failures (a few a minute) are all audited."""

from __future__ import annotations

import pytest

from samosval.domain import access_tokens


def from_address(app, address: str):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def refused_rows(db) -> int:
    return db.execute("SELECT COUNT(*) FROM audit_log WHERE action = 'api_token_refused'").fetchone()[0]


@pytest.fixture
def limited(app):
    app.config["API_TOKEN_FAILURE_LIMIT"] = "5 per minute"
    app.config["API_TOKEN_FAILURE_AUDIT_LIMIT"] = "8 per minute"
    return app


def garbage(client, value="smpat_garbage"):
    return client.get("/api/v1/me", headers={"Authorization": f"Bearer {value}"})


def test_a_few_failed_tokens_are_each_answered_401_and_audited(limited, db):
    client = from_address(limited, "10.0.0.1")
    for n in range(5):
        assert garbage(client, f"smpat_try{n}").status_code == 401
    assert refused_rows(db) == 5


def test_beyond_the_limit_an_address_gets_429_and_no_more_audit_rows(limited, db):
    client = from_address(limited, "10.0.0.1")
    for _ in range(5):
        garbage(client)
    for _ in range(20):
        response = garbage(client)
        assert response.status_code == 429
        assert response.get_json()["error"]["code"] == "rate_limited"
        assert response.get_json()["error"]["message"]
        assert 1 <= int(response.headers["Retry-After"]) <= 61
    assert refused_rows(db) == 5


def test_the_limit_is_per_address_and_audit_rows_are_bounded_overall(limited, db):
    for address in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        client = from_address(limited, address)
        for _ in range(5):
            assert garbage(client).status_code == 401  # each address has its own limit
    assert refused_rows(db) == 8  # ... but not its own audit budget


def test_a_valid_token_from_a_limited_address_still_works(limited, db, users, clock):
    row = db.execute("SELECT * FROM users WHERE username = 'dana'").fetchone()

    class Owner:
        id, username, role = row["id"], row["username"], row["role"]

    _id, token = access_tokens.create_token(db, Owner, "ci", ("read",), 30, now=clock())
    client = from_address(limited, "10.0.0.1")
    for _ in range(6):
        garbage(client)
    assert garbage(client).status_code == 429
    assert garbage(client, token).status_code == 200


def test_calls_without_a_token_are_not_counted(limited):
    client = from_address(limited, "10.0.0.1")
    for _ in range(10):
        assert client.get("/api/v1/me").status_code == 401
    assert garbage(client).status_code == 401
