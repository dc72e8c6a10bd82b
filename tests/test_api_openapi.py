"""The OpenAPI document (issue 22): valid OpenAPI 3.1, the same operations as
``app.url_map`` (document and code cannot drift apart), a docs page built from it;
and schemathesis, a generic API fuzzer, against a real server on 127.0.0.1 with an
admin token and with a developer token: no 5xx, answers that match the document."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
from openapi_spec_validator import validate

from samosval.api import openapi_path
from samosval.api.common import PREFIX
from samosval.db import connect
from samosval.domain import access_tokens
from tests import factories
from tests.live import AppProcess

# The pages' own JSON under /api (their scripts call it; the API has each of these
# too) and what authenticates on its own: not part of the documented API.
UNDOCUMENTED = {
    "api.search_users": "the request form's owner and collaborator lookup",
    "dashboard.palette": "the command palette's search",
    "builds.build_log_json": "the build page's log polling (GET /api/v1/builds/{id}/log)",
    "deployments.deployment_metrics": "the deployment page's chart (GET /api/v1/deployments/{id}/metrics)",
    "deployments.log_stream": "the deployment page's live log, Server-Sent Events (GET /api/v1/deployments/{id}/logs)",
    "releases.releases_json": "the deployment page's releases (GET /api/v1/deployments/{id}/releases)",
    "config.env_json": "the configuration page's JSON",
    "hooks.commit_hook": "the commit webhook: its own tokens, see README",
    "hooks.commit_hook_for_token": "the commit webhook: its own tokens, see README",
    "api-docs.openapi_json": "this document",
    "api_docs.docs": "the docs page",
}
METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}


def documented(doc: dict) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in doc["paths"].items()
        for method in item
        if method.upper() in METHODS
    }


def test_the_document_is_valid_openapi_3_1(client):
    doc = client.get("/api/openapi.json").get_json()
    assert doc["openapi"].startswith("3.1")
    validate(doc)


def test_the_document_and_the_url_map_agree(app, client):
    doc = client.get("/api/openapi.json").get_json()
    routes = {
        (method, openapi_path(rule.rule))
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith(PREFIX + "/")
        for method in rule.methods & METHODS
    }
    assert documented(doc) == routes
    stray = sorted(
        rule.endpoint
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/")
        and not rule.rule.startswith(PREFIX + "/")
        and rule.endpoint not in UNDOCUMENTED
    )
    assert not stray, f"document these under {PREFIX} or say why not in UNDOCUMENTED: {stray}"


def test_every_operation_says_what_it_answers_and_needs(client):
    doc = client.get("/api/openapi.json").get_json()
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method.upper() not in METHODS:
                continue
            assert operation["x-required-scope"] in ("read", "write", "admin"), (method, path)
            assert operation.get("summary"), (method, path)
            assert "default" in operation["responses"], (method, path)
            ok = [code for code in operation["responses"] if code.startswith("2")]
            assert ok, (method, path)
    error = doc["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]


def test_admin_routes_need_the_admin_scope_in_the_document(client):
    doc = client.get("/api/openapi.json").get_json()
    assert doc["paths"]["/api/v1/users"]["get"]["x-required-scope"] == "admin"
    assert doc["paths"]["/api/v1/audit"]["get"]["x-required-scope"] == "admin"
    assert doc["paths"]["/api/v1/requests"]["post"]["x-required-scope"] == "write"


def test_the_docs_page_lists_every_operation(client):
    doc = client.get("/api/openapi.json").get_json()
    page = client.get("/api/docs")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    for method, path in documented(doc):
        assert f'data-operation="{method} {path}"' in text
    assert "cdn" not in text.lower().replace("cdn.jsdelivr", "")  # nothing from elsewhere


# --- schemathesis against a real server ---------------------------------------------------------

EXAMPLES = int(os.environ.get("SAMOSVAL_API_FUZZ_EXAMPLES", "8"))


@pytest.fixture(scope="module")
def live_api(tmp_path_factory):
    """A real server with data to act on, an admin and a developer with tokens of
    every scope they may have."""
    folder = tmp_path_factory.mktemp("api-fuzz")
    server = AppProcess(folder / "instance", folder / "server.log", speed=1.0)
    try:
        admin_id = server.create_user("fuzz-admin", "admin")
        dev_id = server.create_user("fuzz-dev", "developer")
        db = connect(server.target)
        try:
            request_id = factories.make_request(db, owner_id=dev_id, created_by=dev_id, status="approved")
            factories.make_request(
                db, owner_id=dev_id, created_by=dev_id, status="draft", image_name="draft-app"
            )
            image_id = factories.make_image(db, request_id=request_id)
            factories.make_build(
                db, request_id=request_id, built_by=admin_id, status="success", image_id=image_id
            )
            deployment_id = factories.make_deployment(db, image_id=image_id, created_by=dev_id)
            factories.make_release(db, deployment_id=deployment_id, number=1, current=True)
            db.commit()
            tokens = {}
            for name, user_id, role, scopes in (
                ("admin", admin_id, "admin", ("read", "write", "admin")),
                ("developer", dev_id, "developer", ("read", "write")),
            ):
                owner = SimpleNamespace(id=user_id, username=f"fuzz-{name[:5]}", role=role)
                tokens[name] = access_tokens.create_token(db, owner, "fuzz", scopes, 1, now=_now())[1]
        finally:
            db.close()
        yield SimpleNamespace(url=server.url, tokens=tokens, server=server)
    finally:
        server.stop()


def _now() -> float:
    import time

    return time.time()


# The developer runs first: the admin's run may block or demote them. Positive
# examples follow the document (answers must match it); negative ones break it on
# purpose (wrong types, missing fields): those must still never be a 5xx.
@pytest.mark.parametrize(
    "persona, mode",
    [("developer", "positive"), ("developer", "negative"), ("admin", "positive"), ("admin", "negative")],
)
def test_schemathesis_finds_no_server_error_and_no_answer_off_the_document(live_api, persona, mode):
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    headers = {"Authorization": f"Bearer {live_api.tokens[persona]}"}
    schema = schemathesis.openapi.from_url(f"{live_api.url}/api/openapi.json")
    checks = (
        [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance]
        if mode == "positive"
        else [not_a_server_error, content_type_conformance]
    )
    generation = GenerationMode.POSITIVE if mode == "positive" else GenerationMode.NEGATIVE
    failures, operations, examples = [], 0, []
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        count = [0]

        def make_run(operation, count):
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=generation))
            def run(case):
                count[0] += 1
                case.call_and_validate(base_url=live_api.url, headers=headers, checks=checks, timeout=30)

            return run

        try:
            make_run(operation, count)()
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - every failure is collected
            failures.append(f"{operation.label}: {type(exc).__name__}: {str(exc)[:800]}")
        examples.append(count[0])
    print(
        f"schemathesis as {persona}, {mode}: {operations} operations, {sum(examples)} examples, "
        f"{len(failures)} failing"
    )
    assert operations >= 30 and sum(examples) >= (operations if mode == "positive" else 1)
    assert not failures, "\n\n".join(failures) + "\n\nserver log:\n" + live_api.server.log_text()[-3000:]
