"""Administration (spec 4.8, 9.7, 10.3): users and the audit log. Admins only.

Every route first asks ``permissions`` whether the user may manage users or read the
audit log (``permission_required``); the domain commands ask
``permissions`` about the particular target (root is never blocked or demoted,
nobody blocks themselves) and refuse with the reason, which the app-level handler
answers (``web.refused_response``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user

from .. import audit as audit_log
from .. import permissions
from ..auth import wants_json
from ..db import get_db
from ..domain import ValidationError, audit_queries
from ..domain import users as user_domain
from ..pagination import Page, page_number
from ..simulator.runtime import get_state, sim_now
from ..templating import ROLE_LABELS
from ..web import permission_required

bp = Blueprint("admin", __name__, url_prefix="/admin")

admin_only = permission_required(permissions.can_manage_users)
audit_only = permission_required(permissions.can_view_audit)


# --- helpers -------------------------------------------------------------------


def _user_or_404(user_id: int):
    row = user_domain.get_user(get_db(), user_id)
    if row is None:
        abort(404)
    return row


def _back_url() -> str:
    """Back to the users list, keeping its filters when the form carried them."""
    target = (request.form.get("next") or "").strip()
    if target.startswith("/admin/users") and "//" not in target and "\\" not in target:
        return target
    return url_for("admin.list_users")


def _users_page(status: int = 200, *, form: dict | None = None, errors: dict | None = None):
    db = get_db()
    role = request.args.get("role", "")
    q = (request.args.get("q") or "").strip()[:64]
    # 50 a page like every list: each row carries three forms, and rendering 200
    # of them cost ~85 ms of CPU. The users table is small, so reading the rows
    # up to this page and slicing is cheaper than a second query shape.
    number, per_page = page_number(request.args.get("page")), current_app.config["PER_PAGE"]
    rows = user_domain.list_users(db, role=role, q=q, limit=number * per_page + 1)
    page = Page(
        items=rows[(number - 1) * per_page : number * per_page],
        number=number,
        per_page=per_page,
        has_next=len(rows) > number * per_page,
        args={"role": role, "q": q},
    )
    return render_template(
        "admin/users.html",
        users=page.items,
        page=page,
        role_filter=role,
        q=q,
        roles=user_domain.ROLES,
        form=form or {"must_change": False},
        errors=errors or {},
    ), status


def _done(message: str, row):
    if wants_json():
        return jsonify(message=message, user=_user_json(user_domain.get_user(get_db(), row["id"])))
    flash(message, "success")
    return redirect(_back_url())


def _user_json(row) -> dict:
    return {
        "id": row["id"],
        "username": row["username"],
        "role": row["role"],
        "is_active": bool(row["is_active"]),
        "created_at": row["created_at"],
        "last_login_at": row["last_login_at"],
    }


def _end_sessions(user_id: int) -> None:
    # Their cookies are already dead (session_version was bumped in the same
    # transaction); this ends the log streams they have open right now.
    get_state().revoke_user(user_id)


# --- users ---------------------------------------------------------------------


@bp.get("/users")
@admin_only
def list_users():
    if wants_json():
        db = get_db()
        rows = user_domain.list_users(db, role=request.args.get("role", ""), q=request.args.get("q", ""))
        return jsonify(users=[_user_json(row) for row in rows])
    return _users_page()


@bp.post("/users/create")
@admin_only
def create_user():
    form = {
        "username": (request.form.get("username") or "").strip()[:64],
        "role": request.form.get("role") or "",
        "must_change": request.form.get("must_change") == "1",
    }
    try:
        user_id = user_domain.create_user(
            get_db(),
            form["username"],
            request.form.get("password") or "",
            form["role"],
            now=sim_now(),
            actor_id=current_user.id,
            must_change_password=form["must_change"],
        )
    except ValidationError as exc:
        if wants_json():
            return jsonify(
                error=_("Check the highlighted fields."),
                errors={field: _(message) for field, message in exc.errors.items()},
            ), 400
        return _users_page(400, form=form, errors=exc.errors)
    row = user_domain.get_user(get_db(), user_id)
    message = _("User %(name)s created.", name=row["username"])
    if wants_json():
        return jsonify(message=message, user=_user_json(row)), 201
    flash(message, "success")
    return redirect(_back_url())


@bp.post("/users/<int:user_id>/block")
@admin_only
def block_user(user_id: int):
    target = _user_or_404(user_id)
    user_domain.block_user(get_db(), user_id, actor=current_user, now=sim_now())
    _end_sessions(user_id)
    return _done(_("User %(name)s is blocked. Their sessions have ended.", name=target["username"]), target)


@bp.post("/users/<int:user_id>/unblock")
@admin_only
def unblock_user(user_id: int):
    target = _user_or_404(user_id)
    user_domain.unblock_user(get_db(), user_id, actor=current_user, now=sim_now())
    return _done(_("User %(name)s is unblocked.", name=target["username"]), target)


@bp.post("/users/<int:user_id>/role")
@admin_only
def change_role(user_id: int):
    target = _user_or_404(user_id)
    changed = user_domain.change_role(
        get_db(), user_id, request.form.get("role") or "", actor=current_user, now=sim_now()
    )
    if not changed:
        return _done(_("Nothing changed: %(name)s already has this role.", name=target["username"]), target)
    _end_sessions(user_id)
    return _done(
        _(
            "%(name)s is now %(role)s. Their sessions have ended.",
            name=target["username"],
            role=str(ROLE_LABELS[request.form["role"]]),
        ),
        target,
    )


@bp.post("/users/<int:user_id>/reset_password")
@admin_only
def reset_password(user_id: int):
    """Generate a temporary password and show it once, in this response only: it is
    not flashed (the session cookie is signed, not encrypted) and not cached."""
    target = _user_or_404(user_id)
    password = user_domain.reset_password(get_db(), user_id, actor=current_user, now=sim_now())
    _end_sessions(user_id)
    if wants_json():
        response = jsonify(
            user=_user_json(user_domain.get_user(get_db(), user_id)), temporary_password=password
        )
    else:
        response = Response(
            render_template(
                "admin/password_reset.html", target=target, password=password, back_url=_back_url()
            )
        )
    response.headers["Cache-Control"] = "no-store"
    return response


# --- audit log -------------------------------------------------------------------


@bp.get("/audit")
@audit_only
def audit():
    db = get_db()
    filters, errors = audit_queries.parse_filters(request.args)
    page, links, unknown_user = None, {}, False
    if not errors:
        before = audit_queries.parse_cursor(request.args.get("before"))
        after = None if before else audit_queries.parse_cursor(request.args.get("after"))
        page = audit_queries.search(db, filters, before=before, after=after)
        links = audit_queries.target_links(db, page.items)
        unknown_user = bool(filters.user) and user_domain.get_user_by_username(db, filters.user) is None
    usernames = user_domain.list_usernames(db)
    return render_template(
        "admin/audit.html",
        filters=filters,
        errors=errors,
        page=page,
        links=links,
        unknown_user=unknown_user,
        actions=sorted(audit_log.ACTIONS),
        target_types=audit_log.TARGET_TYPES,
        usernames=usernames,
        format_details=audit_queries.format_details,
    ), (400 if errors else 200)


@bp.get("/audit.csv")
@audit_only
def audit_csv():
    filters, errors = audit_queries.parse_filters(request.args)
    if errors:
        return jsonify(
            error=_("Check the filters."), errors={field: _(message) for field, message in errors.items()}
        ), 400
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")

    def rows():
        # get_db() here, not in the view: the view's connection is closed when the
        # view returns; the streamed body gets its own, closed when the body ends.
        yield from audit_queries.iter_csv(get_db(), filters)

    response = Response(stream_with_context(rows()), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="samosval-audit-{stamp}.csv"'
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"
    return response
