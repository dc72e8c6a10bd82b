"""Failover (issue 15): two real app processes (``python app.py``) share one PostgreSQL
database; exactly one engine leads through the lease (samosval/simulator/leader.py).

* ``kill -9`` of the leader mid-build and mid-rollout: the other process leads within
  10 s, every build finishes or fails with a reason, nothing stays queued, building or
  deploying, no build log line is written twice and no stored line changes.
* A leader paused with SIGSTOP past its lease: the other takes over; resumed with
  SIGCONT, the old one writes nothing (its transactions are fenced) and follows.
* A PostgreSQL restart: requests get a clear 503 while it is down, and work again
  after; no half-written rows.

:class:`Cluster` is shared with ``bench/failover.py``.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from samosval import db as db_module
from samosval.db import init_db_if_needed
from tests import factories
from tests.reliability import PASSWORD, AppProcess, Client, add_users

# Starts its own PostgreSQL and Redis: one run, in the SQLite pass.
pytestmark = pytest.mark.backend_neutral

FAILOVER_LIMIT_SECONDS = 10.0
ACTIVE_BUILDS = ("queued", "building")
STEP_HEADER = re.compile(r"^Step (\d+)/(\d+) : ")


# --- a cluster of app processes ------------------------------------------------------------


def health(process: AppProcess) -> dict | None:
    """The process's /healthz body, or None when it does not answer."""
    conn = http.client.HTTPConnection("127.0.0.1", process.port, timeout=2)
    try:
        conn.request("GET", "/healthz")
        return json.loads(conn.getresponse().read())
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        conn.close()


