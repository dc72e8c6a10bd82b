"""Small JSON endpoints for the pages' scripts (spec 9.8)."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask_babel import gettext as _
from flask_login import current_user, login_required

from .. import permissions
from ..db import get_db
from ..domain import requests as request_domain
from ..domain.users import ROLES

bp = Blueprint("api", __name__)

SEARCH_LIMIT = 20


@bp.route("/api/users/search")
@login_required
def search_users():
    """Logins of active users starting with ``q`` (optionally of one ``role``),
    at most 20, for the owner and collaborator datalists. A developer looks up
    developers only (``permissions.searchable_roles``)."""
    allowed = permissions.searchable_roles(current_user)
    role = request.args.get("role") or None
    if role is not None and role not in ROLES:
        return jsonify(error=_("Unknown role.")), 400
    if role is not None and role not in allowed:
        return jsonify(error=_("You may look up developers only.")), 403
    prefix = (request.args.get("q") or "")[:64]
    roles = (role,) if role else allowed
    return jsonify(request_domain.search_logins(get_db(), prefix, roles, SEARCH_LIMIT))
