"""Images: the list, the detail page with its deployments, and creating a deployment."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required

from ..db import get_db
from ..domain import ValidationError
from ..domain import deployments as deployment_domain
from ..domain import images as image_domain
from ..domain import requests as request_domain
from ..pagination import page_number, paginate
from ..simulator.runtime import get_state, sim_now
from ..web import get_image_or_404

bp = Blueprint("images", __name__)


@bp.route("/images")
@login_required
def list_images():
    q = request.args.get("q", "").strip()[:100]
    sql, params = image_domain.list_images_sql(current_user, q, db=get_db())
    page = paginate(
        get_db(), sql, params, page_number(request.args.get("page")), current_app.config["PER_PAGE"], {"q": q}
    )
    return render_template("images/list_images.html", page=page, q=q)


def _render_detail(image, form=None, errors=None, status=200):
    db = get_db()
    default_form = {
        "name": f"{image['name']}-dev",
        "environment": "dev",
        "replicas": "1",
        "ports": "8000:8000",
    }
    return render_template(
        "images/image_detail.html",
        image=image,
        req=request_domain.get_request(db, image["request_id"]),
        build=image_domain.build_of_image(db, image["id"]),
        newest_id=image_domain.newest_image_id(db, image["image_tag"], current_user),
        deployments=image_domain.deployments_of_image(db, image["id"]),
        environments=deployment_domain.ENVIRONMENTS,
        max_replicas=deployment_domain.MAX_REPLICAS,
        form=form or default_form,
        errors=errors or {},
    ), status


@bp.route("/images/<int:image_id>")
@login_required
def image_detail(image_id: int):
    return _render_detail(get_image_or_404(image_id))


@bp.route("/images/<int:image_id>/create_deployment", methods=["POST"])
@login_required
def create_deployment(image_id: int):
    image = get_image_or_404(image_id)
    try:
        deployment_id = deployment_domain.create_deployment(
            get_db(), get_state(), image, current_user, request.form, sim_now()
        )
    except ValidationError as exc:
        form = {key: request.form.get(key, "") for key in ("name", "environment", "replicas", "ports")}
        return _render_detail(image, form=form, errors=exc.errors, status=400)
    flash(_("Deployment created; it is rolling out now."), "success")
    return redirect(url_for("deployments.deployment_detail", deployment_id=deployment_id))