class Cluster:
    """App processes on one PostgreSQL database (and Redis, if given), each with its own
    instance folder and log in ``workdir``."""

    def __init__(self, workdir: Path, database_url: str, speed: float = 1.0, redis_url=None, extra_env=None):
        self.workdir = Path(workdir)
        self.env = {"SAMOSVAL_DATABASE_URL": database_url, **(extra_env or {})}
        self.redis_prefix = None
        if redis_url:
            self.redis_prefix = f"failover-{uuid.uuid4().hex[:8]}:"
            self.env.update(
                {
                    "SAMOSVAL_REDIS_URL": redis_url,
                    "SAMOSVAL_REDIS_PREFIX": self.redis_prefix,
                }
            )
        self.speed = speed
        self.processes: list[AppProcess] = []
        self.started = 0

    def start(self) -> AppProcess:
        self.started += 1
        name = f"app-{self.started}"
        process = AppProcess(
            self.workdir / name, self.workdir / f"{name}.log", speed=self.speed, extra_env=self.env
        )
        self.processes.append(process)
        return process

    def alive(self) -> list[AppProcess]:
        return [p for p in self.processes if p.process.poll() is None]

    def leaders(self, among=None) -> list[AppProcess]:
        return [p for p in (among or self.alive()) if (health(p) or {}).get("leader")]

    def wait_leader(self, among=None, timeout: float = 30.0, poll: float = 0.05) -> tuple[AppProcess, float]:
        """The first process of ``among`` to say it leads, and how long that took."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            found = self.leaders(among)
            if found:
                return found[0], time.monotonic() - started
            time.sleep(poll)
        raise AssertionError(f"no process led within {timeout} s:\n" + self.log_tail())

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(
            f"--- {p.log_path.name}\n" + "\n".join(p.log_text().splitlines()[-lines:]) for p in self.processes
        )

    def stop(self) -> None:
        for process in self.processes:
            if process.process.poll() is None:
                try:
                    os.kill(process.pid, signal.SIGCONT)  # a paused one must be able to stop
                except ProcessLookupError:
                    pass
                process.stop()
            else:
                process.kill()  # closes its log


# --- helpers ----------------------------------------------------------------------------------


@pytest.fixture
def database_url(postgres_server):
    name = f"failover_{uuid.uuid4().hex[:10]}"
    url = postgres_server.create_database(name)
    init_db_if_needed(url)
    yield url
    db_module.close_pools()
    postgres_server.drop_database(name)


def query(url: str, sql: str, params=()) -> list[dict]:
    db = db_module.connect(url)
    try:
        return [dict(row) for row in db.execute(sql, params).fetchall()]
    finally:
        db.close()


def seed(url: str, builds: int = 3) -> dict:
    db = db_module.connect(url)
    try:
        ids = add_users(db, [("oleg", "operator"), ("dana", "developer")])
        requests = [
            factories.make_request(db, owner_id=ids["dana"], status="approved", image_name=f"failover-{n}")
            for n in range(builds)
        ]
        app_request = factories.make_request(
            db, owner_id=ids["dana"], status="approved", image_name="rollout"
        )
        image_id = factories.make_image(db, request_id=app_request, name="rollout")
    finally:
        db.close()
    return {"requests": requests, "image_id": image_id}


def wait_for(predicate, timeout: float, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


def login(port: int, username: str = "oleg") -> Client:
    """A logged-in client (the CSRF token is scraped from the next page it opens)."""
    client = Client(port)
    status, _h, page = client.get("/login")
    assert status == 200
    token = client.scrape_csrf(page)
    status, headers, body = client.request(
        "POST", "/login", form={"username": username, "password": PASSWORD, "csrf_token": token}
    )
    assert status == 302 and "/login" not in headers.get("location", ""), (status, body[:200])
    return client


def start_builds(client: Client, request_ids) -> list[int]:
    builds = []
    for request_id in request_ids:
        status, _h, page = client.get(f"/requests/{request_id}")
        assert status == 200
        client.scrape_csrf(page)
        status, headers, body = client.post(f"/requests/{request_id}/build")
        assert status == 302 and "/builds/" in headers["location"], (status, body[:300])
        builds.append(int(headers["location"].rsplit("/", 1)[1]))
    return builds


def start_rollouts(client: Client, image_id: int, count: int) -> list[int]:
    status, _h, page = client.get(f"/images/{image_id}")
    assert status == 200
    client.scrape_csrf(page)
    deployments = []
    for n in range(count):
        status, headers, body = client.post(
            f"/images/{image_id}/create_deployment",
            {"name": f"failover-{n}", "environment": "dev", "replicas": "2", "ports": "8000:8000"},
        )
        assert status == 302, body[:300]
        deployments.append(int(headers["location"].rsplit("/", 1)[1]))
    return deployments


def marks(ids) -> str:
    return ", ".join("?" * len(ids))


def builds_of(url: str, ids) -> dict[int, dict]:
    return {
        row["id"]: row
        for row in query(
            url,
            f"SELECT id, status, steps_done, steps_total, build_log, error_message FROM builds WHERE id IN ({marks(ids)})",
            ids,
        )
    }


def log_texts(build_log: str) -> list[str]:
    """The lines of a stored build log without their ``HH:MM:SS`` stamps."""
    return [line[9:] if re.match(r"^\d\d:\d\d:\d\d ", line) else line for line in build_log.splitlines()]


def assert_written_once(build_id: int, build_log: str) -> None:
    """Every build step's header once and in order, one start and at most one end:
    nothing the dead or stale leader wrote was written again."""
    texts = log_texts(build_log)
    steps = [int(m.group(1)) for m in map(STEP_HEADER.match, texts) if m]
    assert steps == sorted(set(steps)), f"build {build_id}: step headers repeated or out of order: {steps}"
    started = [t for t in texts if t.startswith("Build started on ")]
    ended = [t for t in texts if t.startswith("Build succeeded: ")]
    assert len(started) == 1 and len(ended) <= 1, (build_id, started, ended)
    repeated = {
        text: count
        for text, count in Counter(t for t in texts if not t.startswith("Engine restarted")).items()
        if count > 1 and len(text) > 20
    }
    assert not repeated, f"build {build_id}: lines written twice: {repeated}"


def settled(url: str, builds, deployments) -> bool:
    rows = query(
        url,
        f"SELECT (SELECT COUNT(*) FROM builds WHERE id IN ({marks(builds)}) AND status IN ('queued', 'building')) "
        f"AS builds, (SELECT COUNT(*) FROM deployments WHERE id IN ({marks(deployments)}) "
        "AND status = 'deploying') AS deployments, "
        "(SELECT COUNT(*) FROM releases WHERE status = 'deploying') AS releases",
        [*builds, *deployments],
    )[0]
    return rows["builds"] == rows["deployments"] == rows["releases"] == 0


def assert_finished_with_reasons(url: str, builds, deployments) -> None:
    for build_id, row in builds_of(url, builds).items():
        assert row["status"] in ("success", "failed"), (build_id, row["status"])
        if row["status"] == "failed":
            assert row["error_message"], f"build {build_id} failed without a reason"
        assert_written_once(build_id, row["build_log"])
    if not deployments:
        return
    for row in query(
        url, f"SELECT id, status FROM deployments WHERE id IN ({marks(deployments)})", deployments
    ):
        assert row["status"] in ("running", "failed"), row
    for row in query(
        url,
        f"SELECT deployment_id, number, status, failure_reason FROM releases WHERE deployment_id IN ({marks(deployments)})",
        deployments,
    ):
        assert row["status"] in ("running", "failed"), row
        if row["status"] == "failed":
            assert row["failure_reason"], f"release {row} failed without a reason"


def redis_url_for(request, with_redis: bool) -> str | None:
    return request.getfixturevalue("redis_server").url if with_redis else None


def assert_runtime_lines_once(redis_server, prefix: str, deployments) -> int:
    """Each deployment's log stream in Redis: no line (time, level, text) twice, so
    nothing the dead or stale leader wrote was written again; and stamps in order, so
    no old leader's line (queued before a pause, sent after) came in after the new
    leader's. Returns the lines seen."""
    client = redis_server.client()
    seen = 0
    try:
        for deployment_id in deployments:
            entries = client.xrange(f"{prefix}logs:{deployment_id}")
            lines = [(f[b"t"], f[b"l"], f[b"x"]) for _id, f in entries]
            repeated = [line for line, count in Counter(lines).items() if count > 1]
            assert not repeated, f"deployment {deployment_id}: lines written twice: {repeated[:3]}"
            stamps = [float(t) for t, _l, _x in lines]
            late = [(a, b) for a, b in zip(stamps, stamps[1:]) if b < a]
            assert not late, f"deployment {deployment_id}: a line older than the one before it: {late[:3]}"
            seen += len(lines)
    finally:
        client.close()
    return seen


