"""Releases (issue 20): the release page, the releases JSON, rollback and unpinning,
approvals of pending releases, and the protected environments an admin sets."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required

from .. import db as db_module
from .. import permissions
from ..auth import wants_json
from ..db import get_db
from ..domain import approvals as approval_domain
from ..domain import config_vars as config_domain
from ..domain import deployments as deployment_domain
from ..domain import environments as environment_domain
from ..domain import releases as release_domain
from ..pagination import page_number, paginate
from ..simulator.runtime import get_state, sim_now
from ..web import get_deployment_or_404, get_release_or_404

bp = Blueprint("releases", __name__)


def _release_answer(release_id: int, message: str, deployment_id: int):
    """JSON: the release and the deployment's pin; a browser: a flash and the deployment page."""
    db = get_db()
    if wants_json():
        deployment = deployment_domain.get_deployment(db, deployment_id)
        release = release_domain.get_release(db, release_id)
        return jsonify(
            release=release_domain.to_json(release, deployment["current_release_id"] if deployment else None),
            pinned=bool(deployment and deployment["pinned_at"]),
        )
    flash(message, "success")
    return redirect(url_for("deployments.deployment_detail", deployment_id=deployment_id))


@bp.app_context_processor
def pending_approvals():
    """The count in the navigation: pending releases the reader may decide on."""
    if not (current_user.is_authenticated and permissions.can_see_approvals(current_user)):
        return {"pending_approvals": None}
    try:
        return {"pending_approvals": release_domain.pending_count(get_db(), current_user)}
    except db_module.DatabaseError:  # an error page must render even when the database cannot answer
        return {"pending_approvals": None}


# --- reading -------------------------------------------------------------------------


@bp.route("/api/deployments/<int:deployment_id>/releases")
@login_required
def releases_json(deployment_id: int):
    deployment = get_deployment_or_404(deployment_id)
    rows = release_domain.list_releases(get_db(), deployment_id)
    return jsonify(
        id=deployment_id,
        pinned=bool(deployment["pinned_at"]),
        current=deployment["current_release_id"],
        releases=[release_domain.to_json(row, deployment["current_release_id"]) for row in rows],
    )


@bp.route("/releases/<int:release_id>")
@login_required
def release_detail(release_id: int):
    release, deployment = get_release_or_404(release_id)
    db = get_db()
    previous = release_domain.previous_release(db, release)
    config_changes = config_domain.key_changes(
        db, deployment["id"], previous["config_version"] if previous else None, release["config_version"]
    )
    return render_template(
        "releases/release_detail.html",
        release=release,
        deployment=deployment,
        previous=previous,
        changes=release_domain.changes(previous, release),
        config_changes=config_changes,
    )


@bp.route("/approvals")
@login_required
def pending_list():
    if not permissions.can_see_approvals(current_user):
        abort(403)
    sql, params = release_domain.pending_releases_sql(current_user)
    page = paginate(
        get_db(), sql, params, page_number(request.args.get("page")), current_app.config["PER_PAGE"], {}
    )
    return render_template("releases/pending.html", page=page)


# --- rollback and pinning ------------------------------------------------------------------


@bp.route("/deployments/<int:deployment_id>/rollback", methods=["POST"])
@login_required
def rollback(deployment_id: int):
    deployment = get_deployment_or_404(deployment_id)
    release_id, pending = release_domain.rollback(
        get_db(), get_state(), deployment, current_user, request.form.get("release"), sim_now()
    )
    message = (
        _("The rollback waits for approval.")
        if pending
        else _("Rolling back. The deployment is pinned: new commits do not restart it.")
    )
    return _release_answer(release_id, message, deployment_id)


@bp.route("/deployments/<int:deployment_id>/unpin", methods=["POST"])
@login_required
def unpin(deployment_id: int):
    deployment = get_deployment_or_404(deployment_id)
    release_domain.unpin(get_db(), get_state(), deployment, current_user, sim_now())
    if wants_json():
        return jsonify(id=deployment_id, pinned=False)
    flash(_("Unpinned: new commits restart the deployment again."), "success")
    return redirect(url_for("deployments.deployment_detail", deployment_id=deployment_id))


# --- approvals -------------------------------------------------------------------------------


@bp.route("/releases/<int:release_id>/approve", methods=["POST"])
@login_required
def approve(release_id: int):
    release, deployment = get_release_or_404(release_id)
    approval_domain.approve(get_db(), get_state(), release, current_user, sim_now())
    return _release_answer(release_id, _("Approved: the release is rolling out."), deployment["id"])


@bp.route("/releases/<int:release_id>/reject", methods=["POST"])
@login_required
def reject(release_id: int):
    release, deployment = get_release_or_404(release_id)
    approval_domain.reject(
        get_db(), get_state(), release, current_user, request.form.get("reason"), sim_now()
    )
    return _release_answer(release_id, _("Rejected: the running release keeps running."), deployment["id"])


# --- protected environments ------------------------------------------------------------------


@bp.route("/admin/environments", methods=["GET", "POST"])
@login_required
def environments():
    if not permissions.can_manage_environments(current_user):
        abort(403)
    db = get_db()
    if request.method == "POST":
        environment = request.form.get("environment", "")
        protect = request.form.get("protected") == "1"
        environment_domain.set_protected(db, current_user, environment, protect, sim_now())
        if wants_json():
            return jsonify(environment=environment, protected=protect)
        flash(
            _(
                "%(environment)s is protected: every rollout there waits for approval.",
                environment=environment,
            )
            if protect
            else _("%(environment)s is no longer protected.", environment=environment),
            "success",
        )
        return redirect(url_for(".environments"))
    return render_template(
        "releases/environments.html",
        environments=environment_domain.environment_rows(db),
        expiry_hours=current_app.config["APPROVAL_EXPIRY_HOURS"],
    )
