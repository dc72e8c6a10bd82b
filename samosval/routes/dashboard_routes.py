"""The dashboard (each role's work, trends, counts, latest events) and the command
palette's search (Ctrl+K)."""

from __future__ import annotations

from flask import Blueprint, jsonify, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from ..db import get_db
from ..domain import dashboard as dashboard_domain
from ..simulator.runtime import sim_now
from ..templating import nav_items, status_label

bp = Blueprint("dashboard", __name__)

_ENDPOINTS = {
    "request": ("requests.request_detail", "request_id"),
    "deployment": ("deployments.deployment_detail", "deployment_id"),
    "image": ("images.image_detail", "image_id"),
}


@bp.route("/dashboard")
@login_required
def dashboard():
    summary = dashboard_domain.summary(get_db(), current_user, sim_now())
    return render_template("dashboard/dashboard.html", **summary)


@bp.route("/api/palette")
@login_required
def palette():
    """What the command palette offers for ``?q=``: the pages of the user's menu,
    then requests, deployments and images they may see (bounded per kind)."""
    query = request.args.get("q", "")
    items = dashboard_domain.palette_items(get_db(), current_user, query)
    needle = query.strip().lower()
    pages = [
        {"kind": "page", "label": str(label), "url": url_for(endpoint)}
        for endpoint, label in nav_items(current_user)
        if not needle or needle in str(label).lower() or needle in endpoint.lower()
    ]
    for item in items:
        endpoint, arg = _ENDPOINTS[item["kind"]]
        item["url"] = url_for(endpoint, **{arg: item.pop("id")})
        item["status_label"] = status_label(item["status"]) if item["status"] else None
    response = jsonify(items=pages + items)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/favicon.ico")
def favicon():
    """Browsers ask for /favicon.ico on their own (pages link the SVG)."""
    return redirect(url_for("static", filename="favicon.svg"), code=301)
