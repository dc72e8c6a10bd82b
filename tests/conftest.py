"""Shared fixtures: an app on a temporary instance folder, personas, a CSRF-aware
client, and an engine driven by a fake clock.

The suite runs on one of two back-ends, chosen by ``SAMOSVAL_TEST_BACKEND``:
``sqlite`` (the default: each test gets a copy of a template SQLite file, in-process
buffers) or ``postgres`` (each test gets a fresh PostgreSQL database copied from a
template database, and the session's Redis under a key prefix of its own; the
servers come from tests/servers.py). ``scripts/test.sh`` runs both passes."""

from __future__ import annotations

import functools
import itertools
import os
import queue
import random
import shutil
import threading
import time
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from itsdangerous import URLSafeTimedSerializer
from werkzeug.security import generate_password_hash

from samosval import create_app
from samosval import db as samosval_db
from samosval.db import connect, init_db_if_needed
from samosval.security import limiter

# Real receivers (HTTP, SMTP) for the notification tests, and real PostgreSQL and
# Redis servers (tests/servers.py), as fixtures.
pytest_plugins = ["tests.notify_receivers", "tests.servers"]

PASSWORD = "password123"

BACKENDS = ("sqlite", "postgres")
TEST_BACKEND = os.environ.get("SAMOSVAL_TEST_BACKEND", "sqlite")
ON_POSTGRES = TEST_BACKEND == "postgres"

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


def pytest_configure(config):
    if TEST_BACKEND not in BACKENDS:
        raise pytest.UsageError(
            f"SAMOSVAL_TEST_BACKEND must be one of {', '.join(BACKENDS)}, not {TEST_BACKEND!r}"
        )


def pytest_report_header(config):
    if ON_POSTGRES:
        return (
            "samosval test backend: postgres (a PostgreSQL database per test, Redis with a prefix per test)"
        )
    return "samosval test backend: sqlite"


# The PostgreSQL pass runs exactly the tests whose outcome can depend on the backend:
# those that use the per-test database (the ``databases`` fixture, usually through
# ``app``, or ``live_backend`` for the app in a subprocess: tests/live.py). It leaves
# out tests of SQLite itself, and tests that never touch the test database: pure unit
# tests, and tests that start their own servers (their own database, or the app in a
# subprocess on a SQLite file); those would only repeat the SQLite pass.
POSTGRES_PASS_SKIPS = {
    "sqlite_only": "checks SQLite itself",
    "backend_neutral": "does not depend on the backend: runs in the SQLite pass",
}
NOT_ON_THE_TEST_DATABASE = (
    "does not use the test database (the same on both backends): runs in the SQLite pass"
)


def postgres_pass_skip(item) -> str | None:
    for name, reason in POSTGRES_PASS_SKIPS.items():
        if item.get_closest_marker(name):
            return f"{name}: {reason}"
    if "databases" not in getattr(item, "fixturenames", ()):
        return NOT_ON_THE_TEST_DATABASE
    return None


def pytest_collection_modifyitems(config, items):
    tests_dir = Path(__file__).resolve().parent
    for item in items:
        if ON_POSTGRES and (reason := postgres_pass_skip(item)):
            item.add_marker(pytest.mark.skip(reason=reason))
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


POSTGRES_TEMPLATE = "samosval_template"


