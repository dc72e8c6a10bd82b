"""Login, logout, own password, interface language."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required, logout_user

from ..auth import end_session_streams, sign_in
from ..db import get_db
from ..domain import login_throttle
from ..domain import sessions as session_domain
from ..domain import users as user_domain
from ..security import client_address, limiter
from ..simulator.runtime import sim_now
from ..web import safe_next

bp = Blueprint("auth", __name__)


def _login_ip_limit():
    return current_app.config["LOGIN_RATE_LIMIT_IP"]


def _login_user_limit():
    return current_app.config["LOGIN_RATE_LIMIT_USER"]


def _username_address_key():
    """Per username *and* address: wrong passwords sent from one address never stop
    the owner signing in from another (the per-username delays handle spread-out
    guessing, see ``domain.login_throttle``)."""
    username = current_user.username if current_user.is_authenticated else request.form.get("username") or ""
    return f"login:{login_throttle.key_for(username)}@{client_address()}"


def _credentials_failed(_response) -> bool:
    """Only wrong credentials count against the limits, never a success."""
    return bool(g.get("credentials_failed"))


def _record_failure(db, username: str, now: float) -> None:
    """A wrong password: it counts against the per-address limits (``deduct_when``)
    and grows the username's delay."""
    g.credentials_failed = True
    config = current_app.config
    login_throttle.record_failure(
        db,
        username,
        now=now,
        free_failures=int(config["LOGIN_DELAY_AFTER_FAILURES"]),
        max_delay=float(config["LOGIN_DELAY_MAX_SECONDS"]),
    )


def _too_many(seconds: int, template: str, **context):
    message = _("Too many wrong passwords for this account. Try again in %(seconds)d s.", seconds=seconds)
    response = current_app.make_response((render_template(template, error=message, **context), 429))
    response.headers["Retry-After"] = str(seconds)
    return response


@bp.route("/")
def index():
    return redirect(url_for("dashboard.dashboard" if current_user.is_authenticated else "auth.login"))


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_ip_limit, methods=["POST"], deduct_when=_credentials_failed)
@limiter.limit(
    _login_user_limit, key_func=_username_address_key, methods=["POST"], deduct_when=_credentials_failed
)
def login():
    next_url = safe_next(request.values.get("next"))
    if current_user.is_authenticated:
        return redirect(next_url or url_for("dashboard.dashboard"))
    error = None
    username = ""
    if request.method == "POST":
        username = (request.form.get("username") or "").strip()
        db, now = get_db(), sim_now()
        wait = login_throttle.retry_after(db, username, now=now)
        if wait:
            return _too_many(wait, "auth/login.html", username=username, next=next_url)
        row = user_domain.authenticate(db, username, request.form.get("password") or "", now=now)
        if row is None:
            _record_failure(db, username, now)
            error = _("Wrong username or password, or the account is blocked.")
        else:
            user = sign_in(row)
            if user.must_change_password:
                flash(_("Please change your password."), "warning")
            return redirect(next_url or url_for("dashboard.dashboard"))
    return render_template("auth/login.html", error=error, username=username, next=next_url), (
        401 if error else 200
    )


@bp.route("/logout", methods=["POST"])
def logout():
    """End this browser's session only ("Sign out everywhere" is on the sessions page)."""
    if current_user.is_authenticated:
        user_id, session_id = current_user.id, current_user.session_id
        # Ended meanwhile (revoked from another browser)? Then nothing is left to end.
        session_domain.end_session(
            get_db(),
            session_id,
            user_id=user_id,
            actor_id=user_id,
            now=sim_now(),
            action="logout",
            missing_ok=True,
        )
        end_session_streams(user_id, session_id)
    logout_user()
    session.clear()
    flash(_("You have logged out."), "info")
    return redirect(url_for("auth.login"))


@bp.route("/account/password", methods=["GET", "POST"])
@limiter.limit(
    _login_user_limit, key_func=_username_address_key, methods=["POST"], deduct_when=_credentials_failed
)
@login_required
def change_password():
    errors = {}
    if request.method == "POST":
        db, now = get_db(), sim_now()
        user_id, username = current_user.id, current_user.username
        wait = login_throttle.retry_after(db, username, now=now)
        if wait:
            return _too_many(wait, "auth/change_password.html", errors={})
        try:
            user_domain.change_own_password(
                db,
                user_id,
                request.form.get("current_password", ""),
                request.form.get("new_password", ""),
                request.form.get("confirm_password", ""),
                now=now,
            )
        except user_domain.ValidationError as exc:
            errors = exc.errors
            if "current_password" in errors:
                _record_failure(db, username, now)
        else:
            # The change ended every session, this one included: this browser
            # continues in a new one; the others' live streams end now.
            end_session_streams(user_id)
            sign_in(user_domain.get_user(db, user_id))
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
