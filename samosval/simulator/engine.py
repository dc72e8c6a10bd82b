"""The simulation engine: one daemon thread that makes builds and deployments
behave like real ones. Deterministic under test: it takes a clock and a
``random.Random``; ``step(now)`` does everything due at ``now``.

Scheduling lives in the database (``next_step_at``, ``status_since``), so a
restart resumes where the previous run stopped. A row in a transitional
status with ``next_step_at IS NULL`` was just created or changed by a request
thread; the engine schedules it with its own RNG, so request threads never
need randomness. Every delay is divided by ``speed``.

Runtime output (log lines and metric points of running deployments) is kept
in memory only (``state.py``). The engine caches what it needs about running
deployments and refreshes that cache from the database once a second, so a
thousand running deployments cost one query a second, not one per tick each.

Several processes on one PostgreSQL database each run this loop, but only the
holder of the lease (``leader.py``) steps; the others follow, and the one that
takes over resumes from the database like a restarted engine. Every write
transaction of the leader is fenced by its lease token.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from contextlib import contextmanager

from .. import db as db_module
from ..domain import approvals as approval_domain
from ..domain import builds as build_domain
from ..domain import config_vars as config_domain
from ..domain import deployments as deployment_domain
from ..domain.statuses import ACTIVE_BUILD_STATUSES
from ..timeutil import utcnow_iso
from . import textgen
from .leader import LeaseLost, fence

_ACTIVE_MARKS = ", ".join("?" * len(ACTIVE_BUILD_STATUSES))

log = logging.getLogger("samosval.simulator")

COUNT_KEYS = (
    "builds_scheduled",
    "builds_advanced",
    "builds_finished",
    "build_lines",
    "deployments_scheduled",
    "deployments_settled",
    "log_lines",
    "metric_points",
    "watchdog_failures",
    "errors",
)


class _Running:
    """What the engine needs to generate output for one running deployment."""

    __slots__ = ("id", "name", "image_tag", "replicas", "runtime", "cpu_base", "ram_base", "pending")

    def __init__(self, row, runtime):
        self.id = row["id"]
        self.runtime = runtime
        self.pending: list[float] = []  # times of this second's log lines not yet written
        self.update(row)

    def update(self, row) -> None:
        self.name = row["name"]
        self.image_tag = row["image_tag"]
        self.replicas = max(1, int(row["replicas"] or 1))
        vcpu = max(0.1, float(row["vcpu"] or 1.0))
        ram_mb = max(32, int(row["ram_mb"] or 512))
        # More CPUs and more replicas share the load: lower CPU %. A small memory
        # limit runs fuller than a large one.
        self.cpu_base = min(85.0, max(5.0, 8 + 40 / (vcpu**0.5 * self.replicas**0.35)))
        self.ram_base = min(90.0, max(10.0, 25 + 25 * (512 / ram_mb) ** 0.5))


class SimulationEngine:
    TICK_SECONDS = 0.1
    CACHE_REFRESH_SECONDS = 1.0  # how stale the running-deployments cache may get
    STATE_GC_SECONDS = 30.0  # how often runtimes of vanished deployments are dropped
    MAX_CATCH_UP_SECONDS = 5.0  # simulated seconds of runtime output written after a gap
    MAX_BUILD_STEPS_PER_TICK = 25
    MAX_ROWS_PER_TICK = 500
    # Under gevent the engine is a greenlet: a long stretch of work (resuming
    # thousands of deployments after a restart) would hold every request. After this
    # much work within one tick it lets the loop turn (see ``_let_others_run``).
    SHARE_AFTER_SECONDS = 0.01
    QUEUE_DELAY = (1.0, 2.0)  # spec 8.3
    STEP_DELAY = (0.5, 1.5)
    DEPLOY_DELAY = (3.0, 8.0)  # spec 8.4
    APPROVAL_SWEEP_SECONDS = 1.0  # how often pending releases are checked for expiry
    approval_expiry_hours = 24.0  # SAMOSVAL_APPROVAL_EXPIRY_HOURS (set by runtime.build_engine)
    _approvals_swept_at: float | None = None

    def __init__(
        self,
        db_path,
        state,
        clock=time.time,
        rng=None,
        speed=1.0,
        watchdog_build_seconds=600,
        watchdog_deploy_seconds=120,
    ):
        self.db_path = db_path
        self.state = state
        self.clock = clock
        self.rng = rng if rng is not None else random.Random()
        self.speed = float(speed) if speed and speed > 0 else 1.0
        self.watchdog_build_seconds = watchdog_build_seconds
        self.watchdog_deploy_seconds = watchdog_deploy_seconds
        # Odds of a bad outcome; tests set them to 0 or 1 to force one path.
        self.build_failure_rate = 0.15
        self.deploy_failure_rate = 0.10
        # Builds the demo plays for a visitor: build id -> seconds per step (divided by
        # ``speed``, like every delay); they never fail. In memory: a restart forgets them.
        self.guided_builds: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._local = threading.local()
        self._worked_since: float | None = None  # set while run() drives the ticks
        self._running: dict[int, _Running] = {}
        self._mismatches: dict[int, int] = {}
        self._cache_refreshed_at: float | None = None
        self._gc_at: float | None = None
        self.last_tick: float | None = None
        self.last_step_duration: float | None = None  # wall-clock seconds the last step took
        # Several processes (PostgreSQL): only the holder of the lease steps (leader.py).
        # None (SQLite, one process): this engine always leads.
        self.lease = None
        self._term: int | None = None  # the lease token this engine leads under
        self.last_beat: float | None = None  # the loop's last turn, leading or following

    # -- the thread ---------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name="SimulationEngine", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run(self) -> None:
        self._local.db = self._connect_when_reachable()
        if self._local.db is None:  # stopped before the database ever answered
            return
        # Under gevent the engine greenlet runs as soon as start() waits for it: pause
        # first, so the process that started it goes on to bind its server, and the
        # resume below shares the loop with the first requests.
        time.sleep(0.0005)
        self._worked_since = time.perf_counter()
        lease = self.lease
        try:
            if lease is None:
                self._resume_logged()
            else:
                lease.start()
            while not self._stop.is_set():
                self.last_beat = self.clock()
                if self._reconnect_if_broken() and (lease is None or self._leads(lease)):
                    try:
                        self.step(self.clock())
                    except LeaseLost as exc:
                        self._step_down(str(exc))
                    except Exception:  # keep the thread alive whatever one tick did
                        log.exception("simulation tick failed")
                self._stop.wait(self.TICK_SECONDS)
                self._worked_since = time.perf_counter()
        finally:
            self._worked_since = None
            if lease is not None:
                self._term = None
                self._flush_live_writes()  # still under this term's fence
                lease.stop()  # releases the lease: a follower takes over at once
            self._local.db.close()
            self._local.db = None

    def _flush_live_writes(self) -> None:
        """Send the log lines and points still queued for Redis before the lease goes:
        after it, the next leader's fence would refuse them."""
        flush = getattr(self.state, "flush", None)
        if flush is not None:
            try:
                flush()
            except Exception as exc:  # Redis away: the lines are lost either way
                log.warning("engine: queued live writes not sent at stop (%s)", exc.__class__.__name__)

    def _connect_when_reachable(self):
        """The engine's connection. A process may start while PostgreSQL restarts: try
        again every second instead of leaving the process without an engine."""
        while True:
            try:
                return db_module.connect(self.db_path)
            except db_module.UnavailableError as exc:
                log.warning("engine: the database is unreachable (%s)", exc.__class__.__name__)
                if self._stop.wait(1.0):
                    return None

    def _reconnect_if_broken(self) -> bool:
        """A PostgreSQL connection dies with its server (a restart) or its session (the
        idle-in-transaction timeout): open a new one, fenced like the old. False while
        the database cannot be reached."""
        db = self._local.db
        raw = getattr(db, "raw", None)
        if raw is None or not raw.closed:
            return True
        try:
            fresh = db_module.connect(self.db_path)
            if self.lease is not None and self._term is not None:
                fence(fresh, self._term, self.lease.name)
        except Exception as exc:
            log.warning("engine: the database is unreachable (%s)", exc.__class__.__name__)
            return False
        db.close()  # the pool drops the broken connection
        self._local.db = fresh
        return True

    def _resume_logged(self) -> bool:
        """Resume; False if this engine must not step now."""
        try:
            self.resume(self.clock())
        except LeaseLost as exc:
            self._step_down(str(exc))
            return False
        except Exception:
            log.exception("resuming interrupted work failed")
            if self.lease is not None:
                self._term = None  # a new leader resumes first: try again next turn
                return False
        return True

    # -- leadership (several processes) -------------------------------------
    @property
    def leading(self) -> bool:
        """True while this engine steps the simulation: always without a lease."""
        return self.lease is None or (self._term is not None and self.lease.token == self._term)

    def _leads(self, lease) -> bool:
        """Follow the lease: take over when it was just acquired (fence the connection,
        forget what an earlier term cached, resume from the database), step down
        when it is gone."""
        token = lease.token
        if token is None:
            if self._term is not None:
                self._step_down("lease not renewed in time")
            return False
        if token != self._term:
            self._term = token
            fence(self._local.db, token, lease.name)
            self._forget_cache()
            log.info("engine leads with token %s: resuming from the database", token)
            return self._resume_logged()
        return True

    def _step_down(self, reason: str) -> None:
        term, self._term = self._term, None
        self._forget_cache()
        if term is not None and self.lease is not None:
            self.lease.lost(term)
        log.warning("engine stopped leading: %s", reason)

    def _forget_cache(self) -> None:
        self._running = {}
        self._mismatches = {}
        self._cache_refreshed_at = None
        self._gc_at = None
        self._approvals_swept_at = None

    @contextmanager
    def _connection(self):
        """The calling thread's connection: the engine thread keeps one open for its
        life; any other caller (a test, the CLI) gets one for the duration of the call."""
        db = getattr(self._local, "db", None)
        if db is not None:
            yield db
            return
        db = db_module.connect(self.db_path)
        try:
            yield db
        finally:
            db.close()

    def _let_others_run(self) -> None:
        """Between two items of a tick: if the tick has worked ``SHARE_AFTER_SECONDS``
        since it last paused, pause briefly. Under gevent this lets the loop accept
        and answer requests (a server that just started answers its first page
        while the engine resumes); as an OS thread it only releases the GIL. Only
        in run(): a direct ``step(now)`` (tests, tools) never sleeps."""
        since = self._worked_since
        if since is None or time.perf_counter() - since < self.SHARE_AFTER_SECONDS:
            return
        time.sleep(0.0005)  # a timer, so the loop polls its sockets first
        self._worked_since = time.perf_counter()

    def _delay(self, bounds: tuple[float, float]) -> float:
        return self.rng.uniform(*bounds) / self.speed

    # -- resume after a restart ---------------------------------------------
    def resume(self, now: float) -> dict:
        """Reschedule what a previous run left in a transitional status: builds continue
        from ``steps_done``, deployments roll out again. The watchdog clock restarts,
        because the downtime was not the item's fault."""
        with self._connection() as db:
            builds = db.execute(
                f"SELECT id, status, steps_done, steps_total FROM builds WHERE status IN ({_ACTIVE_MARKS})",
                ACTIVE_BUILD_STATUSES,
            ).fetchall()
            deploying = db.execute("SELECT id FROM deployments WHERE status = 'deploying'").fetchall()
            with db_module.transaction(db):
                for build in builds:
                    if build["status"] == "building":
                        line = (
                            f"Engine restarted: resuming the build at step "
                            f"{build['steps_done'] + 1}/{build['steps_total']}"
                        )
                    else:
                        line = "Engine restarted: the build is still queued"
                    db.execute(
                        "UPDATE builds SET next_step_at = NULL, status_since = ?, "
                        "build_log = COALESCE(build_log, '') || ? WHERE id = ?",
                        (now, build_domain.stamped(build_domain.log_line(line), now), build["id"]),
                    )
                db.execute(
                    "UPDATE deployments SET next_step_at = NULL, status_since = ? WHERE status = 'deploying'",
                    (now,),
                )
        for row in deploying:
            self._let_others_run()
            logs = self.state.runtime(row["id"]).logs
            logs.append(now, "EVENT", "Engine restarted: rolling out again")
            logs.set_status("deploying")
        if builds or deploying:
            log.info("resumed %d build(s) and %d deployment(s)", len(builds), len(deploying))
        return {"builds_resumed": len(builds), "deployments_resumed": len(deploying)}

    # -- one tick -----------------------------------------------------------
    def step(self, now: float) -> dict:
        """Advance everything due at ``now``. Returns counts of what was done."""
        started = time.perf_counter()
        self.last_tick = now
        counts = dict.fromkeys(COUNT_KEYS, 0)
        with self._connection() as db:
            self._process_builds(db, now, counts)
            self._process_deployments(db, now, counts)
            self._watchdog(db, now, counts)
            if (
                self._cache_refreshed_at is None
                or now - self._cache_refreshed_at >= self.CACHE_REFRESH_SECONDS
                or now < self._cache_refreshed_at
            ):
                self._refresh_running(db, now)
            if self._gc_at is None or now - self._gc_at >= self.STATE_GC_SECONDS:
                self._collect_garbage(db, now)
        if self._term is not None and not self.leading:  # the lease lapsed during this tick
            raise LeaseLost("the engine lease lapsed during a tick")
        self._generate_runtime(now, counts)
        self.last_step_duration = time.perf_counter() - started
        return counts

    # -- builds ---------------------------------------------------------------
    def _process_builds(self, db, now: float, counts: dict) -> None:
        rows = db.execute(
            "SELECT b.id, b.status, b.steps_done, b.steps_total, b.next_step_at, b.status_since, "
            "b.commit_sha, r.image_name, r.version_tag, r.repo_url, r.repo_branch, r.update_mode, "
            "r.target_commit, r.last_commit, r.base_image, r.run_commands, r.entrypoint, "
            "r.dockerfile_content FROM builds b JOIN image_requests r ON r.id = b.request_id "
            f"WHERE b.status IN ({_ACTIVE_MARKS}) AND (b.next_step_at IS NULL OR b.next_step_at <= ?) "
            "ORDER BY b.id LIMIT ?",
            (*ACTIVE_BUILD_STATUSES, now, self.MAX_ROWS_PER_TICK),
        ).fetchall()
        for row in rows:
            self._let_others_run()
            try:
                self._advance_build(db, row, now, counts)
            except LeaseLost:
                raise
            except Exception:
                counts["errors"] += 1
                log.exception("build %s: simulation step failed; skipped", row["id"])

    def _advance_build(self, db, row, now: float, counts: dict) -> None:
        build_id, status = row["id"], row["status"]
        if row["next_step_at"] is None:
            delay = self._delay(self.QUEUE_DELAY if status == "queued" else self.STEP_DELAY)
            with db_module.transaction(db):
                db.execute(
                    "UPDATE builds SET next_step_at = ?, status_since = COALESCE(status_since, ?) "
                    "WHERE id = ? AND status = ? AND next_step_at IS NULL",
                    (now + delay, now, build_id, status),
                )
            counts["builds_scheduled"] += 1
            return
        plan = textgen.build_plan(row)
        if status == "queued":
            commit = self._commit_for(row)
            runner = f"runner-{self.rng.randint(1, 6)}"
            stamp = utcnow_iso(now)
            with db_module.transaction(db):
                db.execute(
                    "UPDATE builds SET status = 'building', started_at = ?, status_since = ?, "
                    "steps_total = ?, steps_done = 0, commit_sha = ?, next_step_at = ?, updated_at = ?, "
                    "build_log = COALESCE(build_log, '') || ? WHERE id = ? AND status = 'queued'",
                    (
                        stamp,
                        now,
                        len(plan),
                        commit,
                        now
                        + (
                            self.guided_builds[build_id] / self.speed
                            if build_id in self.guided_builds
                            else self._delay(self.STEP_DELAY)
                        ),
                        stamp,
                        build_domain.stamped(
                            build_domain.log_line(
                                f"Build started on {runner}: {row['repo_url']} "
                                f"@ {row['repo_branch']} ({commit[:12]})"
                            ),
                            now,
                        ),
                        build_id,
                    ),
                )
            counts["builds_advanced"] += 1
            counts["build_lines"] += 1
            return
        commit = row["commit_sha"] or self._commit_for(row)
        guided = self.guided_builds.get(build_id)
        due, done, lines = row["next_step_at"], row["steps_done"], []
        for _ in range(self.MAX_BUILD_STEPS_PER_TICK):
            if due > now:
                break
            if done >= len(plan):  # the request was edited mid-build; nothing left to do
                self._finish_build_success(db, build_id, row, plan, lines, done, commit, now, counts)
                return
            step = plan[done]
            chance = 0.0 if guided else textgen.failure_chance(plan, step.kind, self.build_failure_rate)
            if chance and self.rng.random() < chance:
                failure = textgen.render_failure(row, plan, done, self.rng)
                lines.extend(failure.lines)
                if build_domain.finish_failure(
                    db, build_id, _text(lines), failure.error, now=now, steps_done=done
                ):
                    counts["builds_finished"] += 1
                counts["build_lines"] += len(lines) + 1
                return
            if done == len(plan) - 1:
                self._finish_build_success(db, build_id, row, plan, lines, done, commit, now, counts)
                return
            lines.extend(textgen.render_step(row, plan, done, self.rng, commit=commit))
            done += 1
            due += guided / self.speed if guided else self._delay(self.STEP_DELAY)
        if lines:
            build_domain.append_log(
                db, build_id, _text(lines), steps_done=done, next_step_at=due, now=now, commit_sha=commit
            )
            counts["builds_advanced"] += 1
            counts["build_lines"] += len(lines)

    def _finish_build_success(self, db, build_id, row, plan, lines, done, commit, now, counts) -> None:
        digest = textgen.sha256_digest(self.rng)
        if done < len(plan):
            lines.extend(textgen.render_step(row, plan, done, self.rng, commit=commit, digest=digest))
            done += 1
        lines.append(f"Build succeeded: {row['image_name']}:{row['version_tag']} {digest}")
        if (
            build_domain.finish_success(
                db, build_id, _text(lines), steps_done=done, digest=digest, now=now, commit_sha=commit
            )
            is not None
        ):
            counts["builds_finished"] += 1
        counts["build_lines"] += len(lines)

    def _commit_for(self, row) -> str:
        if row["update_mode"] == "static" and row["target_commit"]:
            return row["target_commit"]
        return row["last_commit"] or textgen.hex_id(self.rng, 40)

    # -- deployments -------------------------------------------------------------
    def _process_deployments(self, db, now: float, counts: dict) -> None:
        rows = db.execute(
            "SELECT d.id, d.name, d.environment, d.replicas, d.next_step_at, d.status_since, i.image_tag "
            "FROM deployments d JOIN images i ON i.id = d.image_id WHERE d.status = 'deploying' "
            "AND (d.next_step_at IS NULL OR d.next_step_at <= ?) ORDER BY d.id LIMIT ?",
            (now, self.MAX_ROWS_PER_TICK),
        ).fetchall()
        for row in rows:
            self._let_others_run()
            try:
                self._advance_deployment(db, row, now, counts)
            except LeaseLost:
                raise
            except Exception:
                counts["errors"] += 1
                log.exception("deployment %s: simulation step failed; skipped", row["id"])

    def _advance_deployment(self, db, row, now: float, counts: dict) -> None:
        deployment_id = row["id"]
        if row["next_step_at"] is None:
            with db_module.transaction(db):
                changed = db.execute(
                    "UPDATE deployments SET next_step_at = ?, status_since = COALESCE(status_since, ?) "
                    "WHERE id = ? AND status = 'deploying' AND next_step_at IS NULL",
                    (now + self._delay(self.DEPLOY_DELAY), now, deployment_id),
                ).rowcount
            if changed:
                logs = self.state.runtime(deployment_id).logs
                logs.set_status("deploying")
                logs.append(
                    now,
                    "EVENT",
                    f"Pulling {row['image_tag']} and scheduling "
                    f"{row['replicas']} replica(s) on {row['environment']}",
                )
                for line in config_domain.startup_lines(db, deployment_id):  # secrets as ***
                    logs.append(now, "INFO", line)
                counts["deployments_scheduled"] += 1
            return
        if self.rng.random() < self.deploy_failure_rate:
            reason = textgen.deploy_failure_reason(self.rng, row["image_tag"], row["replicas"])
            settled = deployment_domain.mark_failed(
                db, self.state, deployment_id, reason, now=now, since=row["status_since"]
            )
        else:
            settled = deployment_domain.mark_running(
                db, self.state, deployment_id, since=row["status_since"], now=now
            )
            if settled:
                self._cache_refreshed_at = None  # pick it up in this very tick
        if settled:
            counts["deployments_settled"] += 1

    # -- watchdog ------------------------------------------------------------------
    def _watchdog(self, db, now: float, counts: dict) -> None:
        """Fail what stayed in a transitional status longer than allowed (simulated
        seconds): nothing waits in "queued" forever."""
        build_limit = self.watchdog_build_seconds
        stuck_builds = db.execute(
            f"SELECT id, status FROM builds WHERE status IN ({_ACTIVE_MARKS}) AND status_since < ?",
            (*ACTIVE_BUILD_STATUSES, now - build_limit / self.speed),
        ).fetchall()
        for row in stuck_builds:
            reason = (
                f"Watchdog: the build stayed {row['status']} for more than {build_limit:g} s and was stopped."
            )
            try:
                if build_domain.finish_failure(db, row["id"], "", reason, now=now, watchdog=True):
                    counts["watchdog_failures"] += 1
            except LeaseLost:
                raise
            except Exception:
                counts["errors"] += 1
                log.exception("build %s: watchdog failed", row["id"])
        deploy_limit = self.watchdog_deploy_seconds
        stuck = db.execute(
            "SELECT id FROM deployments WHERE status = 'deploying' AND status_since < ?",
            (now - deploy_limit / self.speed,),
        ).fetchall()
        for row in stuck:
            reason = f"Watchdog: still deploying after {deploy_limit:g} s; rollout abandoned."
            try:
                if deployment_domain.mark_failed(db, self.state, row["id"], reason, now=now, watchdog=True):
                    counts["watchdog_failures"] += 1
            except LeaseLost:
                raise
            except Exception:
                counts["errors"] += 1
                log.exception("deployment %s: watchdog failed", row["id"])
        self._expire_approvals(db, now, counts)

    def _expire_approvals(self, db, now: float, counts: dict) -> None:
        """Pending releases nobody decided on in time expire (real hours: people
        approve, not the simulation, so the speed factor does not apply)."""
        if (
            self._approvals_swept_at is not None
            and 0 <= now - self._approvals_swept_at < self.APPROVAL_SWEEP_SECONDS
        ):
            return
        self._approvals_swept_at = now
        try:
            approval_domain.expire(db, self.state, now, self.approval_expiry_hours)
        except LeaseLost:
            raise
        except Exception:
            counts["errors"] += 1
            log.exception("approval expiry failed")

    # -- runtime output of running deployments ------------------------------------------
    def _refresh_running(self, db, now: float) -> None:
        rows = db.execute(
            "SELECT d.id, d.name, d.replicas, i.image_tag, r.vcpu, r.ram_mb FROM deployments d "
            "JOIN images i ON i.id = d.image_id JOIN image_requests r ON r.id = i.request_id "
            "WHERE d.status = 'running'"
        ).fetchall()
        self._cache_refreshed_at = now
        fresh: dict[int, _Running] = {}
        mismatches: dict[int, int] = {}
        for row in rows:
            deployment_id = row["id"]
            entry = self._running.get(deployment_id)
            runtime = self.state.existing(deployment_id)
            if entry is not None and runtime is not entry.runtime:
                continue  # deleted since the query ran: do not bring it back
            if runtime is not None and runtime.logs.status not in (None, "running"):
                # Usually a user action that committed after our query. Trust the
                # database only if the mismatch survives two refreshes unchanged.
                version = runtime.logs.status_version
                if self._mismatches.get(deployment_id) != version:
                    mismatches[deployment_id] = version
                    continue
            if entry is None:
                runtime = runtime or self.state.runtime(deployment_id)
                entry = _Running(row, runtime)
                runtime.next_metric_at = now
            else:
                entry.update(row)
            if runtime.logs.status != "running":
                runtime.logs.set_status("running")  # first sight since the process started
            fresh[deployment_id] = entry
        self._running = fresh
        self._mismatches = mismatches

    def _collect_garbage(self, db, now: float) -> None:
        """Drop in-memory runtimes of deployments that no longer exist (for example
        deleted while a cache refresh was in flight)."""
        self._gc_at = now
        known = self.state.ids()  # before the query: anything newer is surely in the DB
        if not known:
            return
        existing = {row[0] for row in db.execute("SELECT id FROM deployments")}
        for deployment_id in known:
            if deployment_id not in existing:
                self.state.drop(deployment_id)

    def _generate_runtime(self, now: float, counts: dict) -> None:
        for entry in list(self._running.values()):
            logs = entry.runtime.logs
            if logs.closed or logs.status != "running":
                self._running.pop(entry.id, None)  # stopped, restarting or deleted
                continue
            try:
                self._generate_for(entry, now, counts)
            except Exception:
                counts["errors"] += 1
                log.exception("deployment %s: runtime generation failed; skipped", entry.id)

    def _generate_for(self, entry: _Running, now: float, counts: dict) -> None:
        runtime, rng = entry.runtime, self.rng
        interval = 1.0 / self.speed
        floor = now - self.MAX_CATCH_UP_SECONDS * interval
        if runtime.next_metric_at < floor:  # a long gap: skip ahead instead of flooding
            runtime.next_metric_at = floor
            entry.pending = [t for t in entry.pending if t >= floor]
        while runtime.next_metric_at <= now:
            ts = runtime.next_metric_at
            cpu, ram = self._walk(entry, runtime)
            runtime.metrics.append(ts, cpu, ram)
            counts["metric_points"] += 1
            lines = rng.randint(1, 3)  # spec 8.5: 1-3 lines a second, spread over it
            entry.pending.extend(ts + interval * i / lines for i in range(lines))
            runtime.next_metric_at = ts + interval
        if entry.pending and entry.pending[0] <= now:
            logs = runtime.logs
            while entry.pending and entry.pending[0] <= now:
                entry.pending.pop(0)
                level, text = textgen.runtime_line(
                    rng, entry.name, entry.image_tag, entry.replicas, ram=runtime.ram
                )
                # Stamped with the moment it is written (as a real logger does), so a
                # reader's delay is measured from the append, not from the schedule.
                logs.append(now, level, text)
                counts["log_lines"] += 1

    def _walk(self, entry: _Running, runtime) -> tuple[float, float]:
        """Smooth random walks pulled towards the deployment's baseline."""
        rng = self.rng
        cpu = runtime.cpu if runtime.cpu is not None else entry.cpu_base + rng.uniform(-5, 5)
        ram = runtime.ram if runtime.ram is not None else entry.ram_base + rng.uniform(-3, 3)
        cpu += rng.uniform(-4, 4) + 0.15 * (entry.cpu_base - cpu)
        if rng.random() < 0.02:  # an occasional burst of traffic
            cpu += rng.uniform(10, 30)
        ram += rng.uniform(-1.2, 1.3) + 0.05 * (entry.ram_base - ram)
        runtime.cpu = min(100.0, max(0.0, cpu))
        runtime.ram = min(100.0, max(0.0, ram))
        return round(runtime.cpu, 1), round(runtime.ram, 1)

    # -- introspection (benchmarks, health) -----------------------------------------------
    def running_count(self) -> int:
        return len(self._running)


def _text(lines: list[str]) -> str:
    return "".join(build_domain.log_line(line) for line in lines)
