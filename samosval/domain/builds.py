"""Builds: lookups and the rules of a build's life.

A build is ``queued`` when an operator starts it; the engine moves it to
``building``, appends log lines step by step and finishes it ``success``
(creating an image) or ``failed``. Operators may cancel it while it is
active; the watchdog fails it if it stays active too long. Every write checks
the status it expects in its WHERE clause, so a cancel and an engine step
that race cannot both win.
"""

from __future__ import annotations

import sqlite3
import time

from .. import audit, permissions
from ..db import transaction
from ..timeutil import utcnow_iso
from . import N_, Refused
from . import alerts as alert_domain
from . import images as image_domain
from .statuses import ACTIVE_BUILD_STATUSES, BUILD_STATUSES, FINISHED_BUILD_STATUSES  # noqa: F401

_ACTIVE_MARKS = ", ".join("?" * len(ACTIVE_BUILD_STATUSES))


def list_builds_sql(user, status: str = "") -> tuple[str, list]:
    """Builds of the requests ``user`` may see, newest first, for ``paginate``."""
    where, params = permissions.visible_requests_sql(user, "r")
    sql = (
        "SELECT b.id, b.status, b.steps_done, b.steps_total, b.image_id, b.created_at, "
        "b.finished_at, b.request_id, r.image_name, r.version_tag, "
        "u.username AS built_by_username, i.image_tag, i.build_number "
        "FROM builds b JOIN image_requests r ON r.id = b.request_id "
        "JOIN users u ON u.id = b.built_by LEFT JOIN images i ON i.id = b.image_id "
        f"WHERE {where}"
    )
    if status:
        sql += " AND b.status = ?"
        params.append(status)
    return sql + " ORDER BY b.id DESC", params


def get_build(db: sqlite3.Connection, build_id: int):
    """A build with the visibility columns of its request joined in."""
    return db.execute(
        "SELECT b.*, r.owner_id, r.created_by, r.collaborators, r.image_name, "
        "r.version_tag, r.status AS request_status, u.username AS built_by_username "
        "FROM builds b JOIN image_requests r ON r.id = b.request_id "
        "JOIN users u ON u.id = b.built_by WHERE b.id = ?",
        (build_id,),
    ).fetchone()


def builds_of_request(db: sqlite3.Connection, request_id: int, limit: int = 20):
    return db.execute(
        "SELECT b.id, b.status, b.steps_done, b.steps_total, b.image_id, b.created_at, "
        "b.finished_at, b.error_message, u.username AS built_by_username, i.image_tag, "
        "i.build_number FROM builds b JOIN users u ON u.id = b.built_by "
        "LEFT JOIN images i ON i.id = b.image_id WHERE b.request_id = ? "
        "ORDER BY b.id DESC LIMIT ?",
        (request_id, limit),
    ).fetchall()


def log_line(text: str) -> str:
    return text.rstrip("\n") + "\n"


def stamped(text: str, now: float) -> str:
    """Every line of ``text`` prefixed with the time it is written (``HH:MM:SS``, UTC),
    as a CI runner prints it; the build page shows it in its own column."""
    if not text:
        return text
    clock = time.strftime("%H:%M:%S", time.gmtime(now))
    return "".join(f"{clock} {line}" for line in text.splitlines(keepends=True))


