"""The audit log: one row per action, with the action names listed in one place."""
from __future__ import annotations

import json
import sqlite3

from flask import g, has_request_context, request

from .timeutil import utcnow_iso

# Every action the system records. Names are short and stable: filters,
# bookmarks and external log shippers rely on them.
ACTIONS = {
    "login": "user logged in",
    "login_failed": "failed login",
    "logout": "user logged out",
    "password_change": "user changed own password",
    "user_create": "user created",
    "user_block": "user blocked",
    "user_unblock": "user unblocked",
    "user_role_change": "user role changed",
    "user_password_reset": "user password reset by admin",
    "request_create": "image request created",
    "request_edit": "image request edited",
    "request_submit": "image request submitted",
    "request_status": "image request status changed",
    "build_start": "build started",
    "build_finish": "build finished",
    "build_cancel": "build cancelled",
    "deployment_create": "deployment created",
    "deployment_start": "deployment started",
    "deployment_stop": "deployment stopped",
    "deployment_restart": "deployment restarted",
    "deployment_delete": "deployment deleted",
    "deployment_failed": "deployment failed",
    "deployment_running": "deployment became running",
    "commit_hook_received": "commit webhook received",
    "commit_hook_refused": "commit webhook refused",
    "deployments_restarted": "deployments restarted by a commit",
    "token_create": "webhook token created",
    "token_revoke": "webhook token revoked",
    "alert_resolve": "alert resolved",
    "watchdog_timeout": "stuck item failed by the watchdog",
}

TARGET_TYPES = ("user", "request", "build", "image", "deployment", "alert", "token", "delivery")


def client_ip() -> str | None:
    if not has_request_context():
        return None
    return request.remote_addr


def record(db: sqlite3.Connection, action: str, *, user_id: int | None = None,
           target_type: str | None = None, target_id: int | None = None,
           details=None, now: float | None = None, ip: str | None = None) -> int:
    """Write one audit row. Call inside the caller's transaction so the row and the
    change it describes are committed together."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    if details is not None and not isinstance(details, str):
        details = json.dumps(details, ensure_ascii=False, sort_keys=True)
    request_id = g.get("request_id") if has_request_context() else None
    cursor = db.execute(
        "INSERT INTO audit_log (user_id, action, target_type, target_id, details, created_at, ip, request_id) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (user_id, action, target_type, target_id, details, utcnow_iso(now),
         ip if ip is not None else client_ip(), request_id),
    )
    return cursor.lastrowid
