"""What every template gets (permission rules, status labels, navigation) and the
themed error pages (JSON for API callers)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from babel.dates import format_timedelta
from flask import current_app, g, jsonify, render_template, request, url_for
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from markupsafe import Markup

from . import db as db_module
from . import permissions
from .audit import ACTIONS, TARGET_LABELS
from .auth import wants_json
from .domain import alerts as alert_domain
from .simulator.runtime import sim_now
from .timeutil import iso_to_epoch

log = logging.getLogger("samosval")

STATUS_LABELS = {
    "draft": _l("draft"),
    "submitted": _l("submitted"),
    "in_review": _l("in review"),
    "approved": _l("approved"),
    "rejected": _l("rejected"),
    "queued": _l("queued"),
    "building": _l("building"),
    "success": _l("success"),
    "failed": _l("failed"),
    "cancelled": _l("cancelled"),
    "deploying": _l("deploying"),
    "running": _l("running"),
    "stopped": _l("stopped"),
    "open": _l("open"),
    "resolved": _l("resolved"),
    "pending_approval": _l("waiting for approval"),
    "expired": _l("expired"),
}

ROLE_LABELS = {"admin": _l("admin"), "operator": _l("operator"), "developer": _l("developer")}

# (endpoint, label, who sees it, menu): the top navigation, filtered by
# ``permissions``. The "admin" menu (admin-only pages) folds into one "Admin" item
# so that an admin's bar stays one row wide (base.html).
NAVIGATION = (
    ("dashboard.dashboard", _l("Dashboard"), lambda u: True, "main"),
    ("requests.list_requests", _l("Requests"), lambda u: True, "main"),
    ("builds.list_builds", _l("Builds"), lambda u: True, "main"),
    ("images.list_images", _l("Images"), lambda u: True, "main"),
    ("deployments.list_deployments", _l("Deployments"), lambda u: True, "main"),
    ("alerts.list_alerts", _l("Alerts"), permissions.can_view_alerts, "main"),
    ("hooks.list_deliveries", _l("Webhooks"), permissions.can_view_deliveries, "main"),
    ("notifications.my_subscriptions", _l("Notifications"), lambda u: True, "main"),
    ("admin.list_users", _l("Users"), permissions.can_manage_users, "admin"),
    ("admin.audit", _l("Audit"), permissions.can_view_audit, "admin"),
    ("hooks.list_tokens", _l("Webhook tokens"), permissions.can_manage_tokens, "admin"),
    ("notifications.list_channels", _l("Notification channels"), permissions.can_manage_channels, "admin"),
    ("releases.environments", _l("Protected environments"), permissions.can_manage_environments, "admin"),
)


# An action whose words depend on its outcome (``details["result"]``).
OUTCOME_LABELS = {
    ("build_finish", "failed"): _l("build failed"),
    ("build_finish", "success"): _l("build succeeded"),
}


def action_label(action: str, details=None) -> str:
    """The audit action in words, in the user's language (the code stays in a title).
    With the row's ``details``, a finished build says whether it failed."""
    if details and action in {a for a, _r in OUTCOME_LABELS}:
        try:
            result = json.loads(details).get("result")
        except (ValueError, AttributeError):
            result = None
        if (action, result) in OUTCOME_LABELS:
            return str(OUTCOME_LABELS[(action, result)])
    return _(ACTIONS[action]) if action in ACTIONS else action


def target_label(target_type: str) -> str:
    return _(TARGET_LABELS[target_type]) if target_type in TARGET_LABELS else target_type


def status_label(status: str) -> str:
    label = STATUS_LABELS.get(status)
    return str(label) if label is not None else status


def nav_items(user, menu: str | None = None):
    """The user's ``(endpoint, label)`` pages: of one ``menu``, or all (the palette)."""
    return [
        (endpoint, label)
        for endpoint, label, allowed, group in NAVIGATION
        if user.is_authenticated and allowed(user) and menu in (None, group)
    ]


def current_nav(items, path: str) -> str | None:
    """The endpoint of ``items`` this page belongs to: the one whose address is the
    longest prefix of ``path`` (``/requests/7`` -> Requests, ``/admin/notifications/3``
    -> Notification channels, not Notifications)."""
    best, best_length = None, 0
    for endpoint, _label in items:
        url = url_for(endpoint)
        if (path == url or path.startswith(url.rstrip("/") + "/")) and len(url) > best_length:
            best, best_length = endpoint, len(url)
    return best


def exact_time(value) -> str:
    """A stored UTC ISO time as ``2026-05-01 10:00:00`` (UTC, as stored)."""
    if not value:
        return "—"
    try:
        return _exact(iso_to_epoch(value))
    except (TypeError, ValueError):
        return value


