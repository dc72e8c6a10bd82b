"""Shared pieces of the security suite: the people every test acts as, fresh sets of
objects they may or may not see, and helpers that count rows so a refused input can
be shown to have written nothing.

The authorization matrix sends hundreds of requests, so it uses one app per module
(``world``) with every persona logged in once; the other files use the per-test
``app``/``auth``/``sample`` fixtures of ``tests/conftest.py``.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass

import pytest

from samosval import create_app
from samosval.db import connect
from samosval.domain import tokens as token_domain
from samosval.security import limiter
from tests import factories
from tests.conftest import PASSWORD, Auth, CSRFClient, _password_hash, add_personas

# Who the matrix acts as, and what each one is to the sample request (filed by
# carl, owned by dana, colin collaborating). ``blocked`` is bob, logged in while
# active and blocked afterwards; ``anonymous`` has no session at all.
PERSONA_ORDER = ("anonymous", "blocked", "sam", "carl", "dana", "colin", "oleg", "root")
RELATION = {
    "sam": "stranger",
    "carl": "creator",
    "dana": "owner",
    "colin": "collaborator",
    "oleg": "operator",
    "root": "admin",
}
STAFF_RELATIONS = ("operator", "admin")

# Tables a hostile input could leave half-written.
COUNTED_TABLES = (
    "users",
    "image_requests",
    "request_collaborators",
    "builds",
    "images",
    "deployments",
    "alerts",
    "audit_log",
    "webhook_tokens",
    "webhook_deliveries",
    "releases",
)

LONG_FUZZ = os.environ.get("SAMOSVAL_LONG_FUZZ") == "1"

HIDDEN_REPO = "https://github.com/acme/secret-ledger.git"


def relation(persona: str, members: bool) -> str:
    """What ``persona`` is to an object set: the sample's people are strangers to the
    hidden set, staff are staff everywhere."""
    rel = RELATION[persona]
    if not members and rel not in STAFF_RELATIONS:
        return "stranger"
    return rel


def row_counts(db) -> dict[str, int]:
    return {table: db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for table in COUNTED_TABLES}


@dataclass
class ObjectSet:
    """One request with everything hanging off it. ``members=True`` is the sample's
    shape (carl files, dana owns, colin collaborates); ``False`` belongs to ann only."""

    request_id: int
    draft_request_id: int
    build_id: int
    image_id: int
    deployment_id: int
    repo_url: str
    release_id: int  # v3 of the deployment, waiting for approval (v1 ran, v2 runs)

    def id_for(self, kind: str) -> int:
        return {
            "request": self.request_id,
            "draft_request": self.draft_request_id,
            "build": self.build_id,
            "image": self.image_id,
            "deployment": self.deployment_id,
            "release": self.release_id,
        }[kind]


def make_object_set(db, users, *, members: bool) -> ObjectSet:
    if members:
        people = dict(owner_id=users["dana"], created_by=users["carl"], collaborators="colin")
        repo = "https://github.com/acme/billing.git"
    else:
        people = dict(owner_id=users["ann"], created_by=users["ann"], collaborators="")
        repo = HIDDEN_REPO
    request_id = factories.make_request(db, status="approved", repo_url=repo, **people)
    draft_id = factories.make_request(db, status="draft", repo_url=repo, **people)
    image_id = factories.make_image(db, request_id=request_id)
    build_id = factories.make_build(db, request_id=request_id, built_by=users["oleg"], status="queued")
    deployment_id = factories.make_deployment(db, image_id=image_id, created_by=users["oleg"])
    factories.make_release(db, deployment_id=deployment_id, number=1, commit="a" * 40)
    factories.make_release(db, deployment_id=deployment_id, number=2, commit="b" * 40, current=True)
    release_id = factories.make_release(
        db,
        deployment_id=deployment_id,
        number=3,
        status="pending_approval",
        commit="c" * 40,
        trigger="webhook",
        cause="commit",
        created_by=people["owner_id"],
    )
    return ObjectSet(request_id, draft_id, build_id, image_id, deployment_id, repo, release_id)


def make_target_user(db, name: str) -> int:
    return db.execute(
        "INSERT INTO users (username, password_hash, role, is_active, created_at) "
        "VALUES (?, ?, 'developer', 1, '2026-01-01T00:00:00Z')",
        (name, _password_hash()),
    ).lastrowid


def make_alert(db, deployment_id: int, message: str = "billing-dev failed") -> int:
    return db.execute(
        "INSERT INTO alerts (alert_type, target_type, target_id, message, resolved, created_at) "
        "VALUES ('deployment_failed', 'deployment', ?, ?, 0, '2026-01-01T00:00:00Z')",
        (deployment_id, message),
    ).lastrowid


def make_token(app, db, actor_id: int, name: str = "ci") -> tuple[int, str]:
    return token_domain.create_token(
        db, name, secret_key=app.secret_key, actor_id=actor_id, now=1_800_000_000.0
    )


def build_app(instance_dir, database_config: dict | None = None) -> object:
    """An app configured like tests/conftest.py's, with login and hook rate limits out
    of the way (the matrix logs personas in again after a logout; timing tests log in
    20 times; the long fuzz calls the hook hundreds of times).
    ``database_config``: from the ``databases`` fixture (the session's back-end)."""
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test-secret-key",
            "DATABASE": str(instance_dir / "samosval.sqlite3"),
            **(database_config or {}),
            "SIMULATOR_AUTOSTART": False,
            "CHARTJS_URL": "/static/vendor/chart.umd.min.js",
            "CHARTJS_SRI": None,
            "LOGIN_RATE_LIMIT_IP": "100000 per minute",
            "LOGIN_RATE_LIMIT_USER": "100000 per minute",
            "LOGIN_DELAY_AFTER_FAILURES": 100000,
            "HOOK_RATE_LIMIT": "100000 per minute",  # the long fuzz sends hundreds of calls
        },
        instance_path=str(instance_dir / "instance"),
    )
    app.test_client_class = CSRFClient
    return app


