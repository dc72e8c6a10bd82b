"""Exactly one engine in a cluster: a lease row in PostgreSQL.

Every app process runs an engine loop, but only the holder of the lease steps
the simulation. The lease is the row ``engine_lease(name='engine')``: its
``holder`` (host:pid:random), a ``token`` that grows by one on every takeover,
and ``expires_at`` in epoch seconds of the DATABASE's clock, so processes on
machines whose clocks disagree still agree on when a lease ran out. The holder
renews it every ``RENEW_SECONDS``; anyone may take it once it has expired.

A session advisory lock would not do: a process stopped by SIGSTOP keeps its
connection, and with it the lock, forever. A lease simply runs out.

Fencing: the engine's connection checks, at the start of every write
transaction (after the transaction-level advisory lock that every writer takes,
see :func:`samosval.db.transaction`), that its token is still the current one
and unexpired (:func:`check`). A takeover takes the same lock, so it cannot
commit between that check and the writes. A leader that lost its lease (paused,
partitioned, too slow) gets :class:`LeaseLost` instead of writing, steps down and
keeps trying to take the lease again, with a new token. Log lines and metric
points written to Redis are fenced by the same token: on every takeover the
shared state raises ``{prefix}engine:fence`` to it before the new leader writes
(``RedisSimulationState.set_fencing_token``, called through ``on_acquired``).

SQLite (one process, embedded) has no lease: its engine always leads.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time

from .. import db as db_module

log = logging.getLogger("samosval.simulator")

LEASE_NAME = "engine"
LEASE_SECONDS = 5.0  # a dead leader is replaced within this + RENEW_SECONDS (< 10 s)
RENEW_SECONDS = 1.0
DB_NOW = "extract(epoch from clock_timestamp())::double precision"


class LeaseLost(Exception):
    """The engine's lease is gone (expired or taken over): it must not write."""


def make_holder() -> str:
    """Who holds the lease: readable (host and pid) and unique (a process restarted
    with the same pid is a new holder)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


# --- plain functions over a connection --------------------------------------------


def current(db, name: str = LEASE_NAME) -> dict | None:
    """The lease row as the database sees it now: holder, token, expires_at, and
    ``now`` (the database clock) and ``valid``."""
    row = db.execute(
        f"SELECT holder, token, expires_at, {DB_NOW} AS now FROM engine_lease WHERE name = ?", (name,)
    ).fetchone()
    if row is None:
        return None
    found = dict(row)
    found["valid"] = found["expires_at"] > found["now"]
    return found


def acquire(db, holder: str, name: str = LEASE_NAME, seconds: float = LEASE_SECONDS) -> int | None:
    """Take the lease if nobody holds it, its holder let it expire, or it is already
    ours (a new term). Returns the new token (one more than the last one), or None
    while another holder's lease is valid.

    Runs under the writers' lock (``transaction``), so a takeover commits either
    before a fenced transaction checks its token or after it committed."""
    row = current(db, name)
    if row is not None and row["valid"] and row["holder"] != holder:
        return None  # the cheap answer for a follower, without the writers' lock
    with db_module.transaction(db):
        taken = db.execute(
            "INSERT INTO engine_lease (name, holder, token, expires_at) "
            f"VALUES (?, ?, 1, {DB_NOW} + ?) "
            "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
            "token = engine_lease.token + 1, expires_at = excluded.expires_at "
            f"WHERE engine_lease.expires_at <= {DB_NOW} OR engine_lease.holder = excluded.holder "
            "RETURNING token",
            (name, holder, float(seconds)),
        ).fetchone()
    return int(taken[0]) if taken else None


def renew(db, holder: str, token: int, name: str = LEASE_NAME, seconds: float = LEASE_SECONDS) -> bool:
    """Extend a lease that is still ours and unexpired. False: it is lost (expired
    or taken over); the caller must acquire again, with a new token."""
    row = db.execute(
        f"UPDATE engine_lease SET expires_at = {DB_NOW} + ? "
        f"WHERE name = ? AND holder = ? AND token = ? AND expires_at > {DB_NOW} RETURNING token",
        (float(seconds), name, holder, token),
    ).fetchone()
    return row is not None


def release(db, holder: str, token: int, name: str = LEASE_NAME) -> bool:
    """Give the lease up at once (a graceful stop), so another process takes over
    without waiting for it to expire. The token stays: the next holder's is higher."""
    row = db.execute(
        "UPDATE engine_lease SET expires_at = 0 WHERE name = ? AND holder = ? AND token = ? RETURNING token",
        (name, holder, token),
    ).fetchone()
    return row is not None