class Databases:
    """Fresh databases on the session's back-end, for the ``app`` fixture and for
    fixtures that build their own app (``database_config`` gives the config keys).

    On PostgreSQL each database is ``CREATE DATABASE ... TEMPLATE`` of one built per
    session (schema and ``root``). A background thread creates the next ones ahead of
    the tests and drops used ones (a drop also waits, in 100 ms steps, for the
    backends of just-closed connections to exit), so a test waits for neither. The
    costs are summed up at the end of the run."""

    PREPARED = 2  # databases kept ready ahead of the tests

    def __init__(self, sqlite_template: Path, postgres=None, redis=None):
        self.sqlite_template = sqlite_template
        self.postgres = postgres
        self.redis = redis
        self._numbers = itertools.count(1)
        self.created = 0
        self.create_seconds = 0.0
        self.drop_seconds = 0.0
        self.wait_seconds = 0.0
        self._jobs: queue.Queue[str | None] = queue.Queue()  # "" creates, a name drops
        self._ready: queue.Queue[str | None] = queue.Queue()  # None: the create failed
        self._worker = None
        if postgres is not None:
            init_db_if_needed(postgres.create_database(POSTGRES_TEMPLATE), "root")
            samosval_db.close_pools()
            # A template must have no sessions while it is copied; refuse new ones.
            postgres.execute(
                f"ALTER DATABASE {POSTGRES_TEMPLATE} WITH ALLOW_CONNECTIONS false IS_TEMPLATE true"
            )
            postgres.disconnect_all(POSTGRES_TEMPLATE)
            self._worker = threading.Thread(target=self._work, name="test-databases", daemon=True)
            self._worker.start()
            for _ in range(self.PREPARED):
                self._jobs.put("")

    def _create(self) -> str:
        started = time.perf_counter()
        name = f"test_{next(self._numbers)}"
        self.postgres.create_database(name, template=POSTGRES_TEMPLATE)
        self.create_seconds += time.perf_counter() - started
        return name

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            if job == "":
                try:
                    self._ready.put(self._create())
                except Exception:
                    self._ready.put(None)  # e.g. a test has the server stopped: fresh() retries
                continue
            started = time.perf_counter()
            try:
                self.postgres.drop_database(job)
            except Exception:
                pass  # a test that stopped the server leaves its database behind: harmless
            self.drop_seconds += time.perf_counter() - started

    def fresh(self, directory: Path) -> str:
        """A new database: a SQLite file in ``directory``, or a PostgreSQL URL."""
        if self.postgres is None:
            return fresh_database(self.sqlite_template, directory)
        started = time.perf_counter()
        try:
            name = self._ready.get(timeout=30)
        except queue.Empty:
            name = None
        self._jobs.put("")
        if name is None:
            name = self._create()
        self.wait_seconds += time.perf_counter() - started
        self.created += 1
        return self.postgres.database_url(name)

    def discard(self, target: str) -> None:
        """Drop a database made by :meth:`fresh` (SQLite files go with their folder)."""
        if self.postgres is None:
            return
        samosval_db.close_pools()  # the app's pooled connections to it
        self._jobs.put(target.rsplit("/", 1)[1])

    def close(self) -> None:
        """Finish the pending work (the session's end)."""
        if self._worker is not None:
            self._jobs.put(None)
            self._worker.join(60)

    def config(self, directory: Path) -> dict:
        """The config keys of a fresh back-end: ``DATABASE`` and, on PostgreSQL, Redis
        with a key prefix of its own (tests share the server instead of flushing it)."""
        config = {"DATABASE": self.fresh(directory)}
        if self.redis is not None:
            config["REDIS_URL"] = self.redis.url
            config["REDIS_PREFIX"] = f"samosval-test-{self.created}:"
        return config

    def summary(self) -> str | None:
        if not self.created:
            return None

        def each(seconds: float) -> str:
            return f"{1000 * seconds / self.created:.1f} ms"

        return (
            f"PostgreSQL test databases: {self.created}; in the background {each(self.create_seconds)} "
            f"to create and {each(self.drop_seconds)} to drop each; a test waited {each(self.wait_seconds)} "
            "for its database on average"
        )


_databases: list[Databases] = []


@pytest.fixture(scope="session")
def databases(request, template_database) -> Databases:
    if ON_POSTGRES:
        postgres = request.getfixturevalue("postgres_server")
        redis = request.getfixturevalue("redis_server")
        result = Databases(template_database, postgres, redis)
    else:
        result = Databases(template_database)
    _databases.append(result)
    yield result
    result.close()


def pytest_terminal_summary(terminalreporter):
    for databases in _databases:
        if databases.summary():
            terminalreporter.write_line(databases.summary())


@pytest.fixture
def database_config(tmp_path, databases):
    """``DATABASE`` (and Redis) config keys of a fresh database, dropped after the test."""
    config = databases.config(tmp_path)
    yield config
    databases.discard(config["DATABASE"])


@pytest.fixture
def live_backend(request, databases):
    """What an app started in a subprocess (tests/live.py ``AppProcess(backend=...)``)
    runs on: None on SQLite (the app creates its own file, as on a first start);
    in the PostgreSQL pass the ``database_config`` of a fresh database and Redis prefix."""
    return request.getfixturevalue("database_config") if ON_POSTGRES else None


@pytest.fixture
def app(tmp_path, database_config):
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test-secret-key",
            **database_config,
            "SIMULATOR_AUTOSTART": False,
            "CHARTJS_URL": "/static/vendor/chart.umd.min.js",
            "CHARTJS_SRI": None,
        },
        instance_path=str(tmp_path / "instance"),
    )
    app.test_client_class = CSRFClient
    limiter.reset()  # the limiter's memory storage outlives one app
    yield app
    app.extensions["samosval"].state.close()  # Redis: its reader, writer and connections
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
