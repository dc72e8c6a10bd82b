"""Builds: the list, the live log page, its polling JSON, start and cancel."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required

from ..auth import wants_json
from ..db import get_db
from ..domain import builds as build_domain
from ..domain import images as image_domain
from ..pagination import page_number, paginate
from ..simulator.runtime import sim_now
from ..web import get_build_or_404, get_request_or_404

bp = Blueprint("builds", __name__)


@bp.app_template_global("request_builds")
def request_builds(req) -> dict:
    """Builds and images of ``req`` for the partial on the request page."""
    db = get_db()
    return {
        "builds": build_domain.builds_of_request(db, req["id"]),
        "images": image_domain.images_of_request(db, req["id"], current_user),
    }


@bp.route("/builds")
@login_required
def list_builds():
    db = get_db()
    status = request.args.get("status", "")
    if status not in build_domain.BUILD_STATUSES:
        status = ""
    sql, params = build_domain.list_builds_sql(current_user, status)
    page = paginate(
        db,
        sql,
        params,
        page_number(request.args.get("page")),
        current_app.config["PER_PAGE"],
        {"status": status},
    )
    return render_template(
        "builds/list_builds.html", page=page, status=status, statuses=build_domain.BUILD_STATUSES
    )


@bp.route("/builds/<int:build_id>")
@login_required
def build_detail(build_id: int):
    build = get_build_or_404(build_id)
    state = build_domain.log_since(get_db(), build_id, 0)
    image = image_domain.get_image(get_db(), build["image_id"]) if build["image_id"] else None
    return render_template(
        "builds/build_detail.html", build=build, log_text=state.pop("log"), log_state=state, image=image
    )


@bp.route("/api/builds/<int:build_id>/log")
@login_required
def build_log_json(build_id: int):
    get_build_or_404(build_id)
    try:
        offset = int(request.args.get("offset", "0"))
        if offset < 0:
            raise ValueError
    except ValueError:
        return jsonify(error=_("offset must be a whole number, 0 or more.")), 400
    # Past the end is "nothing new", however large (log_since caps the offset).
    payload = build_domain.log_since(get_db(), build_id, offset)
    response = jsonify(payload)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/builds/<int:build_id>/cancel", methods=["POST"])
@login_required
def cancel_build(build_id: int):
    build = get_build_or_404(build_id)
    build_domain.cancel_build(get_db(), build, current_user, sim_now())
    if wants_json():
        return jsonify(status="cancelled")
    flash(_("Build cancelled."), "success")
    return redirect(url_for("builds.build_detail", build_id=build_id))


@bp.route("/builds/<int:build_id>/retry", methods=["POST"])
@login_required
def retry_build(build_id: int):
    build = get_build_or_404(build_id)
    new_id = build_domain.retry_build(get_db(), build, current_user, sim_now())
    flash(_("Build #%(id)s queued: a retry of build #%(old)s.", id=new_id, old=build_id), "success")
    return redirect(url_for("builds.build_detail", build_id=new_id))


@bp.route("/requests/<int:request_id>/build", methods=["POST"])
@login_required
def start_build(request_id: int):
    req = get_request_or_404(request_id)  # 404 before 403: hidden stays hidden
    build_id = build_domain.start_build(get_db(), req, current_user, sim_now())
    flash(_("Build #%(id)s queued.", id=build_id), "success")
    return redirect(url_for("builds.build_detail", build_id=build_id))
