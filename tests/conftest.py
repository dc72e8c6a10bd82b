"""Shared fixtures: an app on a temporary instance folder, personas, a CSRF-aware
client, and an engine driven by a fake clock."""

from __future__ import annotations

import functools
import random
import shutil
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from itsdangerous import URLSafeTimedSerializer
from werkzeug.security import generate_password_hash

from samosval import create_app
from samosval.db import connect, init_db_if_needed
from samosval.security import limiter

# Real receivers (HTTP, SMTP) for the notification tests, and real PostgreSQL and
# Redis servers (tests/servers.py), as fixtures.
pytest_plugins = ["tests.notify_receivers", "tests.servers"]

PASSWORD = "password123"

# The people tests act as. ``carl`` files requests that ``dana`` owns and
# ``colin`` collaborates on; ``sam`` is a developer with no link to them.
PERSONAS = {
    "oleg": "operator",
    "dana": "developer",  # owner of the sample request
    "carl": "developer",  # creator of the sample request
    "colin": "developer",  # collaborator on the sample request
    "sam": "developer",  # unrelated developer
    "joanna": "developer",  # a login that contains "ann", for substring checks
    "ann": "developer",
    "bob": "developer",  # blocked
    "alice": "admin",
}


# Tests that start real servers or browsers are marked here, so that the fast local
# loop ``bash scripts/test.sh -m "not slow and not browser"`` leaves them out without
# every file having to remember its marker: whole folders, and any other module that
# uses the helpers which start the app (or gunicorn) in a subprocess.
FOLDER_MARKERS = {"browser": "browser", "e2e": "browser", "reliability": "slow"}
SERVER_HELPERS = ("AppProcess", "NginxProcess", "die_with_parent")


def pytest_collection_modifyitems(config, items):
    tests_dir = Path(__file__).resolve().parent
    for item in items:
        relative = item.path.relative_to(tests_dir) if item.path.is_relative_to(tests_dir) else item.path
        marker = FOLDER_MARKERS.get(relative.parts[0]) if len(relative.parts) > 1 else None
        module = getattr(item, "module", None)
        if marker is None and any(hasattr(module, name) for name in SERVER_HELPERS):
            marker = "slow"
        if marker:
            item.add_marker(marker)


# Werkzeug's default (scrypt) costs ~0.1 s per hash and per check: most of the
# suite's time. Tests hash with a cheap PBKDF2 instead; production code is untouched
# (tests/test_db.py checks the real default separately).
FAST_HASH_METHOD = "pbkdf2:sha256:1000"
fast_password_hash = functools.partial(generate_password_hash, method=FAST_HASH_METHOD)


@pytest.fixture(autouse=True, scope="session")
def fast_password_hashing():
    import samosval.db
    import samosval.domain.users as users_module

    saved = (
        samosval.db.generate_password_hash,
        users_module.generate_password_hash,
        users_module._DUMMY_HASH,
    )
    samosval.db.generate_password_hash = fast_password_hash
    users_module.generate_password_hash = fast_password_hash
    # The dummy hash must cost what a real one costs, or login timing would differ.
    users_module._DUMMY_HASH = fast_password_hash("samosval-dummy-password")
    yield
    samosval.db.generate_password_hash, users_module.generate_password_hash, users_module._DUMMY_HASH = saved


@functools.cache
def _password_hash() -> str:
    return fast_password_hash(PASSWORD)


class CSRFClient(FlaskClient):
    """A test client that sends a valid CSRF header with every state-changing call,
    unless the call passes ``csrf=False`` (to test the refusal)."""

    def csrf_token(self) -> str:
        with self.session_transaction() as sess:
            if "csrf_token" not in sess:
                import hashlib
                import os

                sess["csrf_token"] = hashlib.sha1(os.urandom(64)).hexdigest()
            raw = sess["csrf_token"]
        return URLSafeTimedSerializer(self.application.secret_key, salt="wtf-csrf-token").dumps(raw)

    def open(self, *args, **kwargs):
        send_csrf = kwargs.pop("csrf", True)
        method = (kwargs.get("method") or "GET").upper()
        if send_csrf and method in {"POST", "PUT", "PATCH", "DELETE"}:
            headers = dict(kwargs.pop("headers", None) or {})
            headers.setdefault("X-CSRFToken", self.csrf_token())
            kwargs["headers"] = headers
        return super().open(*args, **kwargs)


