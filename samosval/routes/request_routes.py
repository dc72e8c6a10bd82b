"""Image requests: list, create, edit, submit, review (spec 4.2, 9.3)."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required

from .. import permissions
from ..auth import wants_json
from ..db import get_db
from ..domain import ValidationError
from ..domain import requests as request_domain
from ..pagination import page_number, paginate
from ..simulator.runtime import sim_now
from ..templating import status_label
from ..web import get_request_or_404

bp = Blueprint("requests", __name__)

# Button labels for a move to each status (draft → submitted has its own Submit button).
STATUS_ACTIONS = {
    "in_review": _l("Take into review"),
    "approved": _l("Approve"),
    "rejected": _l("Reject"),
    "submitted": _l("Return to submitted"),
    "draft": _l("Back to draft"),
}

JSON_FIELDS = (
    "id",
    "image_name",
    "repo_url",
    "repo_branch",
    "update_mode",
    "target_commit",
    "base_image",
    "run_commands",
    "entrypoint",
    "dockerfile_content",
    "ram_mb",
    "vcpu",
    "version_tag",
    "status",
    "collaborators",
    "owner_username",
    "creator_username",
    "created_at",
    "updated_at",
)


def _filters() -> dict:
    args = request.args
    status = args.get("status", "")
    return {
        "status": status if status in request_domain.REQUEST_STATUSES else "",
        "owner": args.get("owner", "").strip()[:64],
        "q": args.get("q", "").strip()[:100],
        "mine": "1" if args.get("mine") == "1" else "",
    }


@bp.route("/requests")
@login_required
def list_requests():
    filters = _filters()
    sql, params = request_domain.list_requests_query(
        current_user,
        status=filters["status"] or None,
        owner=filters["owner"] or None,
        q=filters["q"] or None,
        mine=bool(filters["mine"]),
        db=get_db(),
    )
    page = paginate(
        get_db(), sql, params, page_number(request.args.get("page")), current_app.config["PER_PAGE"], filters
    )
    if wants_json():
        return jsonify(items=[dict(row) for row in page.items], page=page.number, has_next=page.has_next)
    return render_template(
        "requests/list_requests.html", page=page, filters=filters, statuses=request_domain.REQUEST_STATUSES
    )


def _render_form(values: dict, req=None, errors=None, extra=None):
    return render_template(
        "requests/request_form.html",
        values=values,
        req=req,
        errors=errors or {},
        extra=extra or {},
        update_modes=request_domain.UPDATE_MODES,
    )


@bp.route("/requests/new", methods=["GET", "POST"])
@login_required
def new_request():
    if not permissions.can_create_request(current_user):
        abort(403)
    if request.method == "POST":
        values = request_domain.form_values(request.form)
        try:
            request_id = request_domain.create_request(get_db(), current_user, values, now=sim_now())
        except ValidationError as exc:
            return _render_form(values, errors=exc.errors, extra=exc.extra), 400
        flash(_("The draft is saved. Submit it when it is ready for review."), "success")
        return redirect(url_for("requests.request_detail", request_id=request_id))
    values = dict.fromkeys(request_domain.FORM_FIELDS, "")
    values.update(
        repo_branch="main",
        update_mode="continuous",
        ram_mb="512",
        vcpu="1",
        owner="" if permissions.is_staff(current_user) else current_user.username,
    )
    return _render_form(values)


@bp.route("/requests/<int:request_id>")
@login_required
def request_detail(request_id: int):
    req = get_request_or_404(request_id)
    if wants_json():
        return jsonify({field: req[field] for field in JSON_FIELDS})
    db = get_db()
    return render_template(
        "requests/request_detail.html",
        req=req,
        history=request_domain.status_history(db, request_id),
        next_statuses=[
            s
            for s in request_domain.next_statuses(current_user, req)
            if s != "submitted" or req["status"] != "draft"
        ],
        status_actions=STATUS_ACTIONS,
    )


@bp.route("/requests/<int:request_id>/edit", methods=["GET", "POST"])
@login_required
def edit_request(request_id: int):
    req = get_request_or_404(request_id, for_edit=True)
    if request.method == "POST":
        values = request_domain.form_values(request.form)
        try:
            changed = request_domain.update_request(get_db(), current_user, request_id, values, now=sim_now())
        except ValidationError as exc:
            return _render_form(values, req=req, errors=exc.errors, extra=exc.extra), 400
        if changed:
            flash(_("The request is saved."), "success")
        else:
            flash(_("Nothing changed."), "info")
        return redirect(url_for("requests.request_detail", request_id=request_id))
    return _render_form(request_domain.values_from_row(req), req=req)


def _changed(request_id: int, message: str):
    if wants_json():
        req = request_domain.get_request(get_db(), request_id)
        return jsonify(id=request_id, status=req["status"])
    flash(message, "success")
    return redirect(url_for("requests.request_detail", request_id=request_id))


@bp.route("/requests/<int:request_id>/submit", methods=["POST"])
@login_required
def submit_request(request_id: int):
    get_request_or_404(request_id)
    request_domain.submit_request(get_db(), current_user, request_id, now=sim_now())
    return _changed(request_id, _("The request is submitted to the operators."))


@bp.route("/requests/<int:request_id>/status", methods=["POST"])
@login_required
def change_status(request_id: int):
    get_request_or_404(request_id)
    new_status = (request.form.get("status") or "").strip()
    request_domain.change_status(get_db(), current_user, request_id, new_status, now=sim_now())
    return _changed(request_id, _("The status is now: %(status)s.", status=status_label(new_status)))
