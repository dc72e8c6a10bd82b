"""CSRF: every state-changing route of ``app.url_map`` (POST/PUT/PATCH/DELETE) refuses a
call without a valid token with 400 — forms and the JSON calls the pages' scripts make
alike — and writes nothing. The commit hook has no session to protect: it refuses
anything without valid authentication (401), including a session without the header."""

from __future__ import annotations

import pytest

from tests.security.conftest import World, row_counts
from tests.security.test_authorization_matrix import MATRIX, _object_id, _url, _variants, hook_body

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
CSRF_MESSAGE = "the security token is missing"
HOOK = "hooks.commit_hook"
HOOKS = {HOOK, "hooks.commit_hook_for_token"}  # authenticate every call themselves


def unsafe_routes(app) -> list[tuple[str, str, str | None]]:
    found = []
    for rule in app.url_map.iter_rules():
        spec = MATRIX[rule.endpoint]
        choices = list(next(iter(spec.choices.values()))) if spec.choices else [None]
        for method in sorted(rule.methods & UNSAFE):
            found += [(rule.endpoint, method, choice) for choice in choices]
    return found


@pytest.fixture(scope="module")
def csrf_world(world: World) -> World:
    # English messages, so a CSRF refusal can be told from any other 400.
    world.db.execute("UPDATE users SET locale = 'en'")
    return world


def _target(world: World, endpoint: str, choice: str | None) -> str:
    spec = MATRIX[endpoint]
    rule = next(r for r in world.app.url_map.iter_rules() if r.endpoint == endpoint)
    variant = _variants(spec)[0]
    return _url(world, rule, spec, _object_id(world, spec, variant, fresh=True), choice)


def _form(endpoint: str) -> dict:
    data = MATRIX[endpoint].data
    return dict(data) if isinstance(data, dict) else {}


def _attempts(world: World):
    """(name, client kwargs) of the ways a forged request arrives."""
    other_token = world.fresh_client("dana").csrf_token()  # valid, but for another session
    return [
        ("no token", {}),
        ("garbage token", {"headers": {"X-CSRFToken": "garbage"}, "form": {"csrf_token": "garbage"}}),
        ("another session's token", {"headers": {"X-CSRFToken": other_token}}),
        ("JSON call without token", {"headers": {"Accept": "application/json"}}),
    ]


def test_it_lists_state_changing_routes(app):
    endpoints = {endpoint for endpoint, _m, _c in unsafe_routes(app)}
    # A floor, so a broken enumeration cannot pass by finding nothing.
    assert {
        "requests.new_request",
        "admin.block_user",
        "deployments.deployment_action",
        "auth.logout",
        HOOK,
    } <= endpoints
    assert len(unsafe_routes(app)) >= 24


def test_it_refuses_every_forged_state_change(csrf_world):
    world = csrf_world
    refused = []
    for endpoint, method, choice in unsafe_routes(world.app):
        if endpoint in HOOKS:
            continue
        for name, attempt in _attempts(world):
            client = world.fresh_client("root")
            url = _target(world, endpoint, choice)
            before = row_counts(world.db)
            form = {**_form(endpoint), **attempt.get("form", {})}
            response = client.open(
                url, method=method, data=form, headers=attempt.get("headers", {}), csrf=False
            )
            body = response.get_data(as_text=True)
            where = f"{method} {url} ({endpoint}, {name})"
            assert response.status_code == 400, f"{where}: {response.status_code}"
            assert CSRF_MESSAGE in body, f"{where}: not the CSRF refusal"
            if name.startswith("JSON"):
                error = response.get_json()["error"] if response.is_json else None
                message = error["message"] if isinstance(error, dict) else error  # /api: the one shape
                assert message and CSRF_MESSAGE in message, where
            assert row_counts(world.db) == before, f"{where} wrote rows"
            assert client.get("/dashboard").status_code == 200, f"{where} ended the session"
            refused.append(where)
    assert len(refused) >= 4 * 23


def test_it_lets_the_same_calls_through_with_a_valid_token(csrf_world):
    """The control: the refusals above are about the token, not the call."""
    world = csrf_world
    for endpoint, method, choice in unsafe_routes(world.app):
        if endpoint in HOOKS:
            continue
        client = world.fresh_client("root")
        response = client.open(_target(world, endpoint, choice), method=method, data=_form(endpoint))
        assert CSRF_MESSAGE not in response.get_data(as_text=True), endpoint
        assert response.status_code < 500, endpoint


def test_it_refuses_a_login_without_a_token(csrf_world):
    world = csrf_world
    client = world.app.test_client()
    response = client.post("/login", data={"username": "dana", "password": "password123"}, csrf=False)
    assert response.status_code == 400
    assert client.get("/dashboard").status_code == 302  # not logged in


def test_it_refuses_hook_calls_without_authentication(csrf_world):
    world = csrf_world
    deployments = world.db.execute("SELECT id, status, updated_at FROM deployments").fetchall()
    body = hook_body(world.visible)
    cases = {
        "anonymous": (world.app.test_client(), {}),
        "session without CSRF header": (world.fresh_client("root"), {}),
        "session with a garbage CSRF header": (world.fresh_client("root"), {"X-CSRFToken": "garbage"}),
        "unknown bearer token": (world.app.test_client(), {"Authorization": "Bearer smsv_forged"}),
        "forged GitHub signature": (
            world.app.test_client(),
            {"X-Hub-Signature-256": "sha256=" + "0" * 64, "X-GitHub-Event": "push"},
        ),
    }
    for name, (client, headers) in cases.items():
        for url in ("/api/hooks/commit", f"/api/hooks/commit/{world.token}"):
            response = client.post(
                url, data=body, content_type="application/json", headers=headers, csrf=False
            )
            assert response.status_code == 401, f"{name} {url}: {response.status_code}"
            assert response.is_json and response.get_json()["error"]["outcome"] == "refused", name
    assert world.db.execute("SELECT id, status, updated_at FROM deployments").fetchall() == deployments
    restarted = world.db.execute(
        "SELECT COUNT(*) FROM audit_log WHERE action = 'deployments_restarted'"
    ).fetchone()[0]
    assert restarted == 0