def lease_row(url: str) -> dict:
    return query(url, "SELECT holder, token, expires_at FROM engine_lease WHERE name = 'engine'")[0]


# --- the tests --------------------------------------------------------------------------------------


BACKENDS = pytest.mark.parametrize("with_redis", [False, True], ids=["postgres", "postgres+redis"])


@BACKENDS
def test_kill_9_of_the_leader_mid_build_and_mid_rollout(tmp_path, database_url, request, with_redis):
    world = seed(database_url)
    cluster = Cluster(tmp_path, database_url, speed=1.0, redis_url=redis_url_for(request, with_redis))
    try:
        first = cluster.start()
        leader, _ = cluster.wait_leader([first])
        second = cluster.start()
        time.sleep(1.5)  # a few lease rounds: the second must not lead too
        assert cluster.leaders() == [first]
        follower_health = health(second)
        assert follower_health["status"] == "ok" and follower_health["engine"] == "following"
        assert follower_health["lease"]["holder"] == health(first)["holder"]
        assert second.metric("samosval_engine_leader") == 0 and first.metric("samosval_engine_leader") == 1

        # Requests go to the follower; the leader's engine does the work.
        operator = login(second.port)
        builds = start_builds(operator, world["requests"])
        assert wait_for(
            lambda: query(
                database_url,
                f"SELECT 1 FROM builds WHERE id IN ({marks(builds)}) AND status = 'building' AND steps_done >= 1",
                builds,
            ),
            timeout=20,
        ), "no build got going"
        deployments = start_rollouts(operator, world["image_id"], 2)
        assert wait_for(
            lambda: query(
                database_url,
                f"SELECT 1 FROM deployments WHERE id IN ({marks(deployments)}) AND status = 'deploying' "
                "AND next_step_at IS NOT NULL",
                deployments,
            ),
            timeout=10,
        ), "the leader did not schedule a rollout"
        before = builds_of(database_url, builds)
        in_flight_deployments = [
            row["id"]
            for row in query(
                database_url,
                f"SELECT id FROM deployments WHERE id IN ({marks(deployments)}) AND status = 'deploying'",
                deployments,
            )
        ]
        token_before = lease_row(database_url)["token"]

        first.kill()
        new_leader, failover = cluster.wait_leader([second], timeout=FAILOVER_LIMIT_SECONDS + 5)
        assert failover < FAILOVER_LIMIT_SECONDS, f"failover took {failover:.1f} s"
        assert lease_row(database_url)["token"] == token_before + 1
        assert new_leader.metric("samosval_engine_lease_token") == token_before + 1

        assert wait_for(lambda: settled(database_url, builds, deployments), timeout=60, step=0.25), (
            "something stayed queued, building or deploying:\n" + cluster.log_tail()
        )
        assert_finished_with_reasons(database_url, builds, deployments)
        after = builds_of(database_url, builds)
        in_flight = [b for b, row in before.items() if row["status"] in ACTIVE_BUILDS]
        assert in_flight and in_flight_deployments, (before, in_flight_deployments)
        for build_id, row in before.items():
            assert after[build_id]["build_log"].startswith(row["build_log"]), (
                f"build {build_id}: stored log changed"
            )
        assert any("Engine restarted: resuming the build" in after[b]["build_log"] for b in in_flight)
        if with_redis:
            # The rollouts' lines, in Redis, from both leaders: each once, the restart seen.
            assert wait_for(lambda: new_leader.metric("samosval_engine_leader") == 1, timeout=5)
            status, _h, body = operator.get(f"/deployments/{in_flight_deployments[0]}/logs.txt")
            assert status == 200 and "Engine restarted: rolling out again" in body.decode()
            assert assert_runtime_lines_once(
                request.getfixturevalue("redis_server"), cluster.redis_prefix, deployments
            )
        operator.close()
    finally:
        cluster.stop()
    print(
        f"\nfailover after kill -9: {failover:.2f} s; {len(in_flight)} build(s) and {len(in_flight_deployments)} rollout(s) were in flight"
    )


