"""Server-side sessions: one row per signed-in browser.

The login cookie carries a random token; the table keeps only its SHA-256, so a
copy of the database does not let anyone sign in. A session is alive while
:func:`is_alive` says so (the one rule): the user is active, nothing has ended
all of their sessions since (``users.session_version``, bumped by a password
change, block, role change, admin reset or "sign out everywhere"), it has been
used within the idle timeout, and it is younger than the absolute lifetime.

Every function takes the caller's ``now`` (epoch seconds).
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3

from .. import audit
from ..db import transaction
from ..timeutil import iso_to_epoch, utcnow_iso
from . import N_, Refused, parse_id, without_nul

TOKEN_BYTES = 32
# ``last_seen_at`` is written at most once a minute per session: no write per request.
LAST_SEEN_STEP_SECONDS = 60
USER_AGENT_MAX = 200
ADDRESS_MAX = 64
# A script that logs in again and again does not grow the table: past this many
# sessions a person's least recently used ones are ended.
MAX_SESSIONS_PER_USER = 50


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def is_alive(session, user, *, now: float, idle_seconds: float, max_seconds: float) -> bool:
    """May this session still act for ``user``? Pure: rows and numbers only."""
    if session is None or user is None or not user["is_active"]:
        return False
    if session["user_id"] != user["id"] or session["session_version"] != user["session_version"]:
        return False
    if now - iso_to_epoch(session["last_seen_at"]) > idle_seconds:
        return False
    return now - iso_to_epoch(session["created_at"]) <= max_seconds


def start_session(
    db: sqlite3.Connection,
    user,
    *,
    now: float,
    address: str | None,
    user_agent: str | None,
    idle_seconds: float,
    max_seconds: float,
) -> tuple[str, int]:
    """Open a session for ``user`` (a row); returns its token, which is shown once
    (it goes into the login cookie) and stored only hashed, and its id. Sessions of
    anyone that can no longer be alive are deleted on the way, so browsers that
    were simply closed do not pile up."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    stamp = utcnow_iso(now)
    with transaction(db):
        session_id = db.execute(
            "INSERT INTO sessions (token_hash, user_id, session_version, created_at, last_seen_at, "
            "address, user_agent) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                hash_token(token),
                user["id"],
                user["session_version"],
                stamp,
                stamp,
                (address or "")[:ADDRESS_MAX] or None,
                without_nul(user_agent or "")[:USER_AGENT_MAX] or None,
            ),
        ).lastrowid
        # Sessions retired by a version bump are dead for good: forget them now.
        db.execute(
            "DELETE FROM sessions WHERE user_id = ? AND session_version != ?",
            (user["id"], user["session_version"]),
        )
        db.execute(
            "DELETE FROM sessions WHERE last_seen_at < ? OR created_at < ?",
            (utcnow_iso(now - idle_seconds), utcnow_iso(now - max_seconds)),
        )
        db.execute(
            "DELETE FROM sessions WHERE user_id = ? AND id NOT IN (SELECT id FROM sessions "
            "WHERE user_id = ? ORDER BY last_seen_at DESC, id DESC LIMIT ?)",
            (user["id"], user["id"], MAX_SESSIONS_PER_USER),
        )
    return token, session_id


def resolve(db: sqlite3.Connection, token: str, *, now: float, idle_seconds: float, max_seconds: float):
    """The ``(session, user)`` rows a cookie's token stands for, or None when the
    session is unknown or no longer alive (a dead one is deleted on the way)."""
    if not token or not isinstance(token, str):
        return None
    session = db.execute("SELECT * FROM sessions WHERE token_hash = ?", (hash_token(token),)).fetchone()
    if session is None:
        return None
    user = db.execute("SELECT * FROM users WHERE id = ?", (session["user_id"],)).fetchone()
    if not is_alive(session, user, now=now, idle_seconds=idle_seconds, max_seconds=max_seconds):
        with transaction(db):
            db.execute("DELETE FROM sessions WHERE id = ?", (session["id"],))
        return None
    if now - iso_to_epoch(session["last_seen_at"]) >= LAST_SEEN_STEP_SECONDS:
        with transaction(db):
            db.execute("UPDATE sessions SET last_seen_at = ? WHERE id = ?", (utcnow_iso(now), session["id"]))
        session = db.execute("SELECT * FROM sessions WHERE id = ?", (session["id"],)).fetchone()
    return session, user


def get_session(db: sqlite3.Connection, session_id: int):
    return db.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()


def list_sessions(
    db: sqlite3.Connection, user_id: int, *, now: float, idle_seconds: float, max_seconds: float
) -> list:
    """The user's live sessions, the most recently used first."""
    user = db.execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchone()
    rows = db.execute(
        "SELECT * FROM sessions WHERE user_id = ? ORDER BY last_seen_at DESC, id DESC", (user_id,)
    ).fetchall()
    return [
        row
        for row in rows
        if is_alive(row, user, now=now, idle_seconds=idle_seconds, max_seconds=max_seconds)
    ]


def parse_session_id(raw) -> int:
    value = parse_id(raw)
    if value is None:
        raise Refused("invalid", N_("Choose a session to end."))
    return value


def end_session(
    db: sqlite3.Connection,
    session_id: int,
    *,
    user_id: int,
    actor_id: int | None,
    now: float,
    action: str = "session_end",
    missing_ok: bool = False,
) -> bool:
    """End one session of ``user_id`` (its owner signing out or revoking it, or an
    admin). A session of someone else is refused as missing: ids are not secrets,
    but nobody learns about another user's sessions this way. With ``missing_ok``
    (signing out), a session already ended is no refusal: returns False."""
    with transaction(db):
        found = db.execute("DELETE FROM sessions WHERE id = ? AND user_id = ?", (session_id, user_id))
        if found.rowcount == 0:
            if missing_ok:
                return False
            raise Refused("not_found", N_("This session has already ended."))
        audit.record(
            db,
            action,
            user_id=actor_id,
            target_type="user",
            target_id=user_id,
            details={"session": session_id},
            now=now,
        )
    return True


def end_all_sessions(db: sqlite3.Connection, user_id: int, *, actor_id: int | None, now: float) -> None:
    """End every session of ``user_id``: the version bump kills cookies that were
    already issued, the delete tidies the list."""
    with transaction(db):
        db.execute("UPDATE users SET session_version = session_version + 1 WHERE id = ?", (user_id,))
        db.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))
        audit.record(db, "sessions_end_all", user_id=actor_id, target_type="user", target_id=user_id, now=now)


def stream_key(session_id: int) -> tuple[str, int]:
    """The key live log streams share one session's row under (``SimulationState.fresh``)."""
    return ("session", session_id)
