"""Demo mode (``python app.py --demo`` or ``SAMOSVAL_DEMO=1``): fill a fresh database
with a small, living company so a newcomer sees every page at work in seconds.

Everything goes through the domain functions the UI uses (validation, Dockerfile,
repo_key, collaborators, audit rows), and the builds and rollouts are played by
the real simulation engine on a story clock (days pass between events), so every row is one the system
could have produced itself. The app's own engine is paused meanwhile (two engines
must never work on the same rows) and resumed afterwards; then one build and one
rollout are started live, so something is moving when the first page opens.

It refuses, changing nothing, when the database holds anything besides root.
"""

from __future__ import annotations

import json
import random
import secrets
import time

from .auth import User
from .db import connect
from .domain import builds as build_domain
from .domain import deployments as deployment_domain
from .domain import environments as environment_domain
from .domain import hook_auth, hook_effects, hook_parsing
from .domain import images as image_domain
from .domain import releases as release_domain
from .domain import requests as request_domain
from .domain import tokens as token_domain
from .domain import users as user_domain
from .simulator import runtime as sim_runtime
from .simulator import textgen
from .simulator.engine import SimulationEngine
from .simulator.state import SimulationState

# (username, role). Passwords are random and printed once.
DEMO_USERS = (("maria", "developer"), ("ivan", "developer"), ("olga", "operator"), ("nadia", "admin"))

# Fake seconds of metric history simulated up front, so charts are drawn at once
# (the deployment page shows the last 15 minutes).
METRIC_HISTORY_SECONDS = 900

# The story is spread over the past days (the dashboard's trends cover 14), and
# ends this long before the demo starts.
HISTORY_DAYS = 12
HISTORY_END_GAP = 2 * 3600

# The live build lasts about this long (seconds), so the visitor sees it move.
LIVE_BUILD_SECONDS = 40.0

# Tables that must be empty (users: root only) for the demo to run.
CHECKED_TABLES = (
    "image_requests",
    "images",
    "builds",
    "deployments",
    "alerts",
    "webhook_tokens",
    "webhook_deliveries",
)


def _request(
    image_name,
    version_tag,
    repo,
    *,
    base_image,
    run_commands,
    entrypoint,
    ram_mb,
    vcpu,
    owner,
    collaborators="",
    update_mode="continuous",
    target_commit="",
    branch="main",
):
    return {
        "image_name": image_name,
        "version_tag": version_tag,
        "repo_url": repo,
        "repo_branch": branch,
        "update_mode": update_mode,
        "target_commit": target_commit,
        "base_image": base_image,
        "run_commands": run_commands,
        "entrypoint": entrypoint,
        "ram_mb": str(ram_mb),
        "vcpu": str(vcpu),
        "owner": owner,
        "collaborators": collaborators,
    }


