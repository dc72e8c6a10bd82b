"""Flask-Login wiring: the user object, its loader, and what anonymous callers get."""
from __future__ import annotations

from flask import jsonify, redirect, request, url_for
from flask_babel import gettext as _
from flask_login import LoginManager, UserMixin

from .db import get_db
from .domain import users as user_domain

login_manager = LoginManager()


class User(UserMixin):
    """The logged-in user, read fresh from the database on every request so that a
    block or role change takes effect on the very next request."""

    def __init__(self, row):
        self.id = row["id"]
        self.username = row["username"]
        self.role = row["role"]
        self.active = bool(row["is_active"])
        self.locale = row["locale"]
        self.must_change_password = bool(row["must_change_password"])
        self.session_version = row["session_version"]

    @property
    def is_active(self) -> bool:
        return self.active

    def get_id(self) -> str:
        # The session version is part of the id: changing a password or blocking
        # the user bumps it, which signs out every existing session.
        return f"{self.id}:{self.session_version}"


@login_manager.user_loader
def load_user(session_id: str):
    try:
        user_id, version = (int(part) for part in session_id.split(":", 1))
    except (ValueError, AttributeError):
        return None
    row = user_domain.get_user(get_db(), user_id)
    if row is None or not row["is_active"] or row["session_version"] != version:
        return None
    return User(row)


def wants_json() -> bool:
    return request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json" \
        or request.accept_mimetypes.best == "text/event-stream"


@login_manager.unauthorized_handler
def unauthorized():
    if wants_json():
        return jsonify(error=_("Authentication required.")), 401
    return redirect(url_for("auth.login", next=request.full_path if request.query_string else request.path))


def init_app(app) -> None:
    login_manager.init_app(app)
    login_manager.session_protection = "basic"
