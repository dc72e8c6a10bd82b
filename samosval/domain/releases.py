"""Releases (issue 20): every rollout of a deployment is a numbered release, v1, v2, ...

A release holds what rolled out (image tag and digest, commit, a reference to the
configuration), what triggered it (a user, a webhook delivery, a rollback), when,
and its outcome. Rollouts are: creating a deployment, a commit the webhook
restarts it with, a configuration change, and a rollback. Starting or restarting
with nothing new rolls the current release out again (no new number).

:func:`propose` is the one entry point of a new release: in a protected environment
it waits as ``pending_approval`` (``approvals`` decides); elsewhere it rolls out at
once. A rollback pins the deployment: the commit hook restarts it no more until
someone unpins it.

Functions named ``*_in_transaction`` write inside the caller's transaction; the
others open their own and write the deployment's log lines after committing.
"""

from __future__ import annotations

import sqlite3

from .. import audit, permissions
from ..db import transaction
from ..timeutil import utcnow_iso
from . import N_, Refused, parse_id
from .digests import image_digest
from .environments import is_protected

PENDING = "pending_approval"
RELEASE_STATUSES = (PENDING, "deploying", "running", "failed", "rejected", "expired", "cancelled")
# Statuses of a release that never rolled out.
UNDEPLOYED = (PENDING, "rejected", "expired", "cancelled")
TRIGGERS = ("user", "webhook", "rollback")
CAUSES = ("create", "commit", "config", "rollback")

ABANDONED = N_("replaced by a newer rollout before it was running")
STOPPED = N_("stopped before it was running")

_SELECT = (
    "SELECT rel.*, u.username AS created_by_name, v.username AS decided_by_name FROM releases rel "
    "LEFT JOIN users u ON u.id = rel.created_by LEFT JOIN users v ON v.id = rel.decided_by "
)


# --- reading -----------------------------------------------------------------------------


def list_releases(db: sqlite3.Connection, deployment_id: int, limit: int | None = None) -> list:
    """Newest first."""
    sql = _SELECT + "WHERE rel.deployment_id = ? ORDER BY rel.number DESC"
    params: list = [deployment_id]
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return db.execute(sql, params).fetchall()


def releases_sql(deployment_id: int) -> tuple[str, list]:
    """A deployment's releases, newest first, for cursor pages (the API)."""
    return _SELECT + "WHERE rel.deployment_id = ? ORDER BY rel.id DESC", [deployment_id]


def get_release(db: sqlite3.Connection, release_id: int):
    return db.execute(_SELECT + "WHERE rel.id = ?", (release_id,)).fetchone()


def get_by_number(db: sqlite3.Connection, deployment_id: int, number: int):
    return db.execute(
        _SELECT + "WHERE rel.deployment_id = ? AND rel.number = ?", (deployment_id, number)
    ).fetchone()


def previous_release(db: sqlite3.Connection, release):
    """The release this one is compared with: the closest earlier one that rolled out."""
    marks = ", ".join("?" * len(UNDEPLOYED))
    return db.execute(
        _SELECT + f"WHERE rel.deployment_id = ? AND rel.number < ? AND rel.status NOT IN ({marks}) "
        "ORDER BY rel.number DESC LIMIT 1",
        (release["deployment_id"], release["number"], *UNDEPLOYED),
    ).fetchone()


def current_release(db: sqlite3.Connection, deployment_id: int):
    return db.execute(
        _SELECT + "JOIN deployments d ON d.current_release_id = rel.id WHERE d.id = ?", (deployment_id,)
    ).fetchone()


def changes(previous, release) -> list[dict]:
    """What changed since ``previous``: image, digest, commit, configuration."""
    fields = (
        ("image", "image_tag"),
        ("digest", "image_digest"),
        ("commit", "commit_sha"),
        ("configuration", "config_version"),
    )
    if previous is None:
        return [
            {"field": name, "before": None, "after": release[column]}
            for name, column in fields
            if release[column] is not None
        ]
    return [
        {"field": name, "before": previous[column], "after": release[column]}
        for name, column in fields
        if previous[column] != release[column]
    ]