# key -> (creator, final status, form values)
DEMO_REQUESTS = {
    "payments": (
        "maria",
        "approved",
        _request(
            "payments-api",
            "2.4.1",
            "https://github.com/acme/payments-api.git",
            base_image="python:3.12-slim",
            run_commands="pip install --no-cache-dir -r requirements.txt\npython -m compileall -q app",
            entrypoint="gunicorn --workers 4 --bind 0.0.0.0:8000 app.wsgi:app",
            ram_mb=1024,
            vcpu=1,
            owner="maria",
            collaborators="ivan",
        ),
    ),
    "frontend": (
        "ivan",
        "approved",
        _request(
            "web-frontend",
            "1.8.0",
            "https://gitlab.com/acme/web-frontend.git",
            base_image="node:20-alpine",
            run_commands="npm ci\nnpm run build",
            entrypoint="node server.js",
            ram_mb=512,
            vcpu=0.5,
            owner="ivan",
            collaborators="maria",
        ),
    ),
    "reports": (
        "maria",
        "approved",
        _request(
            "report-generator",
            "0.9.3",
            "git@github.com:acme/report-generator.git",
            base_image="python:3.11-slim",
            run_commands="pip install -r requirements.txt",
            entrypoint="python -m reports.scheduler",
            ram_mb=2048,
            vcpu=2,
            owner="maria",
            update_mode="static",
            target_commit="9f3c2a1d7be04c55e1a2f6b8d9c0e7a4b3f21d08",
        ),
    ),
    "scoring": (
        "ivan",
        "approved",
        _request(
            "ml-scoring",
            "0.3.0",
            "https://github.com/acme/ml-scoring.git",
            base_image="python:3.12",
            run_commands="pip install -r requirements.txt\npytest -q",
            entrypoint="uvicorn scoring.api:app --host 0.0.0.0 --port 9000",
            ram_mb=4096,
            vcpu=4,
            owner="ivan",
            collaborators="maria",
        ),
    ),
    "gateway": (
        "maria",
        "approved",
        _request(
            "auth-gateway",
            "3.2.0",
            "https://github.com/acme/auth-gateway.git",
            base_image="golang:1.22-alpine",
            run_commands="go mod download\ngo build -o /app/gateway ./cmd/gateway",
            entrypoint="/app/gateway --listen :8443",
            ram_mb=256,
            vcpu=0.5,
            owner="maria",
        ),
    ),
    "indexer": (
        "maria",
        "in_review",
        _request(
            "search-indexer",
            "1.0.0-rc1",
            "https://github.com/acme/search-indexer.git",
            base_image="eclipse-temurin:21-jre",
            run_commands="./gradlew --no-daemon build",
            entrypoint="java -jar build/libs/indexer.jar",
            ram_mb=3072,
            vcpu=2,
            owner="maria",
            collaborators="ivan",
            branch="release/1.0",
        ),
    ),
    "notify": (
        "ivan",
        "submitted",
        _request(
            "notification-worker",
            "0.1.0",
            "https://github.com/acme/notification-worker.git",
            base_image="python:3.12-slim",
            run_commands="pip install -r requirements.txt",
            entrypoint="celery -A notify worker --concurrency 4",
            ram_mb=512,
            vcpu=1,
            owner="ivan",
        ),
    ),
    "billing": (
        "maria",
        "draft",
        _request(
            "billing-api",
            "0.0.1",
            "https://github.com/acme/billing-api.git",
            base_image="python:3.12-slim",
            run_commands="pip install -r requirements.txt",
            entrypoint="gunicorn app:app",
            ram_mb=512,
            vcpu=0.5,
            owner="maria",
            collaborators="ivan",
        ),
    ),
    "cron": (
        "ivan",
        "rejected",
        _request(
            "legacy-cron",
            "2019.1",
            "https://git.acme.internal/ops/legacy-cron.git",
            base_image="ubuntu:18.04",
            run_commands="apt-get update\napt-get install -y cron",
            entrypoint="cron -f",
            ram_mb=128,
            vcpu=0.25,
            owner="ivan",
        ),
    ),
}

# The statuses each request passes through after its draft, and who moves it.
STATUS_PATHS = {
    "draft": (),
    "submitted": (("owner", "submitted"),),
    "in_review": (("owner", "submitted"), ("olga", "in_review")),
    "approved": (("owner", "submitted"), ("olga", "in_review"), ("olga", "approved")),
    "rejected": (("owner", "submitted"), ("olga", "in_review"), ("olga", "rejected")),
}


class _SeedEngine(SimulationEngine):
    """The real engine, minus runtime output (days of it would be millions of lines).
    That output comes from the app's own engine (live) and from the history pass
    (metrics only)."""

    def _generate_runtime(self, now, counts):
        pass


class _Clock:
    """The story's clock. ``tick`` moves it a little (a step of the seed engine, or
    the next click); ``later`` jumps hours ahead, as between two events of a working
    week. It never passes ``end``."""

    def __init__(self, start: float | None = None, end: float | None = None, rng=None):
        self.now = time.time() if start is None else start
        self.end = end
        self.rng = rng or random.Random()

    def __call__(self) -> float:
        return self.now

    def tick(self, step: float = 0.05) -> float:
        self.now += step
        if self.end is not None:
            self.now = min(self.now, self.end)
        return self.now

    def later(self, low_hours: float, high_hours: float) -> float:
        """Jump ahead by a random number of hours (less when the end is near)."""
        jump = self.rng.uniform(low_hours, high_hours) * 3600
        if self.end is not None:
            jump = min(jump, max(0.0, (self.end - self.now) / 4))
        self.now += jump
        return self.now


def existing_data(db) -> dict[str, int]:
    """What the database holds besides root (empty dict: fresh)."""
    found = {}
    users = db.execute("SELECT COUNT(*) FROM users WHERE username != 'root'").fetchone()[0]
    if users:
        found["users"] = users
    for table in CHECKED_TABLES:
        count = db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]  # names are constants
        if count:
            found[table] = count
    return found


class DemoRefused(Exception):
    """The database already has data: demo mode changes nothing (``lines`` say why)."""

    def __init__(self, lines: list[str]):
        super().__init__(lines[0])
        self.lines = lines


