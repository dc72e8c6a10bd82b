"""Alerts (spec 6.2): something failed and a person should look at it.

The one place that writes, resolves and counts them. A failed build or deployment
raises one; a deployment that runs again resolves its failure alert, and deleting
it resolves the rest; operators and admins resolve alerts by hand.
:func:`raise_alert` and :func:`resolve_for_target` write no transaction of their
own: callers use them inside the transaction that records the failure (or the
recovery).
"""

from __future__ import annotations

import json
import sqlite3

from .. import audit
from ..db import transaction
from ..timeutil import utcnow_iso
from . import N_, Refused

OPEN_LIMIT = 500
RESOLVED_LIMIT = 50

# Alerts written by the spec's schema have no target_type; the type says what failed.
TYPE_TARGETS = {"deployment_failed": "deployment", "build_failed": "build"}

# The text of each alert type (a msgid): rendered in the viewer's language from the
# parameters stored with the alert. ``reason`` is quoted as the simulated tool
# printed it, like a log line.
MESSAGES = {
    "build_failed": N_("Build #%(id)s failed: %(reason)s"),
    "deployment_failed": N_("Deployment %(name)s (#%(id)s) failed: %(reason)s"),
}

_COLUMNS = (
    "al.id, al.alert_type, al.target_type, al.target_id, al.message, al.message_params, al.resolved, "
    "al.created_at, al.resolved_at, al.resolved_by, u.username AS resolved_by_name"
)


def target_type_of(alert) -> str | None:
    return alert["target_type"] or TYPE_TARGETS.get(alert["alert_type"])


def get_alert(db: sqlite3.Connection, alert_id: int):
    return db.execute(
        f"SELECT {_COLUMNS} FROM alerts al LEFT JOIN users u ON u.id = al.resolved_by WHERE al.id = ?",
        (alert_id,),
    ).fetchone()


def list_alerts(
    db: sqlite3.Connection, *, open_limit: int = OPEN_LIMIT, resolved_limit: int = RESOLVED_LIMIT
) -> tuple[list, list]:
    """Open alerts (newest first), then the most recently raised resolved ones.
    Both read ``idx_alerts_open`` (resolved, created_at)."""
    open_alerts = db.execute(
        f"SELECT {_COLUMNS} FROM alerts al LEFT JOIN users u ON u.id = al.resolved_by "
        "WHERE al.resolved = 0 ORDER BY al.created_at DESC, al.id DESC LIMIT ?",
        (open_limit,),
    ).fetchall()
    resolved = db.execute(
        f"SELECT {_COLUMNS} FROM alerts al LEFT JOIN users u ON u.id = al.resolved_by "
        "WHERE al.resolved = 1 ORDER BY al.created_at DESC, al.id DESC LIMIT ?",
        (resolved_limit,),
    ).fetchall()
    return open_alerts, resolved


def latest_for_target(db: sqlite3.Connection, target_type: str, target_id: int):
    """The newest alert about one target (open or resolved), or None."""
    return db.execute(
        f"SELECT {_COLUMNS} FROM alerts al LEFT JOIN users u ON u.id = al.resolved_by "
        "WHERE al.target_id = ? AND (al.target_type = ? OR (al.target_type IS NULL AND al.alert_type = ?)) "
        "ORDER BY al.id DESC LIMIT 1",
        (target_id, target_type, f"{target_type}_failed"),
    ).fetchone()


def open_count(db: sqlite3.Connection) -> int:
    return db.execute("SELECT COUNT(*) FROM alerts WHERE resolved = 0").fetchone()[0]


def resolve_alert(db: sqlite3.Connection, alert_id: int, *, actor_id: int | None, now: float):
    """Resolve by hand, audited as ``alert_resolve``. Refuses an alert that is
    already resolved (two operators clicking at once: the second one is told)."""
    with transaction(db):
        alert = db.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        if alert is None:
            raise Refused("not_found", N_("This alert does not exist."))
        if alert["resolved"]:
            raise Refused("conflict", N_("This alert is already resolved."))
        db.execute(
            "UPDATE alerts SET resolved = 1, resolved_at = ?, resolved_by = ? WHERE id = ?",
            (utcnow_iso(now), actor_id, alert_id),
        )
        audit.record(
            db,
            "alert_resolve",
            user_id=actor_id,
            target_type="alert",
            target_id=alert_id,
            details={
                "alert_type": alert["alert_type"],
                "target_type": target_type_of(alert),
                "target_id": alert["target_id"],
            },
            now=now,
        )
    return get_alert(db, alert_id)


def raise_alert(
    db: sqlite3.Connection, alert_type: str, target_type: str, target_id: int, *, params: dict, now: float
) -> int:
    """Open an alert whose text is ``MESSAGES[alert_type] % params``. Call inside the
    caller's transaction. ``message`` keeps the English text (API, old readers)."""
    return db.execute(
        "INSERT INTO alerts (alert_type, target_type, target_id, message, message_params, resolved, "
        "created_at) VALUES (?, ?, ?, ?, ?, 0, ?)",
        (
            alert_type,
            target_type,
            target_id,
            MESSAGES[alert_type] % params,
            json.dumps(params, ensure_ascii=False, sort_keys=True),
            utcnow_iso(now),
        ),
    ).lastrowid


def message_text(alert, translate) -> str:
    """The alert's text through ``translate`` (gettext); the stored English message
    when the alert has no parameters (written before they were kept)."""
    template = MESSAGES.get(alert["alert_type"])
    if not template or not alert["message_params"]:
        return alert["message"]
    try:
        return translate(template) % json.loads(alert["message_params"])
    except (ValueError, TypeError, KeyError):
        return alert["message"]


def resolve_for_target(
    db: sqlite3.Connection,
    target_type: str,
    target_id: int,
    *,
    alert_type: str | None = None,
    now: float,
    actor_id: int | None = None,
) -> int:
    """Resolve the open alerts about one target: automatically (``actor_id`` None:
    nobody clicked), or because ``actor_id`` removed the target. Call inside the
    caller's transaction; returns how many."""
    sql = (
        "UPDATE alerts SET resolved = 1, resolved_at = ?, resolved_by = ? WHERE resolved = 0 "
        "AND target_id = ? AND (target_type = ? OR (target_type IS NULL AND alert_type = ?))"
    )
    params = [utcnow_iso(now), actor_id, target_id, target_type, f"{target_type}_failed"]
    if alert_type:
        sql += " AND alert_type = ?"
        params.append(alert_type)
    return db.execute(sql, params).rowcount
