"""The authorization matrix: every route of ``app.url_map`` × every method × every kind
of user × objects they may and may not see, checked against ONE table (``MATRIX``).

A route missing from the table fails ``test_it_has_a_decision_for_every_route``: no
route can be added without deciding who may use it.

What a row means:
- anonymous and blocked callers get the login redirect (``page``) or 401 (``api``:
  JSON and SSE under /api/); ``public`` routes serve them like anyone else;
  ``token`` routes admit one webhook token and no session: everyone here gets 401;
- a logged-in user outside ``view`` gets 404 (``hidden`` overrides it) — a hidden
  object and a missing one look the same;
- a user inside ``view`` but outside ``act`` (for that method) gets 403;
- a user inside ``act`` is served: a GET answers 2xx/3xx; a POST may end in 400/409
  (missing form fields, a status that does not allow the action) but never in
  401/403/404 or a 5xx.

Every endpoint runs twice: as a browser, and as the pages' scripts call it (asking for
JSON), where anonymous callers get 401 and every refusal carries a JSON ``error``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from flask import url_for

from tests import factories
from tests.security.conftest import (
    PERSONA_ORDER,
    World,
    json_body,
    make_alert,
    make_object_set,
    make_target_user,
    make_token,
    relation,
)

# --- who: relations of a persona to an object set --------------------------------------

ANY = frozenset({"stranger", "creator", "owner", "collaborator", "operator", "admin"})
MEMBERS = ANY - {"stranger"}  # see a request and what hangs off it
EDITORS = MEMBERS - {"collaborator"}  # creator, owner, staff
OWNERS = frozenset({"owner", "operator", "admin"})  # start/stop/restart a deployment
STAFF = frozenset({"operator", "admin"})
ADMIN = frozenset({"admin"})

VISIBILITY_OBJECTS = ("request", "draft_request", "build", "image", "deployment", "release")
ROLE_OBJECTS = ("user", "alert", "token", "channel")  # no per-object visibility: the role decides


@dataclass(frozen=True)
class Access:
    kind: str  # "page" | "api" | "public" | "token": what anonymous callers get
    view: frozenset = ANY  # may see the object (others: ``hidden``)
    act: frozenset | dict | None = None  # may use it, for every method or per method; default: view
    obj: str | None = None  # what the URL's id names
    data: dict | Callable | None = None  # form sent with a POST (or a callable(objects) -> JSON)
    choices: dict = field(default_factory=dict)  # URL arg -> {value: act}
    hidden: int = 404
    ok: tuple = ()  # statuses an allowed caller may get besides the defaults
    sse: bool = False
    new_session: bool = False  # the call ends the caller's session (log in afresh)
    variants: tuple | None = None  # object variants; default from ``obj``

    def act_for(self, method: str, choice: str | None) -> frozenset:
        if choice is not None:
            return self.choices[next(iter(self.choices))][choice]
        if isinstance(self.act, dict):
            return self.act[method]
        return self.act if self.act is not None else self.view


def hook_body(objects) -> bytes:
    return json_body({"repo_url": objects.repo_url, "branch": "main", "commit": "c0ffee1"})


DEPLOY_FORM = {"name": "matrix-dev", "environment": "dev", "replicas": "1", "ports": "8000:8000"}
API_REQUEST = {
    "image_name": "matrix-api",
    "repo_url": "https://github.com/acme/matrix-api.git",
    "base_image": "python:3.12-slim",
    "version_tag": "1.0.0",
}

# THE table. Keys are endpoint names; a new route must be added here.
MATRIX: dict[str, Access] = {
    # Public: no login. The hook and /metrics authenticate callers themselves.
    "static": Access("public"),
    "auth.index": Access("public"),
    "auth.login": Access("public", ok=(401,)),  # POST without credentials: "wrong username or password"
    "auth.logout": Access("public", new_session=True),
    "auth.set_language": Access("public"),
    "ops.healthz": Access("public", ok=(503,)),  # 503 here: the engine thread is not started in tests
    "ops.metrics": Access("public"),  # the test client comes from 127.0.0.1, which is allowed
    # The button restarts deployments: the restart rule (owner, staff). A logged-in
    # developer calling the hook for a repository of a request they cannot see gets
    # the same 403 as for one that matches nothing: nothing leaks.
    "hooks.commit_hook": Access(
        "api",
        obj="request",
        view=MEMBERS,
        act=OWNERS,
        hidden=403,
        data=hook_body,
        variants=("visible", "hidden"),
    ),
    # A token's own hook URL: only that token (bearer or signature), never a session.
    "hooks.commit_hook_for_token": Access("token", obj="token", data=hook_body, variants=("visible",)),
    # Anyone logged in.
    "dashboard.dashboard": Access("page"),
    "dashboard.palette": Access("api"),  # results are filtered by visibility (tests/test_dashboard.py)
    "dashboard.favicon": Access("public"),
    "auth.change_password": Access("page"),
    # One's own sessions (a POST without a session id is refused as invalid).
    "account.sessions": Access("page"),
    "account.end_session": Access("page"),
    "account.end_all_sessions": Access("page", new_session=True),
    "requests.list_requests": Access("page"),
    "requests.new_request": Access("page"),
    "builds.list_builds": Access("page"),
    "images.list_images": Access("page"),
    "deployments.list_deployments": Access("page"),
    "api.search_users": Access("api"),
    # Requests: members see them; creator/owner edit drafts; staff review and build.
    "requests.request_detail": Access("page", obj="request", view=MEMBERS),
    "requests.edit_request": Access("page", obj="draft_request", view=MEMBERS, act=EDITORS),
    "requests.submit_request": Access("page", obj="draft_request", view=MEMBERS, act=EDITORS),
    "requests.change_status": Access(
        "page", obj="request", view=MEMBERS, act=STAFF, data={"status": "draft"}
    ),  # approved -> draft: staff only
    "builds.start_build": Access("page", obj="request", view=MEMBERS, act=STAFF),
    # Builds and images.
    "builds.build_detail": Access("page", obj="build", view=MEMBERS),
    "builds.build_log_json": Access("api", obj="build", view=MEMBERS),
    "builds.cancel_build": Access("page", obj="build", view=MEMBERS, act=STAFF),
    "builds.retry_build": Access("page", obj="build", view=MEMBERS, act=STAFF),  # a retry is a build
    "images.image_detail": Access("page", obj="image", view=MEMBERS),
    "images.create_deployment": Access("page", obj="image", view=MEMBERS, act=STAFF, data=DEPLOY_FORM),
    # Deployments: members watch; the owner starts/stops/restarts; staff also delete.
    "deployments.deployment_detail": Access("page", obj="deployment", view=MEMBERS),
    "deployments.download_logs": Access("page", obj="deployment", view=MEMBERS),
    "deployments.deployment_metrics": Access("api", obj="deployment", view=MEMBERS),
    "deployments.log_stream": Access("api", obj="deployment", view=MEMBERS, sse=True),
    "deployments.deployment_action": Access(
        "page",
        obj="deployment",
        view=MEMBERS,
        choices={"action": {"start": OWNERS, "stop": OWNERS, "restart": OWNERS, "delete": STAFF}},
    ),
    # Releases (issue 20): members read them; who may restart rolls back and unpins
    # (unpinning what is not pinned is a 409); staff other than the requester decide
    # pending ones (the requester, a developer here, is refused like any developer).
    "releases.releases_json": Access("api", obj="deployment", view=MEMBERS),
    "releases.release_detail": Access("page", obj="release", view=MEMBERS),
    "releases.rollback": Access("page", obj="deployment", view=MEMBERS, act=OWNERS, data={"release": "1"}),
    "releases.unpin": Access("page", obj="deployment", view=MEMBERS, act=OWNERS),
    "releases.approve": Access("page", obj="release", view=MEMBERS, act=STAFF),
    "releases.reject": Access("page", obj="release", view=MEMBERS, act=STAFF, data={"reason": "not now"}),
    "releases.pending_list": Access("page", act=STAFF),
    # Operations: staff.
    "alerts.list_alerts": Access("page", act=STAFF),
    "alerts.resolve_alert": Access("page", obj="alert", act=STAFF),
    "hooks.list_deliveries": Access("page", act=STAFF),
    # Administration: admins.
    "hooks.list_tokens": Access("page", act=ADMIN),
    "hooks.create_token": Access("page", act=ADMIN, data={"name": "matrix ci"}),
    "hooks.revoke_token": Access("page", obj="token", act=ADMIN),
    "admin.list_users": Access("page", act=ADMIN),
    "admin.create_user": Access("page", act=ADMIN),
    "admin.block_user": Access("page", obj="user", act=ADMIN),
    "admin.unblock_user": Access("page", obj="user", act=ADMIN),
    "admin.change_role": Access("page", obj="user", act=ADMIN, data={"role": "operator"}),
    "admin.reset_password": Access("page", obj="user", act=ADMIN),
    "account.user_sessions": Access("page", obj="user", act=ADMIN),
    "account.end_user_session": Access("page", obj="user", act=ADMIN),
    "admin.audit": Access("page", act=ADMIN),
    "admin.audit_csv": Access("page", act=ADMIN),
    # Protected environments (the POST unprotects dev: a no-op that changes nothing).
    "releases.environments": Access("page", act=ADMIN, data={"environment": "dev", "protected": "0"}),
    # Configuration (issue 21): members see it (secrets masked); a change rolls out, so
    # whoever may restart the deployment.
    "config.edit_env": Access(
        "page",
        obj="deployment",
        view=MEMBERS,
        act={"GET": MEMBERS, "POST": OWNERS},
        data={"row_count": "1", "rows-0-key": "MATRIX", "rows-0-value": "1"},
    ),
    "config.env_json": Access("api", obj="deployment", view=MEMBERS),
    # Notifications: anyone manages their own subscriptions (a POST without fields is
    # refused as invalid); admins configure channels.
    "notifications.my_subscriptions": Access("page"),
    "notifications.subscribe": Access("page"),
    "notifications.unsubscribe": Access("page"),
    "notifications.list_channels": Access("page", act=ADMIN),
    "notifications.new_channel": Access(
        "page",
        act=ADMIN,
        choices={"kind": {"webhook": ADMIN, "slack": ADMIN, "telegram": ADMIN, "email": ADMIN}},
    ),
    "notifications.edit_channel": Access("page", obj="channel", act=ADMIN),
    "notifications.delete_channel": Access("page", obj="channel", act=ADMIN),
    "notifications.channel_deliveries": Access("page", obj="channel", act=ADMIN),
    "notifications.test_channel": Access("page", obj="channel", act=ADMIN),
    "notifications.retry_dead": Access("page", obj="channel", act=ADMIN),
    # API tokens (issue 22): one's own. Revoking a token that is not one's own (here a
    # webhook token's id) is a 404 for everyone.
    "account.tokens": Access("page"),
    "account.create_token": Access("page", data={"name": "matrix", "scopes": "read", "days": "30"}),
    "account.revoke_token": Access("page", obj="token", ok=(404,)),
    # The JSON API (issue 22): the pages' rules, answered as JSON; what a token's scopes
    # take away on top is tests/test_api_tokens.py. Its document and docs are public.
    "api-docs.openapi_json": Access("public"),
    "api_docs.docs": Access("public"),
    "api_me.me": Access("api"),
    "api_requests.list_requests": Access("api"),
    "api_requests.create_request": Access("api", data=lambda objects: json_body(API_REQUEST)),
    "api_requests.get_request": Access("api", obj="request", view=MEMBERS),
    "api_requests.update_request": Access(
        "api", obj="draft_request", view=MEMBERS, act=EDITORS, data=lambda objects: json_body(API_REQUEST)
    ),
    "api_requests.submit_request": Access("api", obj="draft_request", view=MEMBERS, act=EDITORS),
    "api_requests.change_request_status": Access(
        "api", obj="request", view=MEMBERS, act=STAFF, data=lambda objects: json_body({"status": "draft"})
    ),
    "api_requests.start_build": Access("api", obj="request", view=MEMBERS, act=STAFF),
    "api_builds.list_builds": Access("api"),
    "api_builds.get_build": Access("api", obj="build", view=MEMBERS),
    "api_builds.build_log": Access("api", obj="build", view=MEMBERS),
    "api_builds.cancel_build": Access("api", obj="build", view=MEMBERS, act=STAFF),
    "api_builds.retry_build": Access("api", obj="build", view=MEMBERS, act=STAFF),
    "api_images.list_images": Access("api"),
    "api_images.get_image": Access("api", obj="image", view=MEMBERS),
    "api_images.create_deployment": Access(
        "api",
        obj="image",
        view=MEMBERS,
        act=STAFF,
        data=lambda objects: json_body({**DEPLOY_FORM, "replicas": 1}),
    ),
    "api_deployments.list_deployments": Access("api"),
    "api_deployments.get_deployment": Access("api", obj="deployment", view=MEMBERS),
    "api_deployments.deployment_action": Access(
        "api",
        obj="deployment",
        view=MEMBERS,
        act=OWNERS,
        data=lambda objects: json_body({"action": "restart"}),
    ),
    "api_deployments.deployment_logs": Access("api", obj="deployment", view=MEMBERS),
    "api_deployments.deployment_metrics": Access("api", obj="deployment", view=MEMBERS),
    "api_releases.list_releases": Access("api", obj="deployment", view=MEMBERS),
    "api_releases.get_release": Access("api", obj="release", view=MEMBERS),
    "api_releases.rollback": Access(
        "api", obj="deployment", view=MEMBERS, act=OWNERS, data=lambda objects: json_body({"release": 1})
    ),
    "api_releases.unpin": Access("api", obj="deployment", view=MEMBERS, act=OWNERS),
    "api_releases.approve_release": Access("api", obj="release", view=MEMBERS, act=STAFF),
    "api_releases.reject_release": Access(
        "api", obj="release", view=MEMBERS, act=STAFF, data=lambda objects: json_body({"reason": "not now"})
    ),
    "api_admin.list_users": Access("api", act=ADMIN),
    "api_admin.create_user": Access(
        "api",
        act=ADMIN,
        data=lambda objects: json_body(
            {"username": "matrix-api", "password": "matrix-api-pass-1", "role": "developer"}
        ),
    ),
    "api_admin.get_user": Access("api", obj="user", act=ADMIN),
    "api_admin.block_user": Access("api", obj="user", act=ADMIN),
    "api_admin.unblock_user": Access("api", obj="user", act=ADMIN),
    "api_admin.change_role": Access(
        "api", obj="user", act=ADMIN, data=lambda objects: json_body({"role": "operator"})
    ),
    "api_admin.audit_log": Access("api", act=ADMIN),
}

# The id argument of each object kind in URL rules.
ID_ARGS = {
    "request_id",
    "build_id",
    "image_id",
    "deployment_id",
    "user_id",
    "alert_id",
    "token_id",
    "release_id",
    "channel_id",
}
MISSING_ID = 987654


def _rules(app):
    return [rule for rule in app.url_map.iter_rules()]


def _methods(rule) -> list[str]:
    return sorted(rule.methods - {"HEAD", "OPTIONS"})


# --- the table covers the app --------------------------------------------------------


def test_it_has_a_decision_for_every_route(app):
    missing = sorted({rule.endpoint for rule in _rules(app)} - MATRIX.keys())
    assert not missing, f"decide who may use these routes and add them to MATRIX: {missing}"
    stale = sorted(MATRIX.keys() - {rule.endpoint for rule in _rules(app)})
    assert not stale, f"MATRIX lists routes that no longer exist: {stale}"


def test_it_knows_what_every_url_argument_names(app):
    for rule in _rules(app):
        spec = MATRIX[rule.endpoint]
        ids = set(rule.arguments) & ID_ARGS
        assert len(ids) <= 1 and (
            bool(ids) == (spec.obj is not None) or rule.endpoint == "hooks.commit_hook"
        ), f"{rule.endpoint}: the table's object does not match the URL {rule.rule}"
        for name in set(rule.arguments) - ID_ARGS - {"filename"}:
            converter = rule._converters[name]
            assert set(spec.choices.get(name, {})) == set(converter.items), (
                f"{rule.endpoint}: decide who may use every value of <{name}>"
            )


# --- running one endpoint --------------------------------------------------------------


@dataclass
class Case:
    persona: str
    method: str
    variant: str  # "visible" | "hidden" | "missing" | "-"
    choice: str | None
    expected: str  # "login" | "401" | "404" | "403" | "allowed" | "403|404"
    status: int
    location: str = ""


def _expectation(
    spec: Access, persona: str, method: str, variant: str, choice: str | None, as_json: bool = False
) -> str:
    if spec.kind == "token":
        return "401"
    if persona in ("anonymous", "blocked") and spec.kind != "public":
        return "login" if spec.kind == "page" and not as_json else "401"
    if spec.kind == "public" and spec.obj is None:
        return "allowed"
    act = spec.act_for(method, choice)
    if variant == "missing":
        rel = relation(persona, members=False)
        if spec.obj in VISIBILITY_OBJECTS:
            return "404"
        return "404" if rel in act else "403"
    rel = relation(persona, members=(variant != "hidden"))
    if rel not in spec.view:
        return str(spec.hidden)
    if rel not in act:
        return "403"
    return "allowed"


def _variants(spec: Access) -> tuple[str, ...]:
    if spec.variants is not None:
        return spec.variants
    if spec.obj in VISIBILITY_OBJECTS:
        return ("visible", "hidden", "missing")
    if spec.obj in ROLE_OBJECTS:
        return ("visible", "missing")
    return ("-",)


def _object_id(world: World, spec: Access, variant: str, fresh: bool) -> int | None:
    """The id for the URL; POST cases get objects of their own (an action by one persona
    must not change what the next one meets)."""
    if spec.obj is None or variant == "-":
        return None
    if variant == "missing":
        return MISSING_ID
    db, users = world.db, world.users
    if spec.obj in VISIBILITY_OBJECTS:
        objects = (
            make_object_set(db, users, members=(variant == "visible"))
            if fresh
            else (world.visible if variant == "visible" else world.hidden)
        )
        return objects.id_for(spec.obj)
    if spec.obj == "user":
        return make_target_user(db, f"target-{world.serial()}") if fresh else world.target_user
    if spec.obj == "alert":
        return make_alert(db, world.visible.deployment_id) if fresh else world.alert
    if spec.obj == "channel":  # a fresh one each time: a POST may delete it
        from tests.test_notifications import make_channel

        return make_channel(world.app, db, users, "slack", url="http://127.0.0.1:9/matrix")
    if spec.obj == "token":
        return (
            make_token(world.app, db, users["root"], f"matrix {world.serial()}")[0] if fresh else world.token
        )
    raise AssertionError(spec.obj)


def _url(world: World, rule, spec: Access, object_id: int | None, choice: str | None) -> str:
    values = {}
    for name in rule.arguments:
        if name in ID_ARGS:
            values[name] = object_id
        elif name == "filename":
            values[name] = "css/theme.css"
        else:
            values[name] = choice
    with world.app.test_request_context():
        return url_for(rule.endpoint, **values)


def _call(
    world: World, spec: Access, persona: str, method: str, url: str, variant: str, as_json: bool = False
):
    if spec.new_session:
        # Logging out retires every session of the user: log the cached one in again later.
        world.forget(persona)
        client = world.fresh_client(persona)
    else:
        client = world.client(persona)
    # What the pages' scripts send: they ask for JSON.
    headers = {"Accept": "application/json", "X-Requested-With": "fetch"} if as_json else {}
    if method == "GET":
        if spec.sse:
            response = client.get(url, buffered=False, headers=headers)
            response.close()  # do not wait for lines: the status line is what counts
            return response
        return client.get(url, headers=headers)
    if callable(spec.data):
        objects = world.visible if variant == "visible" else world.hidden
        return client.open(
            url, method=method, data=spec.data(objects), content_type="application/json", headers=headers
        )
    return client.open(url, method=method, data=dict(spec.data or {}), headers=headers)


def _matches(expected: str, spec: Access, method: str, response, as_json: bool = False) -> bool:
    status = response.status_code
    if as_json and expected in ("401", "403", "404") and status == int(expected):
        # A refusal a script can read.
        error = (response.get_json() or {}).get("error") if response.is_json else None
        if isinstance(error, dict):  # under /api: {"error": {"code", "message"}}
            error = error.get("code") and error.get("message")
        return bool(error)
    if expected == "login":
        return status == 302 and response.headers["Location"].startswith("/login")
    if expected == "allowed":
        if status in spec.ok:
            return True
        if method == "GET":
            return 200 <= status < 400
        return status < 500 and status not in (401, 403, 404, 405)
    return status == int(expected)


def run_endpoint(world: World, endpoint: str, as_json: bool = False) -> list[Case]:
    spec = MATRIX[endpoint]
    cases = []
    for rule in [r for r in _rules(world.app) if r.endpoint == endpoint]:
        choices = list(next(iter(spec.choices.values()))) if spec.choices else [None]
        for method in _methods(rule):
            for choice in choices:
                for persona in PERSONA_ORDER:
                    for variant in _variants(spec):
                        object_id = _object_id(world, spec, variant, fresh=(method != "GET"))
                        url = _url(world, rule, spec, object_id, choice)
                        response = _call(world, spec, persona, method, url, variant, as_json)
                        response.close()  # static files are streamed from an open file
                        expected = _expectation(spec, persona, method, variant, choice, as_json)
                        cases.append(
                            Case(
                                persona,
                                method,
                                variant,
                                choice,
                                expected,
                                response.status_code,
                                response.headers.get("Location", ""),
                            )
                        )
                        if not _matches(expected, spec, method, response, as_json):
                            cases[-1].expected = "MISMATCH:" + expected
    return cases


CASES_RUN: list[int] = []


@pytest.mark.parametrize("as_json", [False, True], ids=["browser", "json"])
@pytest.mark.parametrize("endpoint", sorted(MATRIX))
def test_it_grants_exactly_what_the_table_says(world, endpoint, as_json):
    if endpoint not in {rule.endpoint for rule in _rules(world.app)}:
        pytest.fail(f"{endpoint} is in MATRIX but not in the app")
    cases = run_endpoint(world, endpoint, as_json)
    CASES_RUN.append(len(cases))
    wrong = [c for c in cases if c.expected.startswith("MISMATCH:")]
    assert not wrong, f"{endpoint}: {len(wrong)} of {len(cases)} cases differ from the table:\n" + "\n".join(
        f"  {c.method} {c.persona:<9} {c.variant:<7} {c.choice or '':<7} expected "
        f"{c.expected[9:]:<7} got {c.status} {c.location}"
        for c in wrong
    )
    assert cases, f"{endpoint}: no case ran"


def test_it_answers_the_same_for_hidden_and_missing_objects(world):
    """A developer cannot tell a hidden request, build, image or deployment from one
    that does not exist: same status, same body."""
    sam = world.client("sam")
    for path in (
        "/requests/{}",
        "/builds/{}",
        "/images/{}",
        "/deployments/{}",
        "/api/builds/{}/log",
        "/api/deployments/{}/metrics",
    ):
        kind = {"/requests/{}": "request", "/builds/{}": "build", "/images/{}": "image"}.get(path)
        kind = kind or ("build" if "builds" in path else "deployment")
        hidden_url, missing_url = path.format(world.hidden.id_for(kind)), path.format(MISSING_ID)
        hidden, missing = sam.get(hidden_url), sam.get(missing_url)
        assert hidden.status_code == missing.status_code == 404
        assert _normalised(hidden, hidden_url) == _normalised(missing, missing_url), path


def _normalised(response, url: str) -> str:
    """The body without what legitimately differs: the URL itself (the language
    switch comes back to it) and the CSRF token."""
    text = response.get_data(as_text=True).replace(url, "URL")
    return re.sub(r'(name="csrf[-_]token" (?:content|value)=)"[^"]*"', r'\1""', text)


def test_it_restricts_metrics_to_allowed_addresses(world):
    outsider = world.app.test_client()
    response = outsider.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert response.status_code == 403
    assert "error" in response.get_json()


# --- lists: the rows themselves --------------------------------------------------------------

LISTS = {
    "/requests": "data-request-id",
    "/builds": "data-build-id",
    "/images": "data-image-id",
    "/deployments": "data-deployment-id",
}


@pytest.mark.parametrize("persona", ["sam", "carl", "dana", "colin", "oleg", "root"])
def test_it_lists_only_what_each_persona_may_see(auth, db, users, persona):
    """The status codes above say who may open an object; the lists must agree row by row."""
    visible = make_object_set(db, users, members=True)
    hidden = make_object_set(db, users, members=False)
    client = auth.client_for(persona)
    sees_visible = relation(persona, members=True) in MEMBERS
    sees_hidden = relation(persona, members=False) in MEMBERS
    for path, attribute in LISTS.items():
        body = client.get(path).get_data(as_text=True)
        listed = {int(i) for i in re.findall(rf'{attribute}="(\d+)"', body)}
        kind = {"/requests": "request", "/builds": "build", "/images": "image", "/deployments": "deployment"}[
            path
        ]
        assert (visible.id_for(kind) in listed) == sees_visible, (path, persona)
        assert (hidden.id_for(kind) in listed) == sees_hidden, (path, persona)
        if kind == "request":
            assert (visible.draft_request_id in listed) == sees_visible, (path, persona)
    # Recent events on the dashboard: an event about each request, linked only for those who see it.
    for objects in (visible, hidden):
        # (an approved request's next status is draft: approval is undone by sending it back)
        auth.client_for("oleg").post(f"/requests/{objects.request_id}/status", data={"status": "draft"})
    recent = client.get("/dashboard").get_data(as_text=True)
    for objects, seen in ((visible, sees_visible), (hidden, sees_hidden)):
        assert (f'href="/requests/{objects.request_id}"' in recent) == seen, (persona, recent[-3000:])


# --- the hook's "Simulate new commit" button ----------------------------------------------------


def test_a_developers_simulated_commit_reaches_only_what_they_may_see(auth, db, users, sample):
    """Another team's request on the same repository and branch: a developer's button
    press neither restarts its deployments nor names them in the answer."""
    other_request = factories.make_request(db, owner_id=users["ann"], status="approved")  # same repository
    other_image = factories.make_image(db, request_id=other_request)
    other_deployment = factories.make_deployment(db, image_id=other_image, name="ann-dev")
    response = auth.client_for("dana").post(
        "/api/hooks/commit",
        data=json_body(
            {"repo_url": "https://github.com/acme/billing.git", "branch": "main", "commit": "c0ffee1"}
        ),
        content_type="application/json",
    )
    assert response.status_code == 200, response.get_json()
    data = response.get_json()
    assert data["matched_requests"] == [sample["request_id"]]
    assert data["restarted_deployments"] == [sample["deployment_id"]]
    assert (
        db.execute("SELECT status FROM deployments WHERE id = ?", (other_deployment,)).fetchone()[0]
        == "running"
    )
    # Staff pressing the same button reach everything, as a real commit would.
    response = auth.client_for("oleg").post(
        "/api/hooks/commit",
        data=json_body(
            {"repo_url": "https://github.com/acme/billing.git", "branch": "main", "commit": "c0ffee2"}
        ),
        content_type="application/json",
    )
    assert set(response.get_json()["matched_requests"]) == {sample["request_id"], other_request}


def test_a_developers_simulated_commit_does_not_swallow_the_real_one(app, auth, db, users, sample):
    """The button reached dana's request only, so when the git host delivers the same
    commit it is not a duplicate: the other team's deployment restarts then."""
    other_request = factories.make_request(db, owner_id=users["ann"], status="approved")
    other_deployment = factories.make_deployment(
        db, image_id=factories.make_image(db, request_id=other_request), name="ann-dev"
    )
    body = json_body(
        {"repo_url": "https://github.com/acme/billing.git", "branch": "main", "commit": "c0ffee3"}
    )
    simulated = auth.client_for("dana").post("/api/hooks/commit", data=body, content_type="application/json")
    assert simulated.get_json()["outcome"] == "processed"
    token = make_token(app, db, users["root"], "ci")[1]
    real = app.test_client().post(
        "/api/hooks/commit",
        data=body,
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
        csrf=False,
    )
    assert real.get_json()["outcome"] == "processed", real.get_json()
    assert other_deployment in real.get_json()["restarted_deployments"]