class FakeClock:
    """A clock the tests move by hand."""

    def __init__(self, start: float = 1_800_000_000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@pytest.fixture(scope="session")
def template_database(fast_password_hashing, tmp_path_factory) -> Path:
    """The schema (and ``root``) built once per session; each test gets a copy.

    ``create_app`` still runs ``init_db_if_needed`` on the copy: it finds the schema
    up to date and root present, so it changes nothing."""
    path = tmp_path_factory.mktemp("template") / "samosval.sqlite3"
    init_db_if_needed(str(path), "root")
    return path


def fresh_database(template: Path, directory: Path) -> str:
    """A copy of the template database in ``directory`` (WAL was checkpointed when the
    template's last connection closed, so the main file is the whole database)."""
    path = directory / "samosval.sqlite3"
    shutil.copyfile(template, path)
    return str(path)


@pytest.fixture
def app(tmp_path, template_database):
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test-secret-key",
            "DATABASE": fresh_database(template_database, tmp_path),
            "SIMULATOR_AUTOSTART": False,
            "CHARTJS_URL": "/static/vendor/chart.umd.min.js",
            "CHARTJS_SRI": None,
        },
        instance_path=str(tmp_path / "instance"),
    )
    app.test_client_class = CSRFClient
    limiter.reset()  # the limiter's memory storage outlives one app
    yield app
    limiter.reset()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def db(app):
    conn = connect(app.config["DATABASE"])
    yield conn
    conn.close()


def add_personas(db) -> dict[str, int]:
    """Insert the personas (bob blocked); returns username -> id, root included.

    Inserted directly with one precomputed hash: hashing nine passwords per test
    would dominate the suite's run time. User creation itself is tested elsewhere."""
    ids = {"root": db.execute("SELECT id FROM users WHERE username='root'").fetchone()[0]}
    for username, role in PERSONAS.items():
        ids[username] = db.execute(
            "INSERT INTO users (username, password_hash, role, is_active, created_at) "
            "VALUES (?, ?, ?, 1, '2026-01-01T00:00:00Z')",
            (username, _password_hash(), role),
        ).lastrowid
    db.execute("UPDATE users SET is_active = 0 WHERE username = 'bob'")
    return ids


@pytest.fixture
def users(app, db):
    """The personas in this test's database."""
    return add_personas(db)


class Auth:
    def __init__(self, app):
        self.app = app
        self._clients = {}

    def login(self, client, username: str, password: str = PASSWORD):
        return client.post("/login", data={"username": username, "password": password})

    def client_for(self, username: str) -> CSRFClient:
        """A separate logged-in client per persona (like separate browsers)."""
        if username not in self._clients:
            client = self.app.test_client()
            password = "root" if username == "root" else PASSWORD
            response = self.login(client, username, password)
            assert response.status_code == 302, f"login as {username} failed"
            self._clients[username] = client
        return self._clients[username]


@pytest.fixture
def auth(app, users):
    return Auth(app)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def rng():
    return random.Random(1234)


@pytest.fixture
def engine(app, clock, rng):
    """The app's engine, rebuilt on a fake clock and a seeded RNG. Tests call
    ``engine.step(clock.advance(seconds))``; no thread runs."""
    from samosval.simulator.runtime import build_engine

    runtime = app.extensions["samosval"]
    runtime.engine = build_engine(app, runtime.state, clock=clock, rng=rng)
    return runtime.engine


@pytest.fixture
def sample(db, users):
    """A request filed by carl, owned by dana, with colin collaborating; approved,
    built into an image, deployed once and running."""
    from tests import factories

    request_id = factories.make_request(
        db, owner_id=users["dana"], created_by=users["carl"], collaborators="colin", status="approved"
    )
    image_id = factories.make_image(db, request_id=request_id)
    deployment_id = factories.make_deployment(db, image_id=image_id, created_by=users["oleg"])
    return {"request_id": request_id, "image_id": image_id, "deployment_id": deployment_id}
