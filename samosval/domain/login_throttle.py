"""Growing delays per username after wrong passwords, wherever they come from.

The per-address limits (Flask-Limiter, in the routes) stop one address guessing;
this stops a guesser spread over many addresses. The first ``free_failures``
wrong passwords (setting ``LOGIN_DELAY_AFTER_FAILURES``, default 10) cost nothing:
an owner's typos, or a stranger's five tries from one address that the
per-address limit already stopped. After that every failure makes the next
attempt wait: 1 s, 2 s, 4 s ... up to ``max_delay`` (``LOGIN_DELAY_MAX_SECONDS``,
default 180). While the delay holds, attempts are answered "try again in N
seconds" without checking the password, so an hour of guessing gets at most
``guesses_per_hour()`` tries (37 with the defaults) however many addresses send
them. Nothing ever locks the account: the owner waits at most ``max_delay``. An
hour without failures forgets the count.

Rows live in the database so every worker and restart agrees; old rows are
purged as new ones are written, so the table stays small.
"""

from __future__ import annotations

import math
import sqlite3

from ..db import transaction

FREE_FAILURES = 10
BASE_DELAY_SECONDS = 1.0
MAX_DELAY_SECONDS = 180.0
FORGET_AFTER_SECONDS = 3600.0
KEY_MAX = 64


def key_for(username: str) -> str:
    return (username or "").strip().lower()[:KEY_MAX]


def delay_after(
    failures: int, free_failures: int = FREE_FAILURES, max_delay: float = MAX_DELAY_SECONDS
) -> float:
    """Seconds the next attempt must wait after ``failures`` failures in a row."""
    if failures <= free_failures:
        return 0.0
    # min() before the power would overflow: the exponent is capped first.
    return min(max_delay, BASE_DELAY_SECONDS * 2 ** min(failures - free_failures - 1, 62))


def guesses_per_hour(free_failures: int = FREE_FAILURES, max_delay: float = MAX_DELAY_SECONDS) -> int:
    """The most guesses one username can receive in an hour, however many addresses."""
    elapsed, guesses = 0.0, 0
    while elapsed <= 3600:
        guesses += 1
        elapsed += delay_after(guesses, free_failures, max_delay)
    return guesses


def retry_after(db: sqlite3.Connection, username: str, *, now: float) -> int:
    """Whole seconds to wait before this username may try again (0: go ahead)."""
    row = db.execute(
        "SELECT blocked_until FROM login_throttle WHERE username = ?", (key_for(username),)
    ).fetchone()
    if row is None or row["blocked_until"] <= now:
        return 0
    return max(1, math.ceil(row["blocked_until"] - now))


def record_failure(
    db: sqlite3.Connection,
    username: str,
    *,
    now: float,
    free_failures: int = FREE_FAILURES,
    max_delay: float = MAX_DELAY_SECONDS,
) -> float:
    """Count one wrong password for ``username``; returns the delay it now carries."""
    key = key_for(username)
    with transaction(db):
        row = db.execute(
            "SELECT failures, last_failure_at FROM login_throttle WHERE username = ?", (key,)
        ).fetchone()
        failures = 1
        if row is not None and now - row["last_failure_at"] <= FORGET_AFTER_SECONDS:
            failures = row["failures"] + 1
        delay = delay_after(failures, free_failures, max_delay)
        db.execute(
            "INSERT INTO login_throttle (username, failures, last_failure_at, blocked_until) "
            "VALUES (?, ?, ?, ?) ON CONFLICT(username) DO UPDATE SET failures = excluded.failures, "
            "last_failure_at = excluded.last_failure_at, blocked_until = excluded.blocked_until",
            (key, failures, now, now + delay),
        )
        db.execute(
            "DELETE FROM login_throttle WHERE last_failure_at < ? AND blocked_until < ?",
            (now - FORGET_AFTER_SECONDS, now),
        )
    return delay
