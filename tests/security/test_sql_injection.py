"""SQL injection: classic payloads and LIKE wildcards in every filter and search
parameter return normally (< 500), change nothing (row counts identical) and never
widen results — a developer's ``q=' OR 1=1 --`` shows no request they cannot see, and
``%``/``_`` match only themselves."""

from __future__ import annotations

import re

import pytest

from samosval.domain import tokens as token_domain
from tests import factories
from tests.security.conftest import World, json_body, row_counts

PAYLOADS = [
    "' OR 1=1 --",
    '"; DROP TABLE users; --',
    "%",
    "_",
    "\\",
    "%' OR '1'='1",
    "1 OR 1=1",
    "1; DELETE FROM audit_log",
    "') OR ('1'='1' --",
    "*/ UNION SELECT username, password_hash FROM users --",
    "\x00",
    "1e999",
    "-1",
    "99999999999999999999999",
]

# path -> (attribute naming the listed rows, parameters, text-search parameters). A text
# search for a payload matches nothing: no stored value contains these characters.
LISTS = {
    "/requests": ("data-request-id", ["status", "owner", "q", "mine", "page"], ["owner", "q"]),
    "/builds": ("data-build-id", ["status", "page"], []),
    "/images": ("data-image-id", ["q", "page"], ["q"]),
    "/deployments": ("data-deployment-id", ["status", "environment", "page"], []),
    "/webhooks": ("data-delivery-id", ["outcome", "source", "page"], []),
    "/admin/users": ("data-user-id", ["role", "q"], ["q"]),
    "/admin/audit": (
        "data-audit-id",
        ["user", "action", "q", "from", "to", "target_type", "target_id", "before", "after"],
        ["user"],
    ),
}
DEVELOPER_LISTS = ("/requests", "/builds", "/images", "/deployments")
STAFF_ONLY = {"/webhooks": "oleg", "/admin/users": "root", "/admin/audit": "root"}


@pytest.fixture(scope="module")
def sqli_world(world: World) -> World:
    """sam gets a request of his own, so "not widened" compares against something."""
    db, users = world.db, world.users
    request_id = factories.make_request(
        db, owner_id=users["sam"], image_name="sam-tool", repo_url="https://github.com/acme/sam-tool.git"
    )
    image_id = factories.make_image(db, request_id=request_id, name="sam-tool")
    factories.make_build(db, request_id=request_id, built_by=users["oleg"], image_id=image_id)
    factories.make_deployment(db, image_id=image_id, name="sam-dev")
    # A delivery so the deliveries page lists something.
    _id, token = token_domain.create_token(
        db, "sqli", secret_key=world.app.secret_key, actor_id=users["root"], now=1_800_000_000.0
    )
    world.app.test_client().post(
        "/api/hooks/commit",
        data=json_body(
            {"repo_url": "https://github.com/acme/billing.git", "branch": "main", "commit": "c0ffee1"}
        ),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
        csrf=False,
    )
    world.sqli_token = token
    return world


def listed_ids(body: str, attribute: str) -> set[int]:
    return {int(match) for match in re.findall(rf'{attribute}="(\d+)"', body)}


def cases():
    for path in LISTS:
        personas = ["sam", "root"] if path in DEVELOPER_LISTS else [STAFF_ONLY[path]]
        for persona in personas:
            yield pytest.param(path, persona, id=f"{persona}{path}")


@pytest.mark.parametrize("path, persona", list(cases()))
def test_it_treats_filter_payloads_as_plain_values(sqli_world, path, persona):
    world = sqli_world
    attribute, params, text_params = LISTS[path]
    client = world.client(persona)
    baseline_response = client.get(path)
    assert baseline_response.status_code == 200
    baseline = listed_ids(baseline_response.get_data(as_text=True), attribute)
    assert baseline, f"{path}: nothing listed for {persona}; the check would prove nothing"
    before = row_counts(world.db)
    for param in params:
        for value in PAYLOADS:
            response = client.get(path, query_string={param: value})
            where = f"{persona} {path}?{param}={value!r}"
            assert response.status_code < 500, where
            found = listed_ids(response.get_data(as_text=True), attribute)
            assert found <= baseline, f"{where}: rows beyond the unfiltered list {found - baseline}"
            if param in text_params:
                assert not found, f"{where}: a payload matched rows {found}"
            if path == "/admin/audit" and param == "q" and found:
                # Details are JSON with keys like "must_change": "_" may match, but literally.
                for (details,) in world.db.execute(
                    f"SELECT details FROM audit_log WHERE id IN ({','.join('?' * len(found))})", sorted(found)
                ):
                    assert value.lower() in (details or "").lower(), f"{where}: matched {details!r}"
    assert row_counts(world.db) == before, f"{path}: a GET changed rows"


def test_it_shows_a_developer_only_their_requests_whatever_the_query(sqli_world):
    world = sqli_world
    sam = world.client("sam")
    hidden = {world.visible.request_id, world.visible.draft_request_id, world.hidden.request_id}
    for value in PAYLOADS:
        for param in ("q", "owner", "status", "mine"):
            data = sam.get(
                "/requests", query_string={param: value}, headers={"Accept": "application/json"}
            ).get_json()
            assert not {item["id"] for item in data["items"]} & hidden, (param, value)