def label(release) -> str:
    """ "v7" or "v7: rollback to v4": the release's name in logs and audit rows."""
    if release["rollback_of"]:
        return f"v{release['number']}: rollback to v{release['rollback_of']}"
    return f"v{release['number']}"


def to_json(release, current_release_id: int | None = None) -> dict:
    return {
        "id": release["id"],
        "number": release["number"],
        "status": release["status"],
        "image_tag": release["image_tag"],
        "image_digest": release["image_digest"],
        "commit": release["commit_sha"],
        "config_version": release["config_version"],
        "trigger": release["trigger_kind"],
        "cause": release["cause"],
        "rollback_of": release["rollback_of"],
        "delivery_id": release["delivery_id"],
        "created_at": release["created_at"],
        "created_by": release["created_by_name"],
        "failure_reason": release["failure_reason"],
        "decided_by": release["decided_by_name"],
        "decided_at": release["decided_at"],
        "decision_reason": release["decision_reason"],
        "current": current_release_id is not None and release["id"] == current_release_id,
    }


def pending_releases_sql(user) -> tuple[str, list]:
    """Pending releases of deployments ``user`` may see, oldest first."""
    where, params = permissions.visible_requests_sql(user, "r")
    return (
        "SELECT rel.*, u.username AS created_by_name, d.name AS deployment_name, d.environment "
        "FROM releases rel JOIN deployments d ON d.id = rel.deployment_id "
        "JOIN images i ON i.id = d.image_id JOIN image_requests r ON r.id = i.request_id "
        "LEFT JOIN users u ON u.id = rel.created_by "
        f"WHERE rel.status = ? AND {where} ORDER BY rel.created_ts, rel.id",
        [PENDING, *params],
    )


def pending_count(db: sqlite3.Connection, user) -> int:
    sql, params = pending_releases_sql(user)
    return db.execute(f"SELECT COUNT(*) FROM ({sql}) AS pending", params).fetchone()[0]


# --- writing -------------------------------------------------------------------------------


def insert_in_transaction(
    db: sqlite3.Connection,
    deployment_id: int,
    *,
    status: str,
    image_id: int,
    image_tag: str,
    image_digest_value: str,
    commit: str | None,
    config_version: int | None,
    trigger: str,
    cause: str,
    created_by: int | None,
    now: float,
    rollback_of: int | None = None,
    delivery_id: int | None = None,
) -> int:
    """The next number of the deployment, inside the caller's (IMMEDIATE) transaction."""
    number = db.execute(
        "SELECT COALESCE(MAX(number), 0) + 1 FROM releases WHERE deployment_id = ?", (deployment_id,)
    ).fetchone()[0]
    return db.execute(
        "INSERT INTO releases (deployment_id, number, status, image_id, image_tag, image_digest, "
        "commit_sha, config_version, trigger_kind, cause, rollback_of, delivery_id, created_at, "
        "created_ts, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            deployment_id,
            number,
            status,
            image_id,
            image_tag,
            image_digest_value,
            commit,
            config_version,
            trigger,
            cause,
            rollback_of,
            delivery_id,
            utcnow_iso(now),
            now,
            created_by,
        ),
    ).lastrowid


def _deployment_source(db: sqlite3.Connection, deployment_id: int):
    """What the deployment runs now: its image, commit and current configuration."""
    return db.execute(
        "SELECT d.id, d.name, d.environment, d.status, d.image_id, d.last_commit, d.current_release_id, "
        "i.image_tag, i.digest, rel.config_version FROM deployments d JOIN images i ON i.id = d.image_id "
        "LEFT JOIN releases rel ON rel.id = d.current_release_id WHERE d.id = ?",
        (deployment_id,),
    ).fetchone()