def start_build(db: sqlite3.Connection, req, user, now: float, *, retry_of: int | None = None) -> int:
    """Queue a build of an approved request. The engine picks it up (``next_step_at``
    NULL) and schedules it with its own RNG. Staff only (a retry is a build: the same rule)."""
    if not permissions.can_build(user):
        raise Refused("forbidden", permissions.FORBIDDEN)
    if req["status"] != "approved":
        raise Refused("conflict", N_("Only an approved request can be built."))
    with transaction(db):
        # Re-read inside the write lock: the request may have changed meanwhile.
        current = db.execute("SELECT status FROM image_requests WHERE id = ?", (req["id"],)).fetchone()
        if current is None or current["status"] != "approved":
            raise Refused("conflict", N_("Only an approved request can be built."))
        stamp = utcnow_iso(now)
        build_id = db.execute(
            "INSERT INTO builds (request_id, status, build_log, built_by, created_at, updated_at, "
            "steps_done, steps_total, next_step_at, status_since) "
            "VALUES (?, 'queued', ?, ?, ?, ?, 0, 0, NULL, ?)",
            (
                req["id"],
                stamped(
                    log_line(
                        f"Build queued by {user.username} for "
                        f"{req['image_name']}:{req['version_tag']}"
                        + (f" (retry of build #{retry_of})" if retry_of else "")
                    ),
                    now,
                ),
                user.id,
                stamp,
                stamp,
                now,
            ),
        ).lastrowid
        audit.record(
            db,
            "build_start",
            user_id=user.id,
            target_type="build",
            target_id=build_id,
            details={
                "request_id": req["id"],
                "image": f"{req['image_name']}:{req['version_tag']}",
                **({"retry_of": retry_of} if retry_of else {}),
            },
            now=now,
        )
    return build_id


RETRYABLE_BUILD_STATUSES = ("failed", "cancelled")


def retry_build(db: sqlite3.Connection, build, user, now: float) -> int:
    """Retry a failed or cancelled build: a new build of the same request (the old
    one stays as it ended). The request must still be approved, as for any build."""
    if not permissions.can_build(user):
        raise Refused("forbidden", permissions.FORBIDDEN)
    if build["status"] not in RETRYABLE_BUILD_STATUSES:
        raise Refused("conflict", N_("Only a failed or cancelled build can be retried."))
    req = db.execute("SELECT * FROM image_requests WHERE id = ?", (build["request_id"],)).fetchone()
    return start_build(db, req, user, now, retry_of=build["id"])


def cancel_build(db: sqlite3.Connection, build, user, now: float) -> None:
    """Cancel a queued or running build (staff), with a last log line naming who did it."""
    if not permissions.can_cancel_build(user):
        raise Refused("forbidden", permissions.FORBIDDEN)
    with transaction(db):
        cursor = db.execute(
            "UPDATE builds SET status = 'cancelled', next_step_at = NULL, status_since = ?, "
            "finished_at = ?, updated_at = ?, error_message = ?, "
            "build_log = COALESCE(build_log, '') || ? "
            f"WHERE id = ? AND status IN ({_ACTIVE_MARKS})",
            (
                now,
                utcnow_iso(now),
                utcnow_iso(now),
                f"Cancelled by {user.username}.",
                stamped(log_line(f"Build cancelled by {user.username}."), now),
                build["id"],
                *ACTIVE_BUILD_STATUSES,
            ),
        )
        if cursor.rowcount == 0:
            raise Refused("conflict", N_("This build has already finished and cannot be cancelled."))
        audit.record(
            db,
            "build_cancel",
            user_id=user.id,
            target_type="build",
            target_id=build["id"],
            details={"request_id": build["request_id"]},
            now=now,
        )


def append_log(
    db: sqlite3.Connection,
    build_id: int,
    text: str,
    *,
    steps_done: int,
    next_step_at: float | None,
    now: float,
    commit_sha: str | None = None,
) -> bool:
    """Append ``text`` to an active build's log. False if the build is no longer
    active (cancelled meanwhile)."""
    with transaction(db):
        cursor = db.execute(
            "UPDATE builds SET build_log = COALESCE(build_log, '') || ?, steps_done = ?, "
            "next_step_at = ?, updated_at = ?, commit_sha = COALESCE(?, commit_sha) "
            "WHERE id = ? AND status = 'building'",
            (stamped(text, now), steps_done, next_step_at, utcnow_iso(now), commit_sha, build_id),
        )
        return cursor.rowcount == 1


