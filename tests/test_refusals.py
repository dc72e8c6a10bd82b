"""One answer to a refused command (``web.refused_response``): JSON callers get
``{"error": ...}`` with the kind's status; browsers get the error page, or for a
conflict a flash and a redirect back to a page of this site."""

from __future__ import annotations

import pytest
from flask_babel import force_locale, gettext

from samosval.domain import REFUSAL_STATUS, Refused, ValidationError
from samosval.web import nearest_page
from tests import factories

JSON = {"Accept": "application/json"}
NOT_A_DRAFT = "Only a draft can be submitted."


def translated(app, message):
    with app.test_request_context(), force_locale("ru"):
        return gettext(message)


def submitted_request(db, users):
    return factories.make_request(db, owner_id=users["dana"], created_by=users["dana"], status="submitted")


def flashes(client):
    with client.session_transaction() as sess:
        return sess.get("_flashes", [])


@pytest.mark.parametrize(
    "kind, status", [("invalid", 400), ("forbidden", 403), ("not_found", 404), ("conflict", 409)]
)
def test_each_kind_has_its_status(kind, status):
    assert Refused(kind, "x").status == REFUSAL_STATUS[kind] == status


def test_an_unknown_kind_is_a_programming_error():
    with pytest.raises(ValueError):
        Refused("nope", "x")


def test_payload_and_field_errors_are_given_when_created():
    refusal = Refused("conflict", "x", payload={"current": "running"})
    assert refusal.payload == {"current": "running"}
    invalid = ValidationError({"name": "Required."}, extra={"unknown": ["bob"]})
    assert (invalid.kind, invalid.status, invalid.errors, invalid.extra) == (
        "invalid",
        400,
        {"name": "Required."},
        {"unknown": ["bob"]},
    )


def test_a_json_caller_gets_the_translated_message_and_the_status(app, auth, db, users):
    request_id = submitted_request(db, users)
    response = auth.client_for("dana").post(f"/requests/{request_id}/submit", headers=JSON)
    assert response.status_code == 409
    assert response.get_json() == {"error": translated(app, NOT_A_DRAFT)}


def test_a_conflict_sends_the_browser_back_to_the_page_it_came_from(app, auth, db, users):
    request_id = submitted_request(db, users)
    client = auth.client_for("dana")
    response = client.post(
        f"/requests/{request_id}/submit", headers={"Referer": "http://localhost/requests?status=submitted"}
    )
    assert response.status_code == 302 and response.location == "/requests?status=submitted"
    assert ("error", translated(app, NOT_A_DRAFT)) in flashes(client)


@pytest.mark.parametrize(
    "referer", [None, "https://evil.example/requests", "//evil.example/x", "javascript:alert(1)"]
)
def test_without_a_same_site_referer_it_goes_to_the_nearest_page(auth, db, users, referer):
    request_id = submitted_request(db, users)
    headers = {"Referer": referer} if referer else {}
    response = auth.client_for("dana").post(f"/requests/{request_id}/submit", headers=headers)
    assert response.status_code == 302 and response.location == f"/requests/{request_id}"


def test_a_forbidden_command_shows_the_error_page_with_the_reason(app, auth, users):
    response = auth.client_for("alice").post(f"/admin/users/{users['root']}/block")
    assert response.status_code == 403
    page = response.get_data(as_text=True)
    assert 'data-status-code="403"' in page and translated(app, "root cannot be blocked.") in page


def test_field_errors_reach_json_callers_translated(app, auth, users):
    response = auth.client_for("root").post(
        f"/admin/users/{users['carl']}/role", data={"role": "boss"}, headers=JSON
    )
    message = translated(app, "Choose admin, operator or developer.")
    assert response.status_code == 400
    assert response.get_json() == {"error": message, "errors": {"role": message}}


@pytest.mark.parametrize(
    "path, page",
    [
        ("/requests/7/submit", "/requests/7"),
        ("/alerts/3/resolve", "/alerts"),
        ("/admin/users/5/block", "/admin/users"),
        ("/admin/tokens/2/revoke", "/admin/tokens"),
        ("/no/such/place", "/dashboard"),
    ],
)
def test_the_nearest_page_is_a_page(app, path, page):
    with app.test_request_context(path, method="POST"):
        assert nearest_page(path) == page


def test_no_route_catches_a_refusal_itself():
    """Routes leave refusals to the handler (form re-renders catch ValidationError)."""
    import ast
    from pathlib import Path

    routes = Path(__file__).resolve().parent.parent / "samosval" / "routes"
    caught = []
    for path in routes.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ExceptHandler) and node.type is not None:
                names = [
                    n.id if isinstance(n, ast.Name) else n.attr
                    for n in ast.walk(node.type)
                    if isinstance(n, (ast.Name, ast.Attribute))
                ]
                if any(name in ("Refused", "ActionRefused") for name in names):
                    caught.append(f"{path.name}:{node.lineno}")
    assert not caught, caught


def test_signing_out_of_a_session_that_already_ended_is_no_refusal(db, users):
    from samosval.domain import sessions as session_domain

    assert (
        session_domain.end_session(
            db,
            999999,
            user_id=users["dana"],
            actor_id=users["dana"],
            now=1_800_000_000.0,
            action="logout",
            missing_ok=True,
        )
        is False
    )
    with pytest.raises(Refused) as refused:
        session_domain.end_session(
            db, 999999, user_id=users["dana"], actor_id=users["dana"], now=1_800_000_000.0
        )
    assert refused.value.kind == "not_found"
