"""Configuration of a deployment (issue 21): the environment-variable form and its JSON.

Secrets are never sent back: the form shows them masked with "replace" and
"delete", and a form that fails validation is shown again without any secret
value typed into it.
"""

from __future__ import annotations

from flask import Blueprint, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required

from .. import permissions
from ..crypto import app_keyring
from ..db import get_db
from ..domain import ValidationError
from ..domain import config_vars as config_domain
from ..simulator.runtime import get_state, sim_now
from ..web import get_deployment_or_404

bp = Blueprint("config", __name__)

SPARE_ROWS = 3


def _rows_from_form(form) -> list[config_domain.Row]:
    try:
        count = int(form.get("row_count", "0"))
    except ValueError:
        count = 0
    count = max(0, min(count, config_domain.MAX_VARIABLES + 50))
    rows = []
    for index in range(count):
        prefix = f"rows-{index}-"
        existing = form.get(prefix + "existing")
        rows.append(
            config_domain.Row(
                key=form.get(prefix + "key", ""),
                value=form.get(prefix + "value", "").replace("\r\n", "\n"),
                secret=form.get(prefix + "secret") in ("1", "on"),
                existing=existing or None,
                delete=form.get(prefix + "delete") in ("1", "on"),
            )
        )
    return rows


def _form_rows(variables: list[dict]) -> list[dict]:
    """Rows for the template: saved ones, then spare blank ones."""
    rows = [
        {
            "key": v["key"],
            "value": v["value"] or "",
            "secret": v["secret"],
            "existing": v["key"] if v["secret"] else None,
            "delete": False,
        }
        for v in variables
    ]
    return rows + [
        {"key": "", "value": "", "secret": False, "existing": None, "delete": False}
        for _ in range(SPARE_ROWS)
    ]


@bp.route("/deployments/<int:deployment_id>/env", methods=["GET", "POST"])
@login_required
def edit_env(deployment_id: int):
    deployment = get_deployment_or_404(deployment_id)
    db = get_db()
    described = config_domain.describe(db, deployment_id)
    may_change = permissions.can_change_config(current_user, deployment)
    errors: dict = {}
    rows = _form_rows(described["variables"])
    status = 200
    if request.method == "POST":
        submitted = _rows_from_form(request.form)
        try:
            result = config_domain.save(
                db,
                get_state(),
                deployment,
                current_user,
                submitted,
                app_keyring(current_app.config),
                sim_now(),
            )
        except ValidationError as exc:
            errors, status = exc.errors, 400
            # Shown again as typed, except secret values: those are typed again.
            rows = [
                {
                    "key": r.existing or r.key,
                    "value": "" if (r.secret or r.existing) else r.value,
                    "secret": r.secret or bool(r.existing),
                    "existing": r.existing,
                    "delete": r.delete,
                }
                for r in submitted
            ]
            rows += [{"key": "", "value": "", "secret": False, "existing": None, "delete": False}]
        else:
            if not result["changed"]:
                flash(_("Nothing changed."), "success")
            elif result["pending"]:
                flash(
                    _(
                        "Configuration v%(version)s saved: its release waits for approval.",
                        version=result["version"],
                    ),
                    "success",
                )
            else:
                flash(
                    _("Configuration v%(version)s saved and rolling out.", version=result["version"]),
                    "success",
                )
            return redirect(url_for("deployments.deployment_detail", deployment_id=deployment_id))
    return render_template(
        "config/edit_env.html",
        deployment=deployment,
        described=described,
        rows=rows,
        errors=errors,
        may_change=may_change,
        mask=config_domain.MASK,
        max_bytes=config_domain.MAX_VALUE_BYTES,
    ), status


@bp.route("/api/deployments/<int:deployment_id>/env")
@login_required
def env_json(deployment_id: int):
    get_deployment_or_404(deployment_id)
    return jsonify(config_domain.describe(get_db(), deployment_id))


@bp.app_context_processor
def _deployment_env_helper():
    """``deployment_env(id)`` for the deployment page's section (masked secrets)."""
    return {"deployment_env": lambda deployment_id: config_domain.describe(get_db(), deployment_id)}
