"""The audit log: one row per action, with the action names listed in one place."""

from __future__ import annotations

import json
import sqlite3

from flask import g, has_request_context, request

from .domain import N_
from .timeutil import utcnow_iso

# Every action the system records. Names are short and stable: filters,
# bookmarks and external log shippers rely on them.
ACTIONS = {
    "login": N_("user logged in"),
    "login_failed": N_("failed login"),
    "logout": N_("user logged out"),
    "password_change": N_("user changed own password"),
    "password_change_failed": N_("wrong current password on a password change"),
    "session_end": N_("session ended"),
    "sessions_end_all": N_("all sessions of a user ended"),
    "user_create": N_("user created"),
    "user_block": N_("user blocked"),
    "user_unblock": N_("user unblocked"),
    "user_role_change": N_("user role changed"),
    "user_password_reset": N_("user password reset by admin"),
    "request_create": N_("image request created"),
    "request_edit": N_("image request edited"),
    "request_submit": N_("image request submitted"),
    "request_status": N_("image request status changed"),
    "build_start": N_("build started"),
    "build_finish": N_("build finished"),
    "build_cancel": N_("build cancelled"),
    "deployment_create": N_("deployment created"),
    "deployment_start": N_("deployment started"),
    "deployment_stop": N_("deployment stopped"),
    "deployment_restart": N_("deployment restarted"),
    "deployment_delete": N_("deployment deleted"),
    "deployment_failed": N_("deployment failed"),
    "deployment_running": N_("deployment became running"),
    "release_create": N_("release rolled out"),
    "release_request": N_("release waiting for approval"),
    "release_approve": N_("release approved"),
    "release_reject": N_("release rejected"),
    "release_expire": N_("release approval expired"),
    "deployment_rollback": N_("deployment rolled back"),
    "deployment_unpin": N_("deployment unpinned"),
    "environment_protect": N_("environment protected"),
    "environment_unprotect": N_("environment unprotected"),
    "commit_hook_received": N_("commit webhook received"),
    "commit_hook_refused": N_("commit webhook refused"),
    "deployments_restarted": N_("deployments restarted by a commit"),
    "token_create": N_("webhook token created"),
    "token_revoke": N_("webhook token revoked"),
    "api_token_create": N_("API token created"),
    "api_token_revoke": N_("API token revoked"),
    "api_token_refused": N_("API token refused"),
    "alert_resolve": N_("alert resolved"),
    "watchdog_timeout": N_("stuck item failed by the watchdog"),
    "config_change": N_("deployment configuration changed"),
    "notification_channel_create": N_("notification channel created"),
    "notification_channel_update": N_("notification channel changed"),
    "notification_channel_delete": N_("notification channel deleted"),
    "notification_test": N_("test notification queued"),
    "notification_retry": N_("dead notifications retried"),
    "notification_subscribe": N_("notifications subscribed"),
    "notification_unsubscribe": N_("notifications unsubscribed"),
    "encryption_key_rotate": N_("secrets re-encrypted under a new key"),
}

TARGET_TYPES = ("user", "request", "build", "image", "deployment", "alert", "token", "delivery", "api_token")
TARGET_LABELS = {
    "user": N_("user"),
    "request": N_("request"),
    "build": N_("build"),
    "image": N_("image"),
    "deployment": N_("deployment"),
    "alert": N_("alert"),
    "token": N_("token"),
    "delivery": N_("delivery"),
    "api_token": N_("API token"),
}


def client_ip() -> str | None:
    if not has_request_context():
        return None
    return request.remote_addr


def record(
    db: sqlite3.Connection,
    action: str,
    *,
    user_id: int | None = None,
    target_type: str | None = None,
    target_id: int | None = None,
    details=None,
    now: float,
    ip: str | None = None,
) -> int:
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
        (
            user_id,
            action,
            target_type,
            target_id,
            details,
            utcnow_iso(now),
            ip if ip is not None else client_ip(),
            request_id,
        ),
    )
    return cursor.lastrowid
