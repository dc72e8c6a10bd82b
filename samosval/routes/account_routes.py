"""Sessions: a user's own (``/account/sessions``) and, for admins, another user's
(``/admin/users/<id>/sessions``). Ending a session signs out that browser and ends
its live log streams; "sign out everywhere" ends them all, this one included."""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user, login_required, logout_user

from .. import permissions
from ..auth import end_session_streams, end_token_streams, session_limits, wants_json
from ..db import get_db
from ..domain import ValidationError
from ..domain import access_tokens as access_token_domain
from ..domain import sessions as session_domain
from ..domain import users as user_domain
from ..simulator.runtime import sim_now
from ..web import permission_required

bp = Blueprint("account", __name__)


def _session_json(row, current_id: int | None) -> dict:
    return {
        "id": row["id"],
        "created_at": row["created_at"],
        "last_seen_at": row["last_seen_at"],
        "address": row["address"],
        "user_agent": row["user_agent"],
        "current": row["id"] == current_id,
    }


def _target_or_404(user_id: int):
    """The user whose sessions are asked for; 404 unless the caller may manage them."""
    row = user_domain.get_user(get_db(), user_id)
    if row is None or not permissions.can_manage_sessions(current_user, row["id"]):
        abort(404)
    return row


def _sessions_page(target):
    rows = session_domain.list_sessions(get_db(), target["id"], now=sim_now(), **session_limits())
    own = target["id"] == current_user.id
    current_id = current_user.session_id if own else None
    if wants_json():
        return jsonify(user=target["username"], sessions=[_session_json(r, current_id) for r in rows])
    limits = session_limits()
    return render_template(
        "account/sessions.html",
        target=target,
        sessions=rows,
        own=own,
        current_id=current_id,
        idle_hours=f"{limits['idle_seconds'] / 3600:g}",
        max_days=f"{limits['max_seconds'] / 86400:g}",
    )


def _ended(message: str, back: str):
    if wants_json():
        return jsonify(message=message)
    flash(message, "success")
    return redirect(back)


def _end_one(target, back: str):
    session_id = session_domain.parse_session_id(request.form.get("session_id"))
    session_domain.end_session(
        get_db(), session_id, user_id=target["id"], actor_id=current_user.id, now=sim_now()
    )
    end_session_streams(target["id"], session_id)
    if target["id"] == current_user.id and session_id == current_user.session_id:
        logout_user()
        session.clear()  # the user ended the session they are using: same as logging out
        return _ended(_("You have logged out."), url_for("auth.login"))
    return _ended(_("The session has ended."), back)


# --- one's own -------------------------------------------------------------------


@bp.get("/account/sessions")
@login_required
def sessions():
    return _sessions_page(_target_or_404(current_user.id))


@bp.post("/account/sessions/end")
@login_required
def end_session():
    return _end_one(_target_or_404(current_user.id), url_for("account.sessions"))


@bp.post("/account/sessions/end_all")
@login_required
def end_all_sessions():
    """Sign out everywhere: every browser of this user, this one included."""
    user_id = current_user.id
    session_domain.end_all_sessions(get_db(), user_id, actor_id=user_id, now=sim_now())
    end_session_streams(user_id)
    logout_user()
    session.clear()
    return _ended(_("You have signed out everywhere."), url_for("auth.login"))


# --- an admin, for another user ------------------------------------------------------


@bp.get("/admin/users/<int:user_id>/sessions")
@permission_required(permissions.can_manage_users)
def user_sessions(user_id: int):
    return _sessions_page(_target_or_404(user_id))


@bp.post("/admin/users/<int:user_id>/sessions/end")
@permission_required(permissions.can_manage_users)
def end_user_session(user_id: int):
    """End one session (``session_id``) or, with ``all=1``, every session of the user."""
    target = _target_or_404(user_id)
    back = url_for("account.user_sessions", user_id=user_id)
    if request.form.get("all") != "1":
        return _end_one(target, back)
    session_domain.end_all_sessions(get_db(), user_id, actor_id=current_user.id, now=sim_now())
    end_session_streams(user_id)
    if user_id == current_user.id:
        logout_user()
        session.clear()
        return _ended(_("You have signed out everywhere."), url_for("auth.login"))
    return _ended(_("Every session of %(name)s has ended.", name=target["username"]), back)


# --- personal access tokens for the API (issue 22) ------------------------------------


def _tokens_page(new_token: str | None = None, form: dict | None = None, errors=None, status: int = 200):
    now = sim_now()
    rows = access_token_domain.list_tokens(get_db(), current_user.id)
    response = current_app.make_response(
        (
            render_template(
                "account/tokens.html",
                tokens=[{**dict(row), "state": access_token_domain.state(row, now)} for row in rows],
                new_token=new_token,
                form=form or {"name": "", "scopes": ["read"], "days": access_token_domain.DEFAULT_DAYS},
                errors=errors or {},
                scopes=permissions.grantable_scopes(current_user),
                max_days=access_token_domain.MAX_DAYS,
            ),
            status,
        )
    )
    response.headers["Cache-Control"] = "no-store"  # it may carry a token in clear
    return response


@bp.get("/account/tokens")
@login_required
def tokens():
    return _tokens_page()


@bp.post("/account/tokens")
@login_required
def create_token():
    form = {
        "name": request.form.get("name", ""),
        "scopes": request.form.getlist("scopes"),
        "days": request.form.get("days", ""),
    }
    try:
        _token_id, token = access_token_domain.create_token(
            get_db(), current_user, form["name"], form["scopes"], form["days"], now=sim_now()
        )
    except ValidationError as exc:
        return _tokens_page(form=form, errors=exc.errors, status=400)
    # Rendered, not redirected: the token is shown this once and kept nowhere in clear.
    return _tokens_page(new_token=token)


@bp.post("/account/tokens/<int:token_id>/revoke")
@login_required
def revoke_token(token_id: int):
    row = access_token_domain.revoke_token(get_db(), current_user, token_id, now=sim_now())
    end_token_streams(current_user.id, row["id"])
    return _ended(
        _("Token “%(name)s” revoked: calls with it are refused from now on.", name=row["name"]),
        url_for("account.tokens"),
    )
