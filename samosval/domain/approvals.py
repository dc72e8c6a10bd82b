"""Approvals for protected environments (issue 20): a pending release is approved
(it rolls out), rejected with a reason, or expires after
``SAMOSVAL_APPROVAL_EXPIRY_HOURS``. Four eyes: nobody decides their own request
(``permissions.approval_refusal``). Until then the running release keeps running.
"""

from __future__ import annotations

import sqlite3

from .. import audit, permissions
from ..db import transaction
from ..timeutil import utcnow_iso
from . import N_, Refused
from . import releases as release_domain

MAX_REASON_LENGTH = 500
# Stored as the reason of an expired release; shown translated.
EXPIRED = N_("not approved in time")


def _decidable(db: sqlite3.Connection, release_id: int):
    """The release re-read inside the transaction, still pending."""
    row = release_domain.get_release(db, release_id)
    if row is None:
        raise Refused("not_found", N_("This release no longer exists."))
    if row["status"] != release_domain.PENDING:
        raise Refused("conflict", N_("This release is no longer waiting for approval."))
    return row


def _check(user, release) -> None:
    refusal = permissions.approval_refusal(user, release)
    if refusal is not None:
        raise Refused("forbidden", refusal)


def approve(db: sqlite3.Connection, state, release, user, now: float) -> None:
    """Roll the pending release out now (an approved rollback also pins)."""
    _check(user, release)
    stamp = utcnow_iso(now)
    with transaction(db):
        row = _decidable(db, release["id"])
        db.execute(
            "UPDATE releases SET decided_at = ?, decided_by = ? WHERE id = ?", (stamp, user.id, row["id"])
        )
        release_domain.roll_out_in_transaction(db, row["deployment_id"], row["id"], now, staff=True)
        release_domain.pin_rollback_in_transaction(db, row, user.id, now)
        audit.record(
            db,
            "release_approve",
            user_id=user.id,
            target_type="deployment",
            target_id=row["deployment_id"],
            now=now,
            details={
                "release": release_domain.label(row),
                "number": row["number"],
                "requested_by": row["created_by_name"],
            },
        )
    text = f"{release_domain.label(row)} approved by {user.username}: rolling out"
    logs = state.runtime(row["deployment_id"]).logs
    logs.append(now, "EVENT", text)
    logs.set_status("deploying")


def reject(db: sqlite3.Connection, state, release, user, raw_reason, now: float) -> None:
    """Refuse the pending release with a reason; nothing rolls out."""
    _check(user, release)
    reason = " ".join(str(raw_reason or "").split())
    if not reason:
        raise Refused("invalid", N_("Say why the release is rejected."))
    if len(reason) > MAX_REASON_LENGTH:
        raise Refused("invalid", N_("The reason is at most 500 characters long."))
    with transaction(db):
        row = _decidable(db, release["id"])
        db.execute(
            "UPDATE releases SET status = 'rejected', decided_at = ?, decided_by = ?, "
            "decision_reason = ? WHERE id = ?",
            (utcnow_iso(now), user.id, reason, row["id"]),
        )
        audit.record(
            db,
            "release_reject",
            user_id=user.id,
            target_type="deployment",
            target_id=row["deployment_id"],
            now=now,
            details={
                "release": release_domain.label(row),
                "number": row["number"],
                "requested_by": row["created_by_name"],
                "reason": reason,
            },
        )
    state.runtime(row["deployment_id"]).logs.append(
        now, "EVENT", f"{release_domain.label(row)} rejected by {user.username}: {reason}"
    )


def expire(db: sqlite3.Connection, state, now: float, hours: float) -> int:
    """Pending releases older than ``hours`` expire, with the reason. Returns how many."""
    cutoff = now - hours * 3600
    due = db.execute(
        "SELECT id FROM releases WHERE status = ? AND created_ts < ? ORDER BY id LIMIT 500",
        (release_domain.PENDING, cutoff),
    ).fetchall()
    expired = 0
    for (release_id,) in due:
        with transaction(db):
            changed = db.execute(
                "UPDATE releases SET status = 'expired', decided_at = ?, decision_reason = ? "
                "WHERE id = ? AND status = ? AND created_ts < ?",
                (utcnow_iso(now), EXPIRED, release_id, release_domain.PENDING, cutoff),
            ).rowcount
            if not changed:
                continue
            row = release_domain.get_release(db, release_id)
            audit.record(
                db,
                "release_expire",
                target_type="deployment",
                target_id=row["deployment_id"],
                now=now,
                details={
                    "release": release_domain.label(row),
                    "number": row["number"],
                    "hours": hours,
                    "requested_by": row["created_by_name"],
                },
            )
        expired += 1
        state.runtime(row["deployment_id"]).logs.append(
            now, "EVENT", f"{release_domain.label(row)} expired: not approved within {hours:g} hours"
        )
    return expired