def _exact(epoch: float) -> str:
    # Digits and dashes only, in UTC: strftime gives what Babel's format_datetime
    # gave for this pattern at a seventh of the cost (a list page shows 100 times).
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def relative_time(epoch: float, now: float) -> str:
    """``5 min. ago`` / ``5 мин. назад`` in the user's language."""
    delta = epoch - now
    if abs(delta) < 45:
        return _("just now")
    return format_timedelta(delta, add_direction=True, format="short", locale=get_locale())


def format_time(value):
    """The ``dt`` filter: a stored UTC ISO time, relative ("5 min. ago"), with the
    exact UTC time on hover and in ``datetime`` for scripts."""
    if not value:
        return "—"
    try:
        epoch = iso_to_epoch(value)
    except (TypeError, ValueError):
        return value
    return Markup('<time datetime="{}" title="{} UTC">{}</time>').format(
        value, _exact(epoch), relative_time(epoch, sim_now())
    )


def actor_name(username) -> str:
    """Who did something: a login, or the system (the engine, a webhook, the watchdog)."""
    return username or _("system")


def failure_alert(target_type: str, target_id: int):
    """The newest alert about a failed build or deployment (its reason), for the top of its page."""
    from .db import get_db

    return alert_domain.latest_for_target(get_db(), target_type, target_id)


def alert_text(alert) -> str:
    """An alert's text in the user's language."""
    return alert_domain.message_text(alert, _)


def inject_globals():
    # Only about the user's own password: an admin who is not root cannot act on
    # root's default password, so they are not shown a banner about it.
    banner = bool(current_user.is_authenticated and current_user.must_change_password)
    items = nav_items(current_user)
    return {
        "nav_items": nav_items(current_user, "main"),
        "admin_nav_items": nav_items(current_user, "admin"),
        "nav_current": current_nav(items, request.path) if items else None,
        "password_banner": banner,
        "chartjs_url": current_app.config["CHARTJS_URL"],
        "chartjs_sri": current_app.config["CHARTJS_SRI"],
        "languages": current_app.config["LANGUAGES"],
    }


def _error(status: int, message: str):
    if wants_json():
        return jsonify(error=message), status
    return render_template("errors/error.html", status=status, message=message), status


def init_app(app) -> None:
    app.context_processor(inject_globals)
    # Globals (not context) so that imported macros see them too. Templates ask
    # ``access.can_...``: the permission rules under their template name.
    app.jinja_env.globals.update(
        access=permissions,
        status_label=status_label,
        role_labels=ROLE_LABELS,
        get_locale=get_locale,
        action_label=action_label,
        target_label=target_label,
        actor_name=actor_name,
        alert_text=alert_text,
        failure_alert=failure_alert,
    )
    app.jinja_env.filters["dt"] = format_time
    app.jinja_env.filters["exact_time"] = exact_time
    app.jinja_env.trim_blocks = True
    app.jinja_env.lstrip_blocks = True

    @app.errorhandler(CSRFError)
    def csrf_error(exc):
        return _error(
            400, _("The form has expired or the security token is missing. Reload the page and try again.")
        )

    @app.errorhandler(400)
    def bad_request(exc):
        return _error(400, _("Bad request."))

    @app.errorhandler(403)
    def forbidden(exc):
        return _error(403, _("You are not allowed to do this."))

    @app.errorhandler(404)
    def not_found(exc):
        return _error(404, _("Nothing here: the page does not exist or is not available to you."))

    @app.errorhandler(405)
    def method_not_allowed(exc):
        return _error(405, _("This method is not allowed here."))

    @app.errorhandler(413)
    def too_large(exc):
        return _error(413, _("The request is too large."))

    @app.errorhandler(429)
    def too_many(exc):
        message = _("Too many attempts. Wait a minute and try again.")
        if request.endpoint == "auth.login" and not wants_json():
            return render_template(
                "auth/login.html", error=message, username=request.form.get("username", ""), next=None
            ), 429
        return _error(429, message)

    @app.errorhandler(500)
    def server_error(exc):
        return _error(500, _("Something went wrong on our side. The error has been logged."))

    def database_unavailable(exc):
        if "_login_user" not in g:
            # The page, its menu, its language and the log line need the user, and
            # loading the user is what failed (or would wait for the database again):
            # answer as to a visitor instead of failing again inside this handler.
            g._login_user = current_app.login_manager.anonymous_user()
        log.exception("database error")
        return _error(503, _("The database is unavailable right now. Try again shortly."))

    # Locked, restarting or unreachable, on either database (PostgreSQL: the server
    # went away, the pool found no connection in time).
    for error in db_module.unavailable_errors(app.config["DATABASE"]):
        app.register_error_handler(error, database_unavailable)