def finish_success(
    db: sqlite3.Connection,
    build_id: int,
    text: str,
    *,
    steps_done: int,
    digest: str,
    now: float,
    commit_sha: str | None = None,
) -> int | None:
    """Finish a build successfully: create its image and link it. Returns the image
    id, or None if the build was no longer active."""
    with transaction(db):
        build = db.execute(
            "SELECT b.id, b.request_id, b.built_by, b.status, r.image_name, r.version_tag "
            "FROM builds b JOIN image_requests r ON r.id = b.request_id WHERE b.id = ?",
            (build_id,),
        ).fetchone()
        if build is None or build["status"] != "building":
            return None
        image_id = image_domain.create_image(db, build, digest=digest, now=now)
        db.execute(
            "UPDATE builds SET status = 'success', image_id = ?, steps_done = ?, "
            "build_log = COALESCE(build_log, '') || ?, next_step_at = NULL, status_since = ?, "
            "finished_at = ?, updated_at = ?, commit_sha = COALESCE(?, commit_sha) WHERE id = ?",
            (
                image_id,
                steps_done,
                stamped(text, now),
                now,
                utcnow_iso(now),
                utcnow_iso(now),
                commit_sha,
                build_id,
            ),
        )
        audit.record(
            db,
            "build_finish",
            user_id=None,
            target_type="build",
            target_id=build_id,
            details={
                "result": "success",
                "image_id": image_id,
                "image": f"{build['image_name']}:{build['version_tag']}",
                "digest": digest,
            },
            now=now,
        )
    return image_id


def finish_failure(
    db: sqlite3.Connection,
    build_id: int,
    text: str,
    error: str,
    *,
    now: float,
    steps_done: int | None = None,
    watchdog: bool = False,
) -> bool:
    """Fail an active build: error message, a final log line, an alert, an audit row.
    False if the build was no longer active."""
    with transaction(db):
        stamp = utcnow_iso(now)
        cursor = db.execute(
            "UPDATE builds SET status = 'failed', error_message = ?, "
            "build_log = COALESCE(build_log, '') || ?, steps_done = COALESCE(?, steps_done), "
            "next_step_at = NULL, status_since = ?, finished_at = ?, updated_at = ? "
            f"WHERE id = ? AND status IN ({_ACTIVE_MARKS})",
            (
                error,
                stamped(text + log_line(f"ERROR: build failed: {error}"), now),
                steps_done,
                now,
                stamp,
                stamp,
                build_id,
                *ACTIVE_BUILD_STATUSES,
            ),
        )
        if cursor.rowcount == 0:
            return False
        alert_domain.raise_alert(
            db, "build_failed", "build", build_id, params={"id": build_id, "reason": error}, now=now
        )
        if watchdog:
            audit.record(
                db,
                "watchdog_timeout",
                target_type="build",
                target_id=build_id,
                details={"reason": error},
                now=now,
            )
        audit.record(
            db,
            "build_finish",
            user_id=None,
            target_type="build",
            target_id=build_id,
            details={"result": "failed", "error": error},
            now=now,
        )
    return True


# PostgreSQL's substr() takes a 32-bit position; a larger offset is past any log.
MAX_LOG_OFFSET = 2**31 - 2


def log_since(db: sqlite3.Connection, build_id: int, offset: int) -> dict | None:
    """The build-log JSON: only the text after ``offset`` characters (SQLite's
    ``substr``/``length`` count characters of TEXT, like Python and JavaScript
    strings of the BMP), so polling never re-sends the whole log."""
    row = db.execute(
        "SELECT status, steps_done, steps_total, image_id, error_message, "
        "length(COALESCE(build_log, '')) AS total, substr(COALESCE(build_log, ''), ? + 1) AS tail "
        "FROM builds WHERE id = ?",
        (min(offset, MAX_LOG_OFFSET), build_id),
    ).fetchone()
    if row is None:
        return None
    total = row["total"]
    steps_total = row["steps_total"] or 0
    finished = row["status"] in FINISHED_BUILD_STATUSES
    if row["status"] == "success":
        progress = 1.0
    elif steps_total:
        progress = min(1.0, row["steps_done"] / steps_total)
    else:
        progress = 0.0
    return {
        "status": row["status"],
        "log": row["tail"] if offset < total else "",
        "offset": total,
        "steps_done": row["steps_done"],
        "steps_total": steps_total,
        "progress": round(progress, 4),
        "image_id": row["image_id"],
        "error_message": row["error_message"],
        "finished": finished,
    }