@BACKENDS
def test_a_paused_leader_resumed_after_its_lease_cannot_write(tmp_path, database_url, request, with_redis):
    world = seed(database_url, builds=4)
    cluster = Cluster(tmp_path, database_url, speed=1.0, redis_url=redis_url_for(request, with_redis))
    try:
        first = cluster.start()
        cluster.wait_leader([first])
        second = cluster.start()
        operator = login(second.port)
        deployments = start_rollouts(operator, world["image_id"], 2)  # running: lines every second
        builds = start_builds(operator, world["requests"])
        assert wait_for(
            lambda: query(
                database_url,
                f"SELECT 1 FROM builds WHERE id IN ({marks(builds)}) AND status = 'building' AND steps_done >= 1",
                builds,
            ),
            timeout=20,
        )
        paused_token = lease_row(database_url)["token"]

        os.kill(first.pid, signal.SIGSTOP)
        try:
            _leader, failover = cluster.wait_leader([second], timeout=FAILOVER_LIMIT_SECONDS + 5)
            assert failover < FAILOVER_LIMIT_SECONDS
            assert lease_row(database_url)["token"] == paused_token + 1
            # The new leader works on: let it write a step or two first.
            progress = {b: r["steps_done"] for b, r in builds_of(database_url, builds).items()}
            assert wait_for(
                lambda: any(
                    r["steps_done"] != progress[b] or r["status"] not in ACTIVE_BUILDS
                    for b, r in builds_of(database_url, builds).items()
                ),
                timeout=15,
            )
        finally:
            os.kill(first.pid, signal.SIGCONT)

        # Resumed: its belief ran out with the lease, and any transaction it had in
        # hand is refused by the fence. It follows.
        assert wait_for(lambda: health(first) is not None and health(first)["leader"] is False, timeout=10)
        assert cluster.leaders() == [second]
        assert first.metric("samosval_engine_leader") == 0
        assert wait_for(lambda: settled(database_url, builds, deployments), timeout=60, step=0.25), (
            cluster.log_tail()
        )
        assert_finished_with_reasons(database_url, builds, deployments)
        assert lease_row(database_url)["token"] == paused_token + 1  # it never took the lease back
        if with_redis:
            time.sleep(2)  # the resumed process flushes what it had queued: the fence refuses it
            assert assert_runtime_lines_once(
                request.getfixturevalue("redis_server"), cluster.redis_prefix, deployments
            )
            refused = first.metric("samosval_live_refused_writes_total")
            print(f"\nthe fence refused {refused:.0f} write(s) the paused leader sent when resumed")
        operator.close()
    finally:
        cluster.stop()
    log = (tmp_path / "app-1.log").read_text(errors="replace")
    assert "engine stopped leading" in log, log[-3000:]