def seed_demo(app) -> list[str]:
    """Fill a fresh database with demo data; returns the lines to print (passwords
    included). On a database with data, raises :class:`DemoRefused` and changes nothing."""
    db = connect(app.config["DATABASE"])
    try:
        found = existing_data(db)
        if found:
            listed = ", ".join(f"{count} {name}" for name, count in found.items())
            raise DemoRefused(
                [
                    f"Demo mode refused: the database {app.config['DATABASE']} already has data "
                    f"({listed}). Nothing was changed.",
                    "Start the demo on a fresh instance folder, e.g. "
                    "SAMOSVAL_INSTANCE_PATH=/tmp/samosval-demo python app.py --demo",
                ]
            )
        engine = app.extensions["samosval"].engine
        was_running = engine.is_alive()
        if was_running:
            sim_runtime.stop_engine(app)
        try:
            lines = _seed(app, db)
        finally:
            if was_running:
                before = engine.last_tick
                sim_runtime.start_engine(app)
                _wait_for_first_tick(engine, before)
        lines += _start_live_work(app, db)
        return lines
    finally:
        db.close()


def _wait_for_first_tick(engine, before, timeout: float = 5.0) -> None:
    # The restarted engine first resumes unfinished work; live items created before
    # that would get an "engine restarted" line in their logs.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and engine.last_tick in (None, before):
        time.sleep(0.01)


def _seed(app, db) -> list[str]:
    state = app.extensions["samosval"].state
    real_now = time.time()
    clock = _Clock(
        real_now - HISTORY_DAYS * 86400, real_now - HISTORY_END_GAP, random.Random(app.config.get("SIM_SEED"))
    )
    engine = _SeedEngine(
        db_path=app.config["DATABASE"],
        state=state,
        clock=clock,
        rng=random.Random(app.config.get("SIM_SEED")),
        speed=1.0,
        watchdog_build_seconds=1e9,
        watchdog_deploy_seconds=1e9,
    )
    root_id = db.execute("SELECT id FROM users WHERE username = 'root'").fetchone()[0]

    passwords, people = {}, {}
    for username, role in DEMO_USERS:
        passwords[username] = secrets.token_urlsafe(9)
        user_id = user_domain.create_user(
            db, username, passwords[username], role, actor_id=root_id, now=clock.tick()
        )
        people[username] = User(user_domain.get_user(db, user_id))
        clock.later(0.2, 2)

    def settle(until, limit: int = 10_000) -> None:
        """Step the seed engine until ``until()`` holds."""
        for _ in range(limit):
            if until():
                return
            engine.step(clock.tick(0.5))  # the engine at real pace: logs read like real ones
        raise RuntimeError("demo seeding: the simulation did not settle")

    # Requests, each walked through the status flow by the people who would do it.
    request_ids = {}
    for key, (creator, final, values) in DEMO_REQUESTS.items():
        clock.later(3, 14)
        request_id = request_domain.create_request(db, people[creator], values, now=clock.tick())
        request_ids[key] = request_id
        for actor, status in STATUS_PATHS[final]:
            clock.later(0.3, 5)
            who = people[values["owner"] if actor == "owner" else actor]
            request_domain.change_status(db, who, request_id, status, now=clock.tick())

    olga = people["olga"]

    def build(key: str) -> int:
        clock.later(1, 10)
        req = request_domain.get_request(db, request_ids[key])
        build_id = build_domain.start_build(db, req, olga, clock.tick())
        settle(
            lambda: (
                db.execute("SELECT status FROM builds WHERE id = ?", (build_id,)).fetchone()[0]
                in build_domain.FINISHED_BUILD_STATUSES
            )
        )
        return build_id

    engine.build_failure_rate = 0.0
    images = {}
    for key in ("payments", "frontend", "reports"):
        build_id = build(key)
        images[key] = image_domain.get_image(
            db, db.execute("SELECT image_id FROM builds WHERE id = ?", (build_id,)).fetchone()[0]
        )
    engine.build_failure_rate = 1.0
    build("scoring")  # fails: a red build and an open alert

    def deploy(key, name, environment, replicas, ports, *, fail=False) -> int:
        engine.deploy_failure_rate = 1.0 if fail else 0.0
        clock.later(1, 10)
        deployment_id = deployment_domain.create_deployment(
            db,
            state,
            images[key],
            olga,
            {"name": name, "environment": environment, "replicas": str(replicas), "ports": ports},
            clock.tick(),
        )
        settle(lambda: _status(db, deployment_id) != "deploying")
        return deployment_id

    payments_prod = deploy("payments", "payments-prod", "prod", 3, "8000:8000")
    deploy("payments", "payments-staging", "staging", 1, "8100:8000")
    deploy("frontend", "web-frontend-prod", "prod", 2, "80:3000,443:3443")
    deploy("frontend", "web-frontend-dev", "dev", 1, "3000:3000", fail=True)
    reports = deploy("reports", "reports-nightly", "staging", 1, "")
    clock.later(2, 12)
    deployment_domain.perform_action(
        db, state, deployment_domain.get_deployment(db, reports), olga, "stop", clock.tick()
    )

    # The commit hook: a CI job pushes payments-api (both deployments restart),
    # and a caller with a wrong token is refused.
    engine.deploy_failure_rate = 0.0
    clock.later(2, 12)
    token_id, token = token_domain.create_token(
        db,
        "github-actions (payments-api)",
        secret_key=app.config["SECRET_KEY"],
        actor_id=people["nadia"].id,
        now=clock.tick(),
    )
    payments = request_domain.get_request(db, request_ids["payments"])
    body = json.dumps(
        {
            "repo_url": payments["repo_url"],
            "branch": "main",
            "commit": "4e1d0b7c9a2f5e3d8c6b1a0f9e8d7c6b5a4f3e2d",
        }
    ).encode()
    event = hook_parsing.parse({}, body, "application/json")
    clock.later(2, 24)
    hook_effects.process(
        db,
        state,
        event,
        hook_auth.Caller(token_id=token_id, token_name="github-actions (payments-api)"),
        clock.tick(),
    )
    settle(lambda: not db.execute("SELECT 1 FROM deployments WHERE status = 'deploying'").fetchone())
    clock.later(1, 12)
    hook_effects.refuse(
        db, clock.tick(), source="generic", reason=hook_parsing.R_UNKNOWN_TOKEN, http_status=401
    )

    # Releases (issue 20): prod is protected, so a visitor meets the gate: maria asks
    # to roll payments-prod back to v1, and it waits for olga or nadia to decide.
    clock.later(1, 12)
    environment_domain.set_protected(db, people["nadia"], "prod", True, clock.tick())
    # Asked just now (the real clock): pending releases expire after a day.
    release_domain.rollback(
        db, state, deployment_domain.get_deployment(db, payments_prod), people["maria"], "1", time.time()
    )

    _simulate_metric_history(app, state)

    width = max(len(name) for name, _role in DEMO_USERS)
    lines = ["", "Demo data created. Log in as (passwords are shown only now):"]
    lines += [f"  {name:<{width}}  {role:<9}  {passwords[name]}" for name, role in DEMO_USERS]
    lines += [
        f"  {'root':<{width}}  {'admin':<9}  (unchanged)",
        "Webhook token for CI (shown only now):",
        f"  {token}",
        "  curl -H 'Authorization: Bearer <token>' -H 'Content-Type: application/json' "
        f'-d \'{{"repo_url": "{payments["repo_url"]}", "branch": "main", '
        '"commit": "<sha>"}\' http://<host>:<port>/api/hooks/commit',
        "",
    ]
    return lines


