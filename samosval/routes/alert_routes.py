"""Alerts: failed builds and deployments for operators and admins to look at."""

from __future__ import annotations

from flask import Blueprint, flash, jsonify, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from .. import permissions
from ..auth import wants_json
from ..db import get_db
from ..domain import alerts as alert_domain
from ..domain import audit_queries
from ..simulator.runtime import sim_now
from ..web import permission_required

bp = Blueprint("alerts", __name__)

staff_only = permission_required(permissions.can_view_alerts)

ALERT_TYPE_LABELS = {
    "deployment_failed": _l("Deployment failed"),
    "build_failed": _l("Build failed"),
}


def alert_type_label(alert_type: str) -> str:
    label = ALERT_TYPE_LABELS.get(alert_type)
    return str(label) if label is not None else alert_type


def _alert_json(alert) -> dict:
    return {
        "id": alert["id"],
        "alert_type": alert["alert_type"],
        "target_type": alert_domain.target_type_of(alert),
        "target_id": alert["target_id"],
        "message": alert["message"],
        "resolved": bool(alert["resolved"]),
        "created_at": alert["created_at"],
        "resolved_at": alert["resolved_at"],
        "resolved_by": alert["resolved_by_name"],
    }


@bp.get("/alerts")
@staff_only
def list_alerts():
    db = get_db()
    open_alerts, resolved = alert_domain.list_alerts(db)
    if wants_json():
        return jsonify(
            open=[_alert_json(a) for a in open_alerts], resolved=[_alert_json(a) for a in resolved]
        )
    # Links only to targets that still exist: one query per target type.
    pairs = [(alert_domain.target_type_of(a), a["target_id"]) for a in [*open_alerts, *resolved]]
    links = {pair: audit_queries.target_path(*pair) for pair in audit_queries.existing_targets(db, pairs)}
    return render_template(
        "alerts/alerts.html",
        open_alerts=open_alerts,
        resolved=resolved,
        links=links,
        target_type_of=alert_domain.target_type_of,
        alert_type_label=alert_type_label,
    )


@bp.post("/alerts/<int:alert_id>/resolve")
@staff_only
def resolve_alert(alert_id: int):
    alert = alert_domain.resolve_alert(get_db(), alert_id, actor_id=current_user.id, now=sim_now())
    if wants_json():
        return jsonify(alert=_alert_json(alert))
    flash(_("Alert resolved."), "success")
    return redirect(url_for("alerts.list_alerts"))
