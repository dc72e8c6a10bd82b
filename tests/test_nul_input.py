"""U+0000 in input: PostgreSQL text cannot hold it (SQLite's can), so a form field or a
JSON body carrying one is refused as a whole with a 400 naming it, on both databases,
before any route reads it (``web.refuse_nul_input``); the commit hook refuses it in
its own parser and still records the call. Query strings are filters: a NUL there
matches nothing and is no error."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from samosval.domain import NUL_REFUSED, access_tokens, holds_nul, tokens
from tests import factories
from tests.conftest import PASSWORD
from tests.test_requests_form import count_requests, valid_form

NUL = "x\x00y"


@pytest.fixture(autouse=True)
def english(client, db, users):
    db.execute("UPDATE users SET locale = 'en'")
    with client.session_transaction() as session:
        session["lang"] = "en"


def table_count(db, table: str) -> int:
    return db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


@pytest.mark.parametrize(
    "value, expected",
    [
        ("plain", False),
        ("a\x00", True),
        (None, False),
        (12, False),
        ({"k": ["a", {"b": "c"}]}, False),
        ({"k": ["a", {"b": "c\x00"}]}, True),
        ({"\x00": 1}, True),
        ([("field", "ok"), ("other", "\x00")], True),
    ],
)
def test_it_finds_a_nul_anywhere_in_a_value(value, expected):
    assert holds_nul(value) is expected


def test_it_walks_deep_json_without_recursing():
    deep: list = ["\x00"]
    for _ in range(100_000):
        deep = [deep]
    assert holds_nul(deep)


@pytest.mark.parametrize("field", sorted(valid_form()))
def test_a_nul_in_any_request_field_refuses_the_form_and_writes_nothing(auth, db, field):
    response = auth.client_for("carl").post("/requests/new", data=valid_form(**{field: NUL}))
    assert response.status_code == 400
    assert NUL_REFUSED in response.get_data(as_text=True)
    assert count_requests(db) == 0


def test_a_nul_in_a_field_name_is_refused_too(auth, db):
    response = auth.client_for("carl").post("/requests/new", data={**valid_form(), "stray\x00": "1"})
    assert response.status_code == 400 and count_requests(db) == 0


def test_a_login_with_a_nul_is_refused_without_a_lookup(client, users, db):
    before = table_count(db, "audit_log")
    response = client.post("/login", data={"username": "carl\x00", "password": "x"})
    assert response.status_code == 400
    assert NUL_REFUSED in response.get_data(as_text=True)
    assert table_count(db, "audit_log") == before


def test_a_token_name_with_a_nul_is_refused(auth, db):
    before = table_count(db, "webhook_tokens")
    response = auth.client_for("alice").post("/admin/tokens/create", data={"name": NUL})
    assert response.status_code == 400
    assert table_count(db, "webhook_tokens") == before


def test_a_json_body_with_a_nul_gets_the_api_error_shape(app, db, users, client):
    owner = SimpleNamespace(id=users["carl"], username="carl", role="developer")
    token = access_tokens.create_token(db, owner, "script", ("read", "write"), 30, now=1_800_000_000.0)[1]
    body = {
        "image_name": "nul-api",
        "repo_url": "https://github.com/acme/nul-api.git",
        "base_image": "python:3.12-slim",
        "version_tag": "1.0.0",
    }
    for bad in ({**body, "run_commands": ["echo", NUL]}, {**body, NUL: "stray"}):
        response = client.post("/api/v1/requests", json=bad, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 400
        assert response.get_json() == {"error": {"code": "invalid", "message": NUL_REFUSED}}
    assert count_requests(db) == 0


@pytest.mark.parametrize(
    "extra, headers",
    [
        ({"repo_url": "https://github.com/acme/billing.git\x00"}, {}),
        ({"commit_message": NUL}, {}),
        ({}, {"Idempotency-Key": NUL}),
    ],
)
def test_the_hook_records_a_refused_call_with_a_nul(app, db, users, client, extra, headers):
    token = tokens.create_token(
        db, "ci", secret_key=app.secret_key, actor_id=users["alice"], now=1_800_000_000.0
    )[1]
    body = {"repo_url": "https://github.com/acme/billing.git", "branch": "main", "commit": "c0ffee1", **extra}
    response = client.post(
        "/api/hooks/commit", json=body, csrf=False, headers={"Authorization": f"Bearer {token}", **headers}
    )
    assert response.status_code == 400
    row = db.execute("SELECT outcome, reason, repo_url, delivery_key FROM webhook_deliveries").fetchone()
    assert row["outcome"] == "invalid" and row["reason"].startswith("text with a NUL character")
    assert row["repo_url"] is None and row["delivery_key"] is None


@pytest.mark.parametrize(
    "query", [{"q": "\x00"}, {"q": "billing\x00"}, {"owner": "dana\x00"}, {"status": "\x00"}, {"\x00": "x"}]
)
def test_a_nul_in_a_list_filter_matches_nothing(auth, db, users, query):
    factories.make_request(db, owner_id=users["dana"], image_name="billing-api", status="submitted")
    response = auth.client_for("oleg").get(
        "/requests", query_string=query, headers={"Accept": "application/json"}
    )
    assert response.status_code == 200
    items = response.get_json()["items"]
    assert items == [] if "q" in query or "owner" in query else len(items) == 1


def test_a_nul_in_an_exact_filter_matches_nothing(auth, db, users):
    page = auth.client_for("alice").get("/admin/audit", query_string={"user": "alice\x00"})
    assert page.status_code == 200 and "data-audit-id=" not in page.get_data(as_text=True)


def test_a_nul_in_the_user_agent_still_signs_in(app, client, users, db):
    """A browser's User-Agent is taken as it comes (it cannot be refused like a form
    field): a NUL in it is stored as U+0001, so PostgreSQL can hold the session row."""
    response = client.post(
        "/login",
        data={"username": "dana", "password": PASSWORD},
        headers={"User-Agent": "Mozilla/5.0 \x00evil"},
    )
    assert response.status_code == 302
    agent = db.execute("SELECT user_agent FROM sessions WHERE user_id = ?", (users["dana"],)).fetchone()[0]
    assert agent == "Mozilla/5.0 \x01evil"