def _status(db, deployment_id: int) -> str:
    return db.execute("SELECT status FROM deployments WHERE id = ?", (deployment_id,)).fetchone()[0]


def _simulate_metric_history(app, state) -> None:
    """Run the engine over the last few minutes on a scratch state and keep only the
    metric points: the charts open full, while log lines arrive live."""
    scratch = SimulationState()
    start = time.time() - METRIC_HISTORY_SECONDS
    clock = _Clock(start)
    engine = SimulationEngine(
        db_path=app.config["DATABASE"],
        state=scratch,
        clock=clock,
        rng=random.Random(app.config.get("SIM_SEED")),
        speed=1.0,
    )
    for second in range(METRIC_HISTORY_SECONDS):
        engine.step(start + second)
    for deployment_id in scratch.ids():
        source, target = scratch.existing(deployment_id), state.runtime(deployment_id)
        if len(target.metrics):
            continue
        for point in source.metrics.since():
            target.metrics.append(*point)
        target.cpu, target.ram = source.cpu, source.ram


def _start_live_work(app, db) -> list[str]:
    """One build and one rollout that the app's engine plays in real time."""
    olga = User(user_domain.get_user_by_username(db, "olga"))
    state = app.extensions["samosval"].state
    engine = app.extensions["samosval"].engine
    gateway = db.execute("SELECT * FROM image_requests WHERE image_name = 'auth-gateway'").fetchone()
    now = engine.clock()
    build_id = build_domain.start_build(db, request_domain.get_request(db, gateway["id"]), olga, now)
    # A build the visitor can watch: it succeeds, one step at a time, in about 40 s.
    steps = len(textgen.build_plan(gateway))
    engine.guided_builds[build_id] = LIVE_BUILD_SECONDS / steps
    image = image_domain.get_image(
        db, db.execute("SELECT MAX(i.id) FROM images i WHERE i.name = 'web-frontend'").fetchone()[0]
    )
    deployment_id = deployment_domain.create_deployment(
        db,
        state,
        image,
        olga,
        {"name": "web-frontend-staging", "environment": "staging", "replicas": "2", "ports": "8080:3000"},
        now,
    )
    return [
        f"Live now: build #{build_id} of auth-gateway:3.2.0 and the rollout of "
        f"deployment #{deployment_id} (web-frontend-staging).",
        "",
    ]