class World:
    """One app for a whole module: personas logged in once, objects made on demand."""

    def __init__(self, app, db, users):
        self.app = app
        self.db = db
        self.users = users
        self._auth = Auth(app)
        self._clients: dict[str, CSRFClient] = {}
        self._serial = 0
        # Shared, never mutated: GET requests read these.
        self.visible = make_object_set(db, users, members=True)
        self.hidden = make_object_set(db, users, members=False)
        self.target_user = make_target_user(db, "target-user")
        self.alert = make_alert(db, self.visible.deployment_id)
        self.token, _plain = make_token(app, db, users["root"])

    def serial(self) -> int:
        self._serial += 1
        return self._serial

    def client(self, persona: str) -> CSRFClient:
        if persona not in self._clients:
            self._clients[persona] = self.fresh_client(persona)
        return self._clients[persona]

    def forget(self, persona: str) -> None:
        self._clients.pop(persona, None)

    def fresh_client(self, persona: str) -> CSRFClient:
        if persona == "anonymous":
            return self.app.test_client()
        if persona == "blocked":
            # Logged in while active, then blocked behind the session's back (no
            # session_version bump): the cookie must stop working all the same.
            self.db.execute("UPDATE users SET is_active = 1 WHERE username = 'bob'")
            client = self.app.test_client()
            response = self._auth.login(client, "bob", PASSWORD)
            self.db.execute("UPDATE users SET is_active = 0 WHERE username = 'bob'")
            assert response.status_code == 302, "bob could not log in before being blocked"
            return client
        client = self.app.test_client()
        response = self._auth.login(client, persona, "root" if persona == "root" else PASSWORD)
        assert response.status_code == 302, f"login as {persona} failed"
        return client


@pytest.fixture(scope="module")
def world(tmp_path_factory, databases):
    instance_dir = tmp_path_factory.mktemp("security")
    database_config = databases.config(instance_dir)
    app = build_app(instance_dir, database_config)
    limiter.reset()  # its storage exists once an app has been made
    db = connect(app.config["DATABASE"])
    try:
        yield World(app, db, add_personas(db))
    finally:
        db.close()
        limiter.reset()
        databases.discard(database_config["DATABASE"])


def json_body(data) -> bytes:
    return json.dumps(data).encode()


# When a hypothesis test fails, its pytest plugin imports libcst to suggest a patch;
# that import warns (mypy_extensions.TypedDict), and the suite's warnings-as-errors
# would then replace the real failure with an INTERNALERROR. Import it quietly now.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import hypothesis.extra._patching  # noqa: F401
    except ImportError:  # libcst missing: hypothesis skips the patch, nothing to do
        pass
