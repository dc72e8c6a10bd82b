"""The dashboard: requests and deployments by status, open alerts, latest events."""
from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import current_user, login_required

from ..db import get_db
from ..domain import dashboard as dashboard_domain

bp = Blueprint("dashboard", __name__)


@bp.route("/dashboard")
@login_required
def dashboard():
    summary = dashboard_domain.summary(get_db(), current_user)
    return render_template("dashboard/dashboard.html", **summary)