def test_a_leader_stopped_gracefully_hands_over_without_waiting_for_expiry(tmp_path, database_url):
    seed(database_url, builds=0)
    cluster = Cluster(tmp_path, database_url, speed=1.0)
    try:
        first = cluster.start()
        cluster.wait_leader([first])
        second = cluster.start()
        token = lease_row(database_url)["token"]
        started = time.monotonic()
        assert first.stop() == 0  # SIGTERM: the engine stops and releases its lease
        _leader, _waited = cluster.wait_leader([second], timeout=FAILOVER_LIMIT_SECONDS)
        handover = time.monotonic() - started
        assert handover < 4.0, f"handover took {handover:.1f} s: the lease was not released"
        assert lease_row(database_url)["token"] == token + 1
    finally:
        cluster.stop()
    print(f"\nhandover after a graceful stop: {handover:.2f} s (the process's stop included)")


def test_a_postgresql_restart_answers_503_and_recovers(tmp_path, database_url, postgres_server):
    world = seed(database_url, builds=2)
    cluster = Cluster(tmp_path, database_url, speed=1.0)
    try:
        app = cluster.start()
        cluster.wait_leader([app])
        client = login(app.port)
        builds = start_builds(client, world["requests"])  # the engine writes while the server goes
        users_before = query(database_url, "SELECT id, username, password_hash FROM users ORDER BY id")

        postgres_server.stop()
        try:
            status, headers, body = client.get("/requests", headers={"Accept": "application/json"})
            assert status == 503, (status, body[:300])
            # The message in the default language (Russian): "The database is unavailable
            # right now. Try again shortly."
            assert json.loads(body)["error"].startswith("База данных сейчас недоступна")
            assert client.get("/healthz")[0] == 503
        finally:
            postgres_server.start()

        assert wait_for(lambda: client.get("/requests")[0] == 200, timeout=30, step=0.5)
        assert wait_for(lambda: (health(app) or {}).get("leader"), timeout=20), cluster.log_tail()
        assert (
            query(database_url, "SELECT id, username, password_hash FROM users ORDER BY id") == users_before
        )
        # Each build's steps and log lines were written together or not at all.
        assert wait_for(lambda: settled(database_url, builds, [0]), timeout=60, step=0.25), cluster.log_tail()
        assert_finished_with_reasons(database_url, builds, [])
        client.close()
    finally:
        cluster.stop()
    log = (tmp_path / "app-1.log").read_text(errors="replace")
    assert not re.search(r" -> 500 in ", log), "a 500 while the database was away"
