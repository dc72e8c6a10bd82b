"""Counts and recent events for the dashboard, limited to what the user may see."""
from __future__ import annotations

import sqlite3

from .. import permissions
from . import alerts as alert_domain
from . import releases as release_domain
from .audit_queries import target_links
from .deployments import DEPLOYMENT_STATUSES
from .requests import REQUEST_STATUSES


def summary(db: sqlite3.Connection, user) -> dict:
    where, params = permissions.visible_requests_sql(user, "r")
    request_counts = dict.fromkeys(REQUEST_STATUSES, 0)
    for row in db.execute(f"SELECT r.status, COUNT(*) AS n FROM image_requests r WHERE {where} "
                          "GROUP BY r.status", params):
        request_counts[row["status"]] = row["n"]
    deployment_counts = dict.fromkeys(DEPLOYMENT_STATUSES, 0)
    for row in db.execute(
            "SELECT d.status, COUNT(*) AS n FROM deployments d JOIN images i ON i.id = d.image_id "
            f"JOIN image_requests r ON r.id = i.request_id WHERE {where} GROUP BY d.status", params):
        deployment_counts[row["status"]] = row["n"]
    open_alerts = 0
    if permissions.can_view_alerts(user):
        open_alerts = alert_domain.open_count(db)
    events = recent_events(db, user)
    pending = None
    if permissions.can_see_approvals(user):
        sql, pending_params = release_domain.pending_releases_sql(user)
        pending = db.execute(f"{sql} LIMIT 10", pending_params).fetchall()
    return {
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
            f"{where}ORDER BY a.id DESC LIMIT ?", (*hidden, limit)).fetchall()
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
        params * 3 + [user.id, limit]).fetchall()