def check(db, token: int, name: str = LEASE_NAME) -> None:
    """The fence: raise :class:`LeaseLost` unless ``token`` is the current, unexpired
    lease. Call it inside the write transaction, after the writers' lock."""
    row = db.execute(
        f"SELECT 1 FROM engine_lease WHERE name = ? AND token = ? AND expires_at > {DB_NOW}",
        (name, token),
    ).fetchone()
    if row is None:
        raise LeaseLost(f"the engine lease {name!r} with token {token} is no longer held")


def fence(db, token: int, name: str = LEASE_NAME) -> None:
    """Make every ``transaction(db)`` on this connection check the lease first."""
    db.fence = lambda conn: check(conn, token, name)


# --- the process's view, kept by a background loop -----------------------------------


class Lease:
    """This process's side of the lease: a keeper loop (a thread, a greenlet under
    gevent) acquires it when free and renews it while held, on its own connection,
    so a long engine tick cannot let it lapse.

    ``token`` is set while this process believes it leads. Believing is not enough
    to write: the fence decides. The belief ends by itself ``seconds`` after the last
    successful renewal (the monotonic clock), so a process resumed after a pause
    stops stepping before it even reaches the database."""

    def __init__(
        self,
        target: str,
        name: str = LEASE_NAME,
        seconds: float = LEASE_SECONDS,
        renew_every: float = RENEW_SECONDS,
        holder: str | None = None,
        on_acquired=None,
    ):
        self.target = target
        self.name = name
        self.seconds = float(seconds)
        self.renew_every = float(renew_every)
        self.holder = holder or make_holder()
        self.on_acquired = on_acquired  # called with the token on every takeover (Redis fence)
        self._token: int | None = None
        self._valid_until = 0.0  # on self.monotonic
        self.monotonic = time.monotonic
        self.last_token: int | None = None  # the newest token this process held
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._db = None

    # -- what the engine asks -------------------------------------------------------
    @property
    def token(self) -> int | None:
        """The token while this process leads, else None."""
        if self._token is not None and self.monotonic() >= self._valid_until:
            self._token = None  # not renewed in time: assume someone else leads
        return self._token

    @property
    def leading(self) -> bool:
        return self.token is not None

    def lost(self, token: int) -> None:
        """The fence refused ``token``: stop leading (the keeper tries again)."""
        if self._token == token:
            self._token = None
            log.warning("engine lease lost (token %s): following", token)

    # -- one round of the keeper, callable directly (tests) -------------------------------
    def tick(self) -> int | None:
        started = self.monotonic()
        try:
            if self._db is None:
                self._db = db_module.connect(self.target)
            token = self._token
            if token is not None:
                if renew(self._db, self.holder, token, self.name, self.seconds):
                    self._valid_until = started + self.seconds
                else:
                    self.lost(token)
            else:
                token = acquire(self._db, self.holder, self.name, self.seconds)
                if token is not None:
                    if self.on_acquired is not None:
                        self.on_acquired(token)
                    self._valid_until = started + self.seconds
                    self._token = self.last_token = token
                    log.info("engine lease taken by %s (token %s): leading", self.holder, token)
            self.error = None
        except Exception as exc:  # the database is away: keep the belief until it expires
            self.error = f"{exc.__class__.__name__}: {exc}"[:200]
            log.warning("engine lease: %s", self.error)
            self._close()
        return self.token

    def _close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            try:
                db.close()
            except Exception:
                pass

    # -- the keeper loop ------------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="EngineLease", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.tick()
                self._stop.wait(self.renew_every)
        finally:
            token, self._token = self._token, None
            if token is not None and self._db is not None:
                try:
                    release(self._db, self.holder, token, self.name)
                except Exception:
                    log.warning("engine lease: could not release token %s", token)
            self._close()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def describe(self) -> dict:
        """For /healthz and /metrics."""
        token = self.token
        return {
            "leader": token is not None,
            "holder": self.holder,
            "token": token if token is not None else self.last_token,
            "error": self.error,
        }