def roll_out_in_transaction(
    db: sqlite3.Connection, deployment_id: int, release_id: int, now: float, *, staff: bool = False
) -> None:
    """Make ``release_id`` the deployment's current release and start rolling it out:
    the deployment takes its image and commit and goes to ``deploying``. A rollout
    still in progress is abandoned (its release fails with a reason). ``staff``
    clears the operator's stop, as a start by staff does."""
    stamp = utcnow_iso(now)
    db.execute(
        "UPDATE releases SET status = 'failed', failure_reason = ?, finished_at = ? "
        "WHERE deployment_id = ? AND status = 'deploying' AND id != ?",
        (ABANDONED, stamp, deployment_id, release_id),
    )
    release = db.execute("SELECT image_id, commit_sha FROM releases WHERE id = ?", (release_id,)).fetchone()
    db.execute(
        "UPDATE releases SET status = 'deploying', failure_reason = NULL, finished_at = NULL WHERE id = ?",
        (release_id,),
    )
    db.execute(
        "UPDATE deployments SET status = 'deploying', next_step_at = NULL, status_since = ?, "
        "updated_at = ?, needs_restart = 0, current_release_id = ?, image_id = COALESCE(?, image_id), "
        "last_commit = ?, stopped_by_operator = CASE WHEN ? THEN 0 ELSE stopped_by_operator END "
        "WHERE id = ?",
        (now, stamp, release_id, release["image_id"], release["commit_sha"], staff, deployment_id),
    )


def propose_in_transaction(
    db: sqlite3.Connection,
    deployment_id: int,
    *,
    requested_by: int | None,
    trigger: str,
    cause: str,
    now: float,
    commit: str | None = None,
    keep_commit: bool = True,
    image_id: int | None = None,
    config_version: int | None = None,
    keep_config: bool = True,
    rollback_of: int | None = None,
    delivery_id: int | None = None,
    staff: bool = False,
    same_as=None,
) -> tuple[int, bool]:
    """A new release of the deployment, from what it runs now with the given changes
    (a new ``commit``, ``image_id`` or ``config_version``), or exactly what release
    ``same_as`` ran (a rollback: its image tag and digest, commit and configuration).
    In a protected environment
    it waits for approval (an older pending one of the same deployment is cancelled:
    only the newest request counts); elsewhere it rolls out now. Audited. Returns
    ``(release id, pending)``."""
    source = _deployment_source(db, deployment_id)
    if source is None:
        raise Refused("not_found", N_("This deployment no longer exists."))
    if same_as is not None:
        image_id, tag, digest = same_as["image_id"], same_as["image_tag"], same_as["image_digest"]
        commit, config_version, keep_commit, keep_config = (
            same_as["commit_sha"],
            same_as["config_version"],
            False,
            False,
        )
    elif image_id is not None and image_id != source["image_id"]:
        image = db.execute("SELECT id, image_tag, digest FROM images WHERE id = ?", (image_id,)).fetchone()
        if image is None:
            raise Refused("not_found", N_("This image no longer exists."))
        tag, digest = image["image_tag"], image_digest(image["image_tag"], image["id"], image["digest"])
    else:
        image_id, tag = source["image_id"], source["image_tag"]
        digest = image_digest(tag, image_id, source["digest"])
    if commit is None and keep_commit:
        commit = source["last_commit"]
    if config_version is None and keep_config:
        config_version = source["config_version"]
    pending = is_protected(db, source["environment"])
    if pending:
        db.execute(
            "UPDATE releases SET status = 'cancelled', decided_at = ?, decision_reason = ? "
            "WHERE deployment_id = ? AND status = ?",
            (utcnow_iso(now), N_("replaced by a newer request"), deployment_id, PENDING),
        )
    release_id = insert_in_transaction(
        db,
        deployment_id,
        status=PENDING if pending else "deploying",
        image_id=image_id,
        image_tag=tag,
        image_digest_value=digest,
        commit=commit,
        config_version=config_version,
        trigger=trigger,
        cause=cause,
        created_by=requested_by,
        now=now,
        rollback_of=rollback_of,
        delivery_id=delivery_id,
    )
    if not pending:
        roll_out_in_transaction(db, deployment_id, release_id, now, staff=staff)
    release = get_release(db, release_id)
    audit.record(
        db,
        "release_request" if pending else "release_create",
        user_id=requested_by,
        target_type="deployment",
        target_id=deployment_id,
        now=now,
        details={
            "release": label(release),
            "number": release["number"],
            "image": tag,
            "digest": digest,
            "commit": commit,
            "config_version": config_version,
            "trigger": trigger,
            "cause": cause,
            "delivery": delivery_id,
            "environment": source["environment"],
        },
    )
    return release_id, pending


