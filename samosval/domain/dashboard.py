"""The dashboard: each role's own work, 14-day trends, counts and recent events,
limited to what the user may see."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

from .. import permissions
from ..db import ilike
from . import N_, Refused
from . import alerts as alert_domain
from . import releases as release_domain
from .audit_queries import target_links
from .deployments import DEPLOYMENT_STATUSES
from .requests import REQUEST_STATUSES
from .users import like_escape

TREND_DAYS = 14
LIST_LIMIT = 8
# Requests a developer still has to act on or wait for (finished ones drop off).
OPEN_REQUEST_STATUSES = ("draft", "submitted", "in_review", "rejected", "approved")


def my_requests(db: sqlite3.Connection, user, limit: int = LIST_LIMIT) -> list:
    """The requests ``user`` created or owns, still open, recently changed first."""
    marks = ", ".join("?" * len(OPEN_REQUEST_STATUSES))
    return db.execute(
        "SELECT r.id, r.image_name, r.version_tag, r.status, r.updated_at FROM image_requests r "
        "WHERE r.id IN (SELECT id FROM image_requests WHERE owner_id = ? "
        "UNION SELECT id FROM image_requests WHERE created_by = ?) "
        f"AND r.status IN ({marks}) ORDER BY r.updated_at DESC, r.id DESC LIMIT ?",
        (user.id, user.id, *OPEN_REQUEST_STATUSES, limit),
    ).fetchall()


def deployments_needing_attention(db: sqlite3.Connection, user, limit: int = LIST_LIMIT) -> list:
    """Visible deployments that failed, wait for a restart onto a new commit, or are rolling out."""
    where, params = permissions.visible_requests_sql(user, "r")
    return db.execute(
        "SELECT d.id, d.name, d.environment, d.status, d.needs_restart, d.updated_at, i.image_tag "
        "FROM deployments d JOIN images i ON i.id = d.image_id JOIN image_requests r ON r.id = i.request_id "
        f"WHERE {where} AND (d.status IN ('failed', 'deploying') OR d.needs_restart = 1) "
        "ORDER BY CASE d.status WHEN 'failed' THEN 0 WHEN 'deploying' THEN 1 ELSE 2 END, "
        "d.updated_at DESC LIMIT ?",
        (*params, limit),
    ).fetchall()


def review_queue(db: sqlite3.Connection, limit: int = LIST_LIMIT) -> list:
    """Requests waiting for a reviewer: in review first, then submitted; oldest first.
    One ordered walk of idx_requests_status per status, each stopping at ``limit``
    (one query over both would sort every waiting request: 130 ms at 100,000)."""
    rows = []
    for status in ("in_review", "submitted"):
        rows += db.execute(
            "SELECT r.id, r.image_name, r.version_tag, r.status, r.updated_at, u.username AS owner "
            "FROM image_requests r JOIN users u ON u.id = r.owner_id WHERE r.status = ? "
            "ORDER BY r.updated_at, r.id LIMIT ?",
            (status, limit - len(rows)),
        ).fetchall()
        if len(rows) >= limit:
            break
    return rows


def failing_deployments(db: sqlite3.Connection, limit: int = LIST_LIMIT) -> list:
    return db.execute(
        "SELECT d.id, d.name, d.environment, d.status, d.updated_at, i.image_tag "
        "FROM deployments d JOIN images i ON i.id = d.image_id WHERE d.status = 'failed' "
        "ORDER BY d.updated_at DESC, d.id DESC LIMIT ?",
        (limit,),
    ).fetchall()


def running_builds(db: sqlite3.Connection, limit: int = LIST_LIMIT) -> list:
    return db.execute(
        "SELECT b.id, b.status, b.steps_done, b.steps_total, b.created_at, r.image_name, r.version_tag "
        "FROM builds b JOIN image_requests r ON r.id = b.request_id "
        "WHERE b.status IN ('queued', 'building') ORDER BY b.id LIMIT ?",
        (limit,),
    ).fetchall()


def trends(db: sqlite3.Connection, user, now: float, days: int = TREND_DAYS) -> dict:
    """Per UTC day over the last ``days`` (today included): builds and deployments
    started, and the share of finished ones that failed (%, None on a day with
    nothing finished). Only what ``user`` may see."""
    today = datetime.fromtimestamp(now, tz=UTC).date()
    first = today - timedelta(days=days - 1)
    labels = [(first + timedelta(days=i)).isoformat() for i in range(days)]
    index = {label: i for i, label in enumerate(labels)}
    since = first.isoformat()
    where, params = permissions.visible_requests_sql(user, "r")
    builds, deployments = [0] * days, [0] * days
    finished, failed = [0] * days, [0] * days
    for row in db.execute(
        "SELECT substr(b.created_at, 1, 10) AS day, COUNT(*) AS n, "
        "SUM(CASE WHEN b.status IN ('success', 'failed') THEN 1 ELSE 0 END) AS done, "
        "SUM(CASE WHEN b.status = 'failed' THEN 1 ELSE 0 END) AS bad "
        "FROM builds b JOIN image_requests r ON r.id = b.request_id "
        f"WHERE b.created_at >= ? AND {where} GROUP BY day",
        (since, *params),
    ):
        if row["day"] in index:
            i = index[row["day"]]
            builds[i], finished[i], failed[i] = row["n"], row["done"] or 0, row["bad"] or 0
    for row in db.execute(
        "SELECT substr(d.created_at, 1, 10) AS day, COUNT(*) AS n, "
        "SUM(CASE WHEN d.status IN ('running', 'stopped', 'failed') THEN 1 ELSE 0 END) AS done, "
        "SUM(CASE WHEN d.status = 'failed' THEN 1 ELSE 0 END) AS bad "
        "FROM deployments d JOIN images i ON i.id = d.image_id JOIN image_requests r ON r.id = i.request_id "
        f"WHERE d.created_at >= ? AND {where} GROUP BY day",
        (since, *params),
    ):
        if row["day"] in index:
            i = index[row["day"]]
            deployments[i] = row["n"]
            finished[i] += row["done"] or 0
            failed[i] += row["bad"] or 0
    rate = [round(100.0 * bad / done, 1) if done else None for bad, done in zip(failed, finished)]
    return {
        "labels": labels,
        "builds": builds,
        "deployments": deployments,
        "failure_rate": rate,
        "empty": not any(builds) and not any(deployments),
    }


def summary(db: sqlite3.Connection, user, now: float) -> dict:
    where, params = permissions.visible_requests_sql(user, "r")
    request_counts = dict.fromkeys(REQUEST_STATUSES, 0)
    for row in db.execute(
        f"SELECT r.status, COUNT(*) AS n FROM image_requests r WHERE {where} GROUP BY r.status", params
    ):
        request_counts[row["status"]] = row["n"]
    deployment_counts = dict.fromkeys(DEPLOYMENT_STATUSES, 0)
    # Staff see every deployment: counted straight from idx_deployments_status,
    # without joining 20,000 images and requests to learn nothing.
    counted = (
        ("SELECT d.status, COUNT(*) AS n FROM deployments d GROUP BY d.status", [])
        if permissions.is_staff(user)
        else (
            "SELECT d.status, COUNT(*) AS n FROM deployments d JOIN images i ON i.id = d.image_id "
            f"JOIN image_requests r ON r.id = i.request_id WHERE {where} GROUP BY d.status",
            params,
        )
    )
    for row in db.execute(*counted):
        deployment_counts[row["status"]] = row["n"]
    open_alerts = 0
    if permissions.can_view_alerts(user):
        open_alerts = alert_domain.open_count(db)
    events = recent_events(db, user)
    pending = None
    if permissions.can_see_approvals(user):
        sql, pending_params = release_domain.pending_releases_sql(user)
        pending = db.execute(f"{sql} LIMIT 10", pending_params).fetchall()
    if permissions.is_staff(user):
        work = {
            "review_queue": review_queue(db),
            "failing_deployments": failing_deployments(db),
            "running_builds": running_builds(db),
        }
    else:
        work = {
            "my_requests": my_requests(db, user),
            "needing_attention": deployments_needing_attention(db, user),
        }
    return {
        **work,
        "trends": trends(db, user, now),
        "request_counts": request_counts,
        "deployment_counts": deployment_counts,
        "open_alerts": open_alerts,
        "recent_events": events,
        "event_links": target_links(db, events),
        "pending_releases": pending,
    }


def recent_events(db: sqlite3.Connection, user, limit: int = 15) -> list:
    """Staff see every event the audit page would show them (operators: none of the
    admin area's, ``permissions.hidden_event_actions``); a developer sees events
    about their own requests and the builds, images and deployments made from
    them, and their own actions."""
    if permissions.is_staff(user):
        hidden = sorted(permissions.hidden_event_actions(user))
        where = f"WHERE a.action NOT IN ({', '.join('?' * len(hidden))}) " if hidden else ""
        return db.execute(
            "SELECT a.*, u.username FROM audit_log a LEFT JOIN users u ON u.id = a.user_id "
            f"{where}ORDER BY a.id DESC LIMIT ?",
            (*hidden, limit),
        ).fetchall()
    where, params = permissions.visible_requests_sql(user, "r")
    visible = f"SELECT r.id FROM image_requests r WHERE {where}"
    return db.execute(
        "SELECT a.*, u.username FROM audit_log a LEFT JOIN users u ON u.id = a.user_id WHERE "
        f"(a.target_type = 'request' AND a.target_id IN ({visible})) "
        f"OR (a.target_type = 'build' AND a.target_id IN (SELECT b.id FROM builds b WHERE b.request_id IN ({visible}))) "
        f"OR (a.target_type = 'deployment' AND a.target_id IN (SELECT d.id FROM deployments d "
        f"JOIN images i ON i.id = d.image_id WHERE i.request_id IN ({visible}))) "
        "OR (a.user_id = ? AND a.action NOT IN ('login', 'logout', 'login_failed')) "
        "ORDER BY a.id DESC LIMIT ?",
        params * 3 + [user.id, limit],
    ).fetchall()


# --- the command palette (Ctrl+K) ---------------------------------------------------

PALETTE_QUERY_MAX = 100
PALETTE_PER_KIND = 6


def palette_items(db: sqlite3.Connection, user, query: str, limit: int = PALETTE_PER_KIND) -> list[dict]:
    """Requests, deployments and images ``user`` may see whose name matches ``query``
    (a substring, or ``#12`` / ``12`` for an id), at most ``limit`` of each kind,
    recently changed first. An empty query lists the most recent ones."""
    query = query.strip()
    if len(query) > PALETTE_QUERY_MAX:
        raise Refused("invalid", N_("The search text is at most 100 characters long."))
    where, params = permissions.visible_requests_sql(user, "r")
    wanted_id = query.lstrip("#")
    by_id = wanted_id.isdigit() and len(wanted_id) < 12
    pattern = "%" + like_escape(query) + "%"
    like = ilike(db)

    def match(column: str, id_column: str) -> tuple[str, list]:
        if not query:
            return "1 = 1", []
        if by_id:
            return f"({id_column} = ? OR {column} {like} ? ESCAPE '\\')", [int(wanted_id), pattern]
        return f"{column} {like} ? ESCAPE '\\'", [pattern]

    items = []
    cond, extra = match("r.image_name", "r.id")
    for row in db.execute(
        "SELECT r.id, r.image_name, r.version_tag, r.status FROM image_requests r "
        f"WHERE {where} AND {cond} ORDER BY r.updated_at DESC, r.id DESC LIMIT ?",
        (*params, *extra, limit),
    ):
        items.append(
            {
                "kind": "request",
                "id": row["id"],
                "status": row["status"],
                "label": f"#{row['id']} {row['image_name']}:{row['version_tag']}",
            }
        )
    cond, extra = match("d.name", "d.id")
    for row in db.execute(
        "SELECT d.id, d.name, d.environment, d.status FROM deployments d "
        "JOIN images i ON i.id = d.image_id JOIN image_requests r ON r.id = i.request_id "
        f"WHERE {where} AND {cond} ORDER BY d.updated_at DESC, d.id DESC LIMIT ?",
        (*params, *extra, limit),
    ):
        items.append(
            {
                "kind": "deployment",
                "id": row["id"],
                "status": row["status"],
                "label": f"{row['name']} ({row['environment']})",
            }
        )
    cond, extra = match("i.image_tag", "i.id")
    for row in db.execute(
        "SELECT i.id, i.image_tag, i.build_number FROM images i JOIN image_requests r ON r.id = i.request_id "
        f"WHERE {where} AND {cond} ORDER BY i.id DESC LIMIT ?",
        (*params, *extra, limit),
    ):
        items.append(
            {
                "kind": "image",
                "id": row["id"],
                "status": None,
                "label": f"{row['image_tag']} · #{row['build_number']}",
            }
        )
    return items
