"""Login, logout, own password, interface language."""
from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required, login_user, logout_user

from ..auth import User
from ..db import get_db
from ..domain import users as user_domain
from ..security import limiter
from ..simulator.runtime import get_state, sim_now
from ..web import safe_next

bp = Blueprint("auth", __name__)


def _login_ip_limit():
    return current_app.config["LOGIN_RATE_LIMIT_IP"]


def _login_user_limit():
    return current_app.config["LOGIN_RATE_LIMIT_USER"]


def _username_key():
    return "login-user:" + (request.form.get("username") or "").strip().lower()[:64]


@bp.route("/")
def index():
    return redirect(url_for("dashboard.dashboard" if current_user.is_authenticated else "auth.login"))


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_ip_limit, methods=["POST"])
@limiter.limit(_login_user_limit, key_func=_username_key, methods=["POST"])
def login():
    next_url = safe_next(request.values.get("next"))
    if current_user.is_authenticated:
        return redirect(next_url or url_for("dashboard.dashboard"))
    error = None
    username = ""
    if request.method == "POST":
        username = (request.form.get("username") or "").strip()
        row = user_domain.authenticate(get_db(), username, request.form.get("password") or "",
                                       now=sim_now())
        if row is None:
            error = _("Wrong username or password, or the account is blocked.")
        else:
            user = User(row)
            login_user(user)
            session.permanent = True
            if user.locale:
                session["lang"] = user.locale
            if user.must_change_password:
                flash(_("Please change your password."), "warning")
            return redirect(next_url or url_for("dashboard.dashboard"))
    return render_template("auth/login.html", error=error, username=username, next=next_url), \
        (401 if error else 200)


@bp.route("/logout", methods=["POST"])
def logout():
    if current_user.is_authenticated:
        user_id = current_user.id
        user_domain.log_out(get_db(), user_id, now=sim_now())
        get_state().revoke_user(user_id)  # its live log streams end with the session
    logout_user()
    session.clear()
    flash(_("You have logged out."), "info")
    return redirect(url_for("auth.login"))


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password():
    errors = {}
    if request.method == "POST":
        db = get_db()
        try:
            user_domain.change_own_password(
                db, current_user.id, request.form.get("current_password", ""),
                request.form.get("new_password", ""), request.form.get("confirm_password", ""),
                now=sim_now())
        except user_domain.ValidationError as exc:
            errors = exc.errors
        else:
            # The change signed out every session, this one included: sign back in.
            login_user(User(user_domain.get_user(db, current_user.id)))
            flash(_("Your password has been changed."), "success")
            return redirect(url_for("dashboard.dashboard"))
    return render_template("auth/change_password.html", errors=errors), (400 if errors else 200)


@bp.route("/lang", methods=["POST"])
def set_language():
    lang = request.form.get("lang")
    if lang in current_app.config["LANGUAGES"]:
        session["lang"] = lang
        if current_user.is_authenticated:
            user_domain.set_locale(get_db(), current_user.id, lang)
    return redirect(safe_next(request.form.get("next")) or url_for("auth.index"))