def attach_delivery_in_transaction(db: sqlite3.Connection, release_ids: list[int], delivery_id: int) -> None:
    """The webhook writes its delivery row last: point its releases at it."""
    if release_ids:
        db.execute(
            f"UPDATE releases SET delivery_id = ? WHERE id IN ({', '.join('?' * len(release_ids))})",
            [delivery_id, *release_ids],
        )


def redeploy_current_in_transaction(
    db: sqlite3.Connection, deployment_id: int, *, user_id: int | None, now: float
) -> None:
    """A start or restart rolls the current release out again. A deployment from
    before releases gets its v1 now; one whose first release was never approved has
    nothing to start."""
    row = _deployment_source(db, deployment_id)
    if row is None:
        return
    if row["current_release_id"] is not None:
        db.execute(
            "UPDATE releases SET status = 'deploying', failure_reason = NULL, finished_at = NULL "
            "WHERE id = ?",
            (row["current_release_id"],),
        )
        return
    if db.execute("SELECT 1 FROM releases WHERE deployment_id = ?", (deployment_id,)).fetchone():
        raise Refused(
            "conflict", N_("No release of this deployment has been approved yet: there is nothing to start.")
        )
    release_id = insert_in_transaction(
        db,
        deployment_id,
        status="deploying",
        image_id=row["image_id"],
        image_tag=row["image_tag"],
        image_digest_value=image_digest(row["image_tag"], row["image_id"], row["digest"]),
        commit=row["last_commit"],
        config_version=None,
        trigger="user",
        cause="create",
        created_by=user_id,
        now=now,
    )
    db.execute("UPDATE deployments SET current_release_id = ? WHERE id = ?", (release_id, deployment_id))


def stopped_in_transaction(db: sqlite3.Connection, deployment_id: int, now: float) -> None:
    """A stop during a rollout: that release's outcome is a failure with the reason."""
    db.execute(
        "UPDATE releases SET status = 'failed', failure_reason = ?, finished_at = ? WHERE id = "
        "(SELECT current_release_id FROM deployments WHERE id = ?) AND status = 'deploying'",
        (STOPPED, utcnow_iso(now), deployment_id),
    )


def settle_in_transaction(
    db: sqlite3.Connection, deployment_id: int, outcome: str, now: float, reason: str | None = None
) -> None:
    """The engine's verdict on the current rollout: ``running`` or ``failed`` (with why)."""
    db.execute(
        "UPDATE releases SET status = ?, failure_reason = ?, finished_at = ? WHERE id = "
        "(SELECT current_release_id FROM deployments WHERE id = ?) AND status = 'deploying'",
        (outcome, reason, utcnow_iso(now), deployment_id),
    )


def _event(state, deployment_id: int, now: float, text: str, status: str | None = None) -> None:
    logs = state.runtime(deployment_id).logs
    logs.append(now, "EVENT", text)
    if status is not None:
        logs.set_status(status)


# --- rollback and pinning --------------------------------------------------------------------

ROLLBACK_FROM = ("running", "failed", "stopped")