def test_it_matches_wildcards_literally(sqli_world):
    root = sqli_world.client("root")
    everything = root.get("/requests", headers={"Accept": "application/json"}).get_json()["items"]
    assert len(everything) >= 5
    for wildcard in ("%", "_", "\\", "%%", "_%_"):
        found = root.get(
            "/requests", query_string={"q": wildcard}, headers={"Accept": "application/json"}
        ).get_json()["items"]
        assert found == [], wildcard
        assert root.get("/api/users/search", query_string={"q": wildcard}).get_json() == [], wildcard
        users = root.get(
            "/admin/users", query_string={"q": wildcard}, headers={"Accept": "application/json"}
        ).get_json()["users"]
        assert users == [], wildcard


@pytest.mark.parametrize("param", ["q", "role"])
def test_it_keeps_the_user_search_api_safe(sqli_world, param):
    world = sqli_world
    sam = world.client("sam")
    before = row_counts(world.db)
    for value in PAYLOADS:
        response = sam.get("/api/users/search", query_string={param: value})
        assert response.status_code in (200, 400), value
        assert response.is_json
        if response.status_code == 200:
            assert response.get_json() == [], value
        else:
            assert "error" in response.get_json()
    assert row_counts(world.db) == before


def test_it_keeps_the_audit_csv_safe(sqli_world):
    world = sqli_world
    root = world.client("root")
    total = len(root.get("/admin/audit.csv").get_data(as_text=True).splitlines())
    before = row_counts(world.db)
    for param in LISTS["/admin/audit"][1]:
        for value in PAYLOADS:
            response = root.get("/admin/audit.csv", query_string={param: value})
            assert response.status_code in (200, 400), (param, value)
            if response.status_code == 200:
                assert len(response.get_data(as_text=True).splitlines()) <= total, (param, value)
    assert row_counts(world.db) == before


def test_it_keeps_numeric_parameters_safe(sqli_world):
    world = sqli_world
    root = world.client("root")
    build_id, deployment_id = world.visible.build_id, world.visible.deployment_id
    before = row_counts(world.db)
    for value in PAYLOADS:
        log = root.get(f"/api/builds/{build_id}/log", query_string={"offset": value})
        assert log.status_code in (200, 400) and log.is_json, value
        metrics = root.get(f"/api/deployments/{deployment_id}/metrics", query_string={"since": value})
        assert metrics.status_code in (200, 400) and metrics.is_json, value
        stream = root.get(
            f"/api/deployments/{deployment_id}/logs/stream",
            query_string={"after": value},
            headers={"Last-Event-ID": value},
            buffered=False,
        )
        assert stream.status_code == 200, value
        stream.close()
    assert row_counts(world.db) == before


def test_it_treats_hook_fields_as_plain_values(sqli_world):
    world = sqli_world
    deployments = world.db.execute("SELECT id, status, updated_at, needs_restart FROM deployments").fetchall()
    client = world.app.test_client()
    before = row_counts(world.db)
    calls = 0
    for value in PAYLOADS:
        for field in ("repo_url", "branch", "commit"):
            body = {
                "repo_url": "https://github.com/acme/billing.git",
                "branch": "main",
                "commit": "c0ffee2",
                field: value,
            }
            response = client.post(
                "/api/hooks/commit",
                data=json_body(body),
                content_type="application/json",
                headers={"Authorization": f"Bearer {world.sqli_token}"},
                csrf=False,
            )
            calls += 1
            assert response.status_code in (200, 400), (field, value, response.get_json())
            if field != "commit":  # a payload repository or branch matches no request
                assert response.get_json().get("restarted_deployments") in (None, []), (field, value)
    after = row_counts(world.db)
    # Each call is logged once as a delivery (and audited); nothing else moves.
    assert after["webhook_deliveries"] == before["webhook_deliveries"] + calls
    for table in ("users", "image_requests", "builds", "images", "deployments", "webhook_tokens"):
        assert after[table] == before[table], table
    # Only the one call with the real repository and branch may touch deployments.
    assert {row["id"] for row in world.db.execute("SELECT id FROM deployments")} == {
        row["id"] for row in deployments
    }


def test_it_refuses_payloads_in_form_fields_without_writing(sqli_world):
    world = sqli_world
    root = world.client("root")
    form = {
        "image_name": "sqli-check",
        "repo_url": "https://github.com/acme/sqli.git",
        "repo_branch": "main",
        "update_mode": "continuous",
        "base_image": "python:3.12-slim",
        "run_commands": "",
        "entrypoint": "",
        "ram_mb": "512",
        "vcpu": "1",
        "version_tag": "1.0.0",
        "owner": "dana",
        "collaborators": "",
    }
    before = row_counts(world.db)
    for value in PAYLOADS:
        for field in ("owner", "collaborators", "image_name", "ram_mb", "update_mode"):
            if field == "image_name" and re.fullmatch(r"[a-z0-9]+", value):
                continue  # "1e999" is a valid image name
            response = root.post("/requests/new", data={**form, field: value})
            assert response.status_code == 400, (field, value)
        status = root.post(f"/requests/{world.visible.request_id}/status", data={"status": value})
        assert status.status_code in (302, 400), value
        role = root.post(f"/admin/users/{world.target_user}/role", data={"role": value})
        assert role.status_code == 400, value
    assert row_counts(world.db) == before
    assert (
        world.db.execute(
            "SELECT status FROM image_requests WHERE id = ?", (world.visible.request_id,)
        ).fetchone()[0]
        == "approved"
    )
