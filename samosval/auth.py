"""Flask-Login wiring: the user object, its loader, signing in, the forced password
change, and what anonymous callers get.

Flask-Login's user id is the token of a server-side session (``domain.sessions``):
the cookie names one session of one browser, and ending that row signs out that
browser only.
"""

from __future__ import annotations

from datetime import timedelta

from flask import current_app, g, jsonify, redirect, request, session, url_for
from flask_babel import gettext as _
from flask_login import LoginManager, UserMixin, current_user, login_user

from . import permissions
from .db import get_db
from .domain import access_tokens as access_token_domain
from .domain import sessions as session_domain
from .security import bearer_token, count_token_failure, token_failure_retry_after

login_manager = LoginManager()
# ``g.api_token_refusal`` when this address has failed too many bearer tokens.
RATE_LIMITED = "rate_limited"


class User(UserMixin):
    """The logged-in user, read fresh from the database on every request so that a
    block or role change takes effect on the very next request."""

    def __init__(
        self,
        row,
        session_token: str | None = None,
        session_id: int | None = None,
        token_id: int | None = None,
        token_scopes: frozenset | None = None,
    ):
        self.id = row["id"]
        self.username = row["username"]
        self.role = row["role"]
        self.active = bool(row["is_active"])
        self.locale = row["locale"]
        self.must_change_password = bool(row["must_change_password"])
        self.session_version = row["session_version"]
        self.session_token = session_token
        self.session_id = session_id
        # Signed in with a personal access token (``Authorization: Bearer`` on /api):
        # its id and scopes. None for a browser session, which has every scope.
        self.token_id = token_id
        self.token_scopes = token_scopes

    @property
    def is_active(self) -> bool:
        return self.active

    def get_id(self) -> str | None:
        return self.session_token


def clock() -> float:
    """Now, on the engine's clock (a fake one under test)."""
    from .simulator.runtime import sim_now

    return sim_now()


def session_limits() -> dict:
    config = current_app.config
    return {
        "idle_seconds": float(config["SESSION_IDLE_MINUTES"]) * 60,
        "max_seconds": float(config["SESSION_MAX_DAYS"]) * 86400,
    }


@login_manager.user_loader
def load_user(token: str):
    if bearer_token() is not None:
        return None  # a call with a bearer token is authenticated by that token alone
    found = session_domain.resolve(get_db(), token, now=clock(), **session_limits())
    if found is None:
        return None
    session_row, user_row = found
    return User(user_row, session_token=token, session_id=session_row["id"])


@login_manager.request_loader
def load_user_from_token(_request):
    """``Authorization: Bearer <personal access token>`` on an /api route: the token's
    owner, read fresh, with the token's scopes. A refused token (unknown, revoked,
    expired, owner blocked) leaves the caller anonymous: a 401 saying why, audited;
    beyond the address's limit of failed uses, a 429 (``enforce_token_scope``),
    unaudited."""
    token = bearer_token()
    if token is None:
        return None
    found = access_token_domain.resolve(get_db(), token, now=clock())
    if isinstance(found, access_token_domain.Refusal):
        answer, audit = count_token_failure()
        if audit:
            access_token_domain.record_refusal(get_db(), found, now=clock())
        g.api_token_refusal = found.reason if answer else RATE_LIMITED
        return None
    return User(found.user, token_id=found.token["id"], token_scopes=found.scopes)


def enforce_token_scope():
    """A token's scopes bound every call made with it: the operation's declared
    ``required_scope`` (users and audit: admin), else read for GET and write for
    the rest. A missing scope is a 403, audited. Too many failed tokens from this
    address: a 429."""
    if bearer_token() is None:
        return None
    if not current_user.is_authenticated:
        if g.get("api_token_refusal") == RATE_LIMITED:
            response = jsonify(
                error=_(
                    "Too many calls with an invalid token from this address. Wait a minute and try again."
                ),
                code=RATE_LIMITED,
            )
            response.status_code = 429
            response.headers["Retry-After"] = str(token_failure_retry_after())
            return response
        return None
    view = current_app.view_functions.get(request.endpoint)
    required = permissions.required_scope(request.method, getattr(view, "required_scope", None))
    if permissions.token_allows(current_user.token_scopes, required):
        return None
    access_token_domain.record_scope_refusal(
        get_db(), current_user.token_id, current_user.id, required, request.endpoint, now=clock()
    )
    return jsonify(
        error=_("This token lacks the %(scope)s scope.", scope=required), code="insufficient_scope"
    ), 403