def rollback(db: sqlite3.Connection, state, deployment, user, raw_number, now: float) -> tuple[int, bool]:
    """Roll release ``raw_number``'s image, commit and configuration out as a new
    release ("v7: rollback to v4") and pin the deployment. Whoever may restart the
    deployment may roll it back. Returns ``(new release id, pending approval)``."""
    if not permissions.can_rollback(user, deployment):
        raise Refused("forbidden", permissions.FORBIDDEN)
    number = parse_id(raw_number)
    if number is None:
        raise Refused("invalid", N_("Choose a release number to roll back to."))
    deployment_id = deployment["id"]
    with transaction(db):
        current = db.execute(
            "SELECT status, current_release_id FROM deployments WHERE id = ?", (deployment_id,)
        ).fetchone()
        if current is None:
            raise Refused("not_found", N_("This deployment no longer exists."))
        if current["status"] not in ROLLBACK_FROM:
            raise Refused("conflict", N_("Wait until the rollout in progress has finished, then roll back."))
        target = get_by_number(db, deployment_id, number)
        if target is None:
            raise Refused("not_found", N_("This deployment has no such release."))
        if target["id"] == current["current_release_id"]:
            raise Refused("conflict", N_("This release is the current one: there is nothing to roll back."))
        if target["status"] != "running":
            raise Refused("conflict", N_("Only a release that ran can be rolled back to."))
        staff = permissions.stops_as_operator(user)
        release_id, pending = propose_in_transaction(
            db,
            deployment_id,
            requested_by=user.id,
            trigger="rollback",
            cause="rollback",
            now=now,
            same_as=target,
            rollback_of=number,
            staff=staff,
        )
        release = get_release(db, release_id)
        if not pending:
            _pin_in_transaction(db, deployment_id, user.id, now)
        audit.record(
            db,
            "deployment_rollback",
            user_id=user.id,
            target_type="deployment",
            target_id=deployment_id,
            now=now,
            details={"release": label(release), "to": number, "pending": pending, "pinned": not pending},
        )
    if pending:
        _event(
            state, deployment_id, now, f"{label(release)} requested by {user.username}: waiting for approval"
        )
    else:
        _event(
            state,
            deployment_id,
            now,
            f"{label(release)} by {user.username}; the deployment is pinned",
            "deploying",
        )
    return release_id, pending


def _pin_in_transaction(db: sqlite3.Connection, deployment_id: int, user_id: int | None, now: float) -> None:
    db.execute(
        "UPDATE deployments SET pinned_at = ?, pinned_by = ?, updated_at = ? WHERE id = ?",
        (utcnow_iso(now), user_id, utcnow_iso(now), deployment_id),
    )


def pin_rollback_in_transaction(db: sqlite3.Connection, release, approver_id: int | None, now: float) -> None:
    """An approved rollback pins like an immediate one; the pin is the requester's."""
    if release["trigger_kind"] == "rollback":
        _pin_in_transaction(db, release["deployment_id"], release["created_by"] or approver_id, now)


def unpin(db: sqlite3.Connection, state, deployment, user, now: float) -> None:
    """Let the commit hook restart the deployment again."""
    if not permissions.can_rollback(user, deployment):
        raise Refused("forbidden", permissions.FORBIDDEN)
    with transaction(db):
        changed = db.execute(
            "UPDATE deployments SET pinned_at = NULL, pinned_by = NULL, updated_at = ? "
            "WHERE id = ? AND pinned_at IS NOT NULL",
            (utcnow_iso(now), deployment["id"]),
        ).rowcount
        if not changed:
            raise Refused("conflict", N_("The deployment is not pinned."))
        audit.record(
            db,
            "deployment_unpin",
            user_id=user.id,
            target_type="deployment",
            target_id=deployment["id"],
            details={"name": deployment["name"]},
            now=now,
        )
    _event(state, deployment["id"], now, f"Unpinned by {user.username}: new commits restart it again")