def sign_in(row) -> User:
    """Start a new server-side session for ``row`` in this browser. The Flask session
    is emptied first: a new session id and a new CSRF token at every login, so
    nothing planted in the browser before (session fixation) survives it."""
    lang = session.get("lang")
    session.clear()
    g.pop("csrf_token", None)  # Flask-WTF's per-request copy of the old token
    token, session_id = session_domain.start_session(
        get_db(),
        row,
        now=clock(),
        address=request.remote_addr,
        user_agent=request.user_agent.string,
        **session_limits(),
    )
    user = User(row, session_token=token, session_id=session_id)
    login_user(user)
    session.permanent = True
    if row["locale"] or lang:
        session["lang"] = row["locale"] or lang
    return user


def end_session_streams(user_id: int, session_id: int | None = None) -> None:
    """Live log streams end with their session (``stream_guard``): call after ending
    one session (``session_id``) or all of them. The streams of the user wake and
    re-read what they check; only those whose session is gone end."""
    from .simulator.runtime import get_state

    state = get_state()
    if session_id is not None:
        state.forget(session_domain.stream_key(session_id))
    state.revoke_user(user_id)


def end_token_streams(user_id: int, token_id: int) -> None:
    """Live log streams opened with a token end when it is revoked: they wake and
    re-read the token (``stream_guard``)."""
    from .simulator.runtime import get_state

    state = get_state()
    state.forget(access_token_domain.stream_key(token_id))
    state.revoke_user(user_id)


def token_refusal_check():
    """For a live stream opened with a token: ``token row -> None | "revoked" |
    "expired"`` on the engine's clock (a fake one under test)."""
    clock_now = current_app.extensions["samosval"].engine.clock
    return lambda token: access_token_domain.refusal_reason(token, now=clock_now())


def session_alive_check():
    """For what outlives the request (a live stream): ``(session, user) -> bool``,
    the idle and lifetime limits on the engine's clock, as captured now."""
    limits, clock_now = session_limits(), current_app.extensions["samosval"].engine.clock
    return lambda session, user: session_domain.is_alive(session, user, now=clock_now(), **limits)


# Endpoints that answer while a password change is required.
PASSWORD_CHANGE_ENDPOINTS = frozenset({"auth.change_password", "auth.logout", "static"})


def require_password_change():
    """After an admin reset (or root:root where that is not tolerated), only the
    change form, logout and static files answer."""
    if request.endpoint in PASSWORD_CHANGE_ENDPOINTS or not current_user.is_authenticated:
        return None
    if not permissions.password_change_required(
        current_user, root_default_allowed=not current_app.config["FORCE_ROOT_PASSWORD_CHANGE"]
    ):
        return None
    if wants_json():
        return jsonify(
            error=_(
                "Change your password first: it was set by an administrator or is "
                "the default one. Open /account/password."
            ),
            change_password_url=url_for("auth.change_password"),
        ), 403
    return redirect(url_for("auth.change_password"))


def root_login_hint(app) -> str | None:
    """The start-up line about root's default password, printed only while root
    still has it."""
    from .db import connect
    from .domain.users import root_has_default_password

    db = connect(app.config["DATABASE"])
    try:
        if not root_has_default_password(db):
            return None
    finally:
        db.close()
    if app.config["FORCE_ROOT_PASSWORD_CHANGE"]:
        return (
            "First login: root / root, to be changed at once (this server is reachable from other machines)."
        )
    return "First login: root / root (a banner asks you to change the password)."


def wants_json() -> bool:
    return (
        request.path.startswith("/api/")
        or request.accept_mimetypes.best == "application/json"
        or request.accept_mimetypes.best == "text/event-stream"
    )


@login_manager.unauthorized_handler
def unauthorized():
    if wants_json():
        refusal = g.get("api_token_refusal")
        known = access_token_domain.REFUSAL_MESSAGES.get(refusal)
        message = _(known) if known else _("Authentication required.")
        response = jsonify(error=message)
        response.headers["WWW-Authenticate"] = 'Bearer realm="samosval"'
        return response, 401
    return redirect(url_for("auth.login", next=request.full_path if request.query_string else request.path))


def init_app(app) -> None:
    login_manager.init_app(app)
    login_manager.session_protection = "basic"
    # The cookie lives no longer than the server-side session may.
    app.permanent_session_lifetime = timedelta(days=float(app.config["SESSION_MAX_DAYS"]))
    app.before_request(enforce_token_scope)
    app.before_request(require_password_change)
