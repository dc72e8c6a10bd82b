"""The API's operations. Each parses its input (the schemas), checks access with the
same fetch-or-404 helpers and ``permissions`` as the pages, calls the same domain
function as the page does, and answers JSON. Refusals become the one error shape
(``web.refused_response`` + ``web.api_error_shape``)."""

from __future__ import annotations

from flask import abort
from flask_login import current_user, login_required

from .. import permissions
from ..auth import end_session_streams
from ..db import get_db
from ..domain import ValidationError, audit_queries
from ..domain import approvals as approval_domain
from ..domain import builds as build_domain
from ..domain import deployments as deployment_domain
from ..domain import images as image_domain
from ..domain import releases as release_domain
from ..domain import requests as request_domain
from ..domain import users as user_domain
from ..routes.deployment_routes import status_payload
from ..simulator.runtime import get_state, sim_now
from ..web import (
    get_build_or_404,
    get_deployment_or_404,
    get_image_or_404,
    get_release_or_404,
    get_request_or_404,
)
from .common import DEFAULT_LIMIT, Blueprint, cursor_page, decode_cursor, encode_cursor, scope
from .schemas import (
    AuditArgs,
    AuditPage,
    BuildListArgs,
    BuildLogArgs,
    BuildLogSchema,
    BuildPage,
    BuildSchema,
    DeploymentActionInput,
    DeploymentInputSchema,
    DeploymentItemSchema,
    DeploymentListArgs,
    DeploymentPage,
    DeploymentSchema,
    DeploymentStateSchema,
    ImageListArgs,
    ImagePage,
    ImageSchema,
    LogArgs,
    LogPageSchema,
    MeSchema,
    MetricsArgs,
    MetricsSchema,
    PageArgsSchema,
    PinSchema,
    RejectInput,
    ReleaseAnswerSchema,
    ReleasePage,
    ReleaseSchema,
    RequestInputSchema,
    RequestListArgs,
    RequestPage,
    RequestSchema,
    RequestStatusInput,
    RoleInput,
    RollbackInput,
    StatusChangedSchema,
    UserInputSchema,
    UserListArgs,
    UserPage,
    UserSchema,
)

me_bp = Blueprint("api_me", __name__, description="Who the caller is.")
requests_bp = Blueprint("api_requests", __name__, description="Image requests and their actions.")
builds_bp = Blueprint("api_builds", __name__, description="Builds: start, cancel, retry, log.")
images_bp = Blueprint("api_images", __name__, description="Images and creating deployments.")
deployments_bp = Blueprint(
    "api_deployments", __name__, description="Deployments, their actions, logs and metrics."
)
releases_bp = Blueprint("api_releases", __name__, description="Releases, rollback, approvals.")
admin_bp = Blueprint("api_admin", __name__, description="Users and audit (admins; token scope admin).")

BLUEPRINTS = (me_bp, requests_bp, builds_bp, images_bp, deployments_bp, releases_bp, admin_bp)


# --- me ------------------------------------------------------------------------------------


@me_bp.route("/me", methods=["GET"])
@me_bp.response(200, MeSchema)
@login_required
def me():
    """The caller: user, role and (with a token) its scopes."""
    scopes = current_user.token_scopes
    return {
        "id": current_user.id,
        "username": current_user.username,
        "role": current_user.role,
        "token_scopes": sorted(scopes) if scopes is not None else None,
    }


# --- requests -----------------------------------------------------------------------------------


def _request_json(request_id: int) -> dict:
    req = request_domain.get_request(get_db(), request_id)
    body = dict(req)
    body["next_statuses"] = request_domain.next_statuses(current_user, req)
    return body


def _form(values: dict, owner: str | None = None) -> dict:
    """The JSON body as the form's values. Without an owner: the request's owner on
    an edit; on a new request, as the form does, the developer filing it (staff must
    name one)."""
    values = {key: "" if value is None else str(value) for key, value in values.items()}
    if not values.get("owner"):
        values["owner"] = owner or ("" if permissions.is_staff(current_user) else current_user.username)
    return request_domain.form_values(values)


@requests_bp.route("/requests", methods=["GET"])
@requests_bp.arguments(RequestListArgs, location="query")
@requests_bp.response(200, RequestPage)
@login_required
def list_requests(args):
    """Requests you may see, newest first."""
    sql, params = request_domain.list_requests_query(
        current_user,
        status=args["status"] or None,
        owner=args["owner"].strip() or None,
        q=args["q"].strip() or None,
        mine=args["mine"],
        db=get_db(),
    )
    return cursor_page(get_db(), sql, params, args)


@requests_bp.route("/requests", methods=["POST"])
@requests_bp.arguments(RequestInputSchema)
@requests_bp.response(201, RequestSchema)
@login_required
def create_request(body):
    """Create a draft request (the form's rules)."""
    if not permissions.can_create_request(current_user):
        abort(403)
    request_id = request_domain.create_request(get_db(), current_user, _form(body), now=sim_now())
    return _request_json(request_id)


@requests_bp.route("/requests/<int:request_id>", methods=["GET"])
@requests_bp.response(200, RequestSchema)
@login_required
def get_request(request_id: int):
    """One request."""
    return _request_json(get_request_or_404(request_id)["id"])


@requests_bp.route("/requests/<int:request_id>", methods=["PUT"])
@requests_bp.arguments(RequestInputSchema)
@requests_bp.response(200, RequestSchema)
@login_required
def update_request(body, request_id: int):
    """Replace a request's fields (while it may be edited)."""
    req = get_request_or_404(request_id, for_edit=True)
    request_domain.update_request(
        get_db(), current_user, request_id, _form(body, req["owner_username"]), now=sim_now()
    )
    return _request_json(request_id)


@requests_bp.route("/requests/<int:request_id>/submit", methods=["POST"])
@requests_bp.response(200, StatusChangedSchema)
@login_required
def submit_request(request_id: int):
    """Submit a draft for review."""
    get_request_or_404(request_id)
    request_domain.submit_request(get_db(), current_user, request_id, now=sim_now())
    return {"id": request_id, "status": request_domain.get_request(get_db(), request_id)["status"]}


@requests_bp.route("/requests/<int:request_id>/status", methods=["POST"])
@requests_bp.arguments(RequestStatusInput)
@requests_bp.response(200, StatusChangedSchema)
@login_required
def change_request_status(body, request_id: int):
    """Move a request to another status (review, approve, reject, rework)."""
    get_request_or_404(request_id)
    request_domain.change_status(get_db(), current_user, request_id, body["status"], now=sim_now())
    return {"id": request_id, "status": request_domain.get_request(get_db(), request_id)["status"]}


@requests_bp.route("/requests/<int:request_id>/builds", methods=["POST"])
@requests_bp.response(201, BuildSchema)
@login_required
def start_build(request_id: int):
    """Build an approved request."""
    req = get_request_or_404(request_id)
    build_id = build_domain.start_build(get_db(), req, current_user, sim_now())
    return dict(build_domain.get_build(get_db(), build_id))


# --- builds -----------------------------------------------------------------------------------


@builds_bp.route("/builds", methods=["GET"])
@builds_bp.arguments(BuildListArgs, location="query")
@builds_bp.response(200, BuildPage)
@login_required
def list_builds(args):
    """Builds of the requests you may see, newest first."""
    sql, params = build_domain.list_builds_sql(current_user, args["status"])
    return cursor_page(get_db(), sql, params, args)


@builds_bp.route("/builds/<int:build_id>", methods=["GET"])
@builds_bp.response(200, BuildSchema)
@login_required
def get_build(build_id: int):
    """One build."""
    return dict(get_build_or_404(build_id))


@builds_bp.route("/builds/<int:build_id>/log", methods=["GET"])
@builds_bp.arguments(BuildLogArgs, location="query")
@builds_bp.response(200, BuildLogSchema)
@login_required
def build_log(args, build_id: int):
    """The build log after ``offset`` characters; poll with the offset it answers."""
    get_build_or_404(build_id)
    return build_domain.log_since(get_db(), build_id, args["offset"])


@builds_bp.route("/builds/<int:build_id>/cancel", methods=["POST"])
@builds_bp.response(200, BuildSchema)
@login_required
def cancel_build(build_id: int):
    """Cancel a queued or running build (staff)."""
    build = get_build_or_404(build_id)
    build_domain.cancel_build(get_db(), build, current_user, sim_now())
    return dict(build_domain.get_build(get_db(), build_id))


@builds_bp.route("/builds/<int:build_id>/retry", methods=["POST"])
@builds_bp.response(201, BuildSchema)
@login_required
def retry_build(build_id: int):
    """Build the same request again."""
    build = get_build_or_404(build_id)
    new_id = build_domain.retry_build(get_db(), build, current_user, sim_now())
    return dict(build_domain.get_build(get_db(), new_id))


# --- images ------------------------------------------------------------------------------------


@images_bp.route("/images", methods=["GET"])
@images_bp.arguments(ImageListArgs, location="query")
@images_bp.response(200, ImagePage)
@login_required
def list_images(args):
    """Images you may see, newest first."""
    sql, params = image_domain.list_images_sql(current_user, args["q"].strip(), db=get_db())
    return cursor_page(get_db(), sql, params, args)


@images_bp.route("/images/<int:image_id>", methods=["GET"])
@images_bp.response(200, ImageSchema)
@login_required
def get_image(image_id: int):
    """One image."""
    return dict(get_image_or_404(image_id))


@images_bp.route("/images/<int:image_id>/deployments", methods=["POST"])
@images_bp.arguments(DeploymentInputSchema)
@images_bp.response(201, DeploymentSchema)
@login_required
def create_deployment(body, image_id: int):
    """Deploy an image (release v1 rolls out, or waits for approval)."""
    image = get_image_or_404(image_id)
    deployment_id = deployment_domain.create_deployment(
        get_db(), get_state(), image, current_user, body, sim_now()
    )
    return _deployment_json(deployment_domain.get_deployment(get_db(), deployment_id))


# --- deployments -----------------------------------------------------------------------------------


def _deployment_json(row) -> dict:
    values = dict(row)
    return {
        **{key: values[key] for key in DeploymentItemSchema().fields if key in values},
        **status_payload(current_user, row),
    }


@deployments_bp.route("/deployments", methods=["GET"])
@deployments_bp.arguments(DeploymentListArgs, location="query")
@deployments_bp.response(200, DeploymentPage)
@login_required
def list_deployments(args):
    """Deployments you may see, newest first."""
    sql, params = deployment_domain.list_deployments_sql(current_user, args["status"], args["environment"])
    return cursor_page(get_db(), sql, params, args)


@deployments_bp.route("/deployments/<int:deployment_id>", methods=["GET"])
@deployments_bp.response(200, DeploymentSchema)
@login_required
def get_deployment(deployment_id: int):
    """One deployment, with the actions you may take now."""
    return _deployment_json(get_deployment_or_404(deployment_id))


@deployments_bp.route("/deployments/<int:deployment_id>/actions", methods=["POST"])
@deployments_bp.arguments(DeploymentActionInput)
@deployments_bp.response(200, DeploymentStateSchema)
@login_required
def deployment_action(body, deployment_id: int):
    """start, stop, restart or delete."""
    deployment = get_deployment_or_404(deployment_id)
    db = get_db()
    new_status = deployment_domain.perform_action(
        db, get_state(), deployment, current_user, body["action"], sim_now()
    )
    fresh = deployment_domain.get_deployment(db, deployment_id) if new_status != "deleted" else None
    if fresh is None:
        return {"id": deployment_id, "status": "deleted"}
    return status_payload(current_user, fresh)


@deployments_bp.route("/deployments/<int:deployment_id>/logs", methods=["GET"])
@deployments_bp.arguments(LogArgs, location="query")
@deployments_bp.response(200, LogPageSchema)
@login_required
def deployment_logs(args, deployment_id: int):
    """Log lines after ``after`` (the live buffer: the last 1000 lines)."""
    get_deployment_or_404(deployment_id)
    runtime = get_state().existing(deployment_id)
    lines, missed = runtime.logs.read_after(args["after"], args["limit"]) if runtime else ([], 0)
    return {
        "lines": [
            {"seq": line.seq, "ts": round(line.ts, 3), "level": line.level, "text": line.text}
            for line in lines
        ],
        "next_after": lines[-1].seq if lines else args["after"],
        "missed": missed,
    }


@deployments_bp.route("/deployments/<int:deployment_id>/metrics", methods=["GET"])
@deployments_bp.arguments(MetricsArgs, location="query")
@deployments_bp.response(200, MetricsSchema)
@login_required
def deployment_metrics(args, deployment_id: int):
    """CPU (%) and RAM (MB) points of the last 15 minutes, after ``since``."""
    deployment = get_deployment_or_404(deployment_id)
    runtime = get_state().existing(deployment_id)
    points = runtime.metrics.since(args["since"]) if runtime else []
    return {
        "id": deployment_id,
        "status": deployment["status"],
        "points": [
            {"ts": round(ts, 3), "cpu": round(cpu, 1), "ram": round(ram, 1)} for ts, cpu, ram in points
        ],
    }


# --- releases -------------------------------------------------------------------------------------


def _release_json(release_id: int, deployment_id: int) -> dict:
    db = get_db()
    deployment = deployment_domain.get_deployment(db, deployment_id)
    release = release_domain.get_release(db, release_id)
    return {
        "release": {
            **release_domain.to_json(release, deployment["current_release_id"] if deployment else None),
            "deployment_id": deployment_id,
        },
        "pinned": bool(deployment and deployment["pinned_at"]),
    }


@releases_bp.route("/deployments/<int:deployment_id>/releases", methods=["GET"])
@releases_bp.arguments(PageArgsSchema, location="query")
@releases_bp.response(200, ReleasePage)
@login_required
def list_releases(args, deployment_id: int):
    """A deployment's releases, newest first."""
    deployment = get_deployment_or_404(deployment_id)
    page = cursor_page(get_db(), *release_domain.releases_sql(deployment_id), args)
    page["items"] = [
        {**release_domain.to_json(row, deployment["current_release_id"]), "deployment_id": deployment_id}
        for row in page["items"]
    ]
    return page


@releases_bp.route("/releases/<int:release_id>", methods=["GET"])
@releases_bp.response(200, ReleaseSchema)
@login_required
def get_release(release_id: int):
    """One release."""
    release, deployment = get_release_or_404(release_id)
    return {
        **release_domain.to_json(release, deployment["current_release_id"]),
        "deployment_id": deployment["id"],
    }


@releases_bp.route("/deployments/<int:deployment_id>/rollback", methods=["POST"])
@releases_bp.arguments(RollbackInput)
@releases_bp.response(200, ReleaseAnswerSchema)
@login_required
def rollback(body, deployment_id: int):
    """Roll back to release number ``release`` and pin the deployment (in a
    protected environment the rollback waits for approval)."""
    deployment = get_deployment_or_404(deployment_id)
    release_id, _pending = release_domain.rollback(
        get_db(), get_state(), deployment, current_user, body["release"], sim_now()
    )
    return _release_json(release_id, deployment_id)


@releases_bp.route("/deployments/<int:deployment_id>/unpin", methods=["POST"])
@releases_bp.response(200, PinSchema)
@login_required
def unpin(deployment_id: int):
    """Let new commits restart the deployment again."""
    deployment = get_deployment_or_404(deployment_id)
    release_domain.unpin(get_db(), get_state(), deployment, current_user, sim_now())
    return {"id": deployment_id, "pinned": False}


@releases_bp.route("/releases/<int:release_id>/approve", methods=["POST"])
@releases_bp.response(200, ReleaseAnswerSchema)
@login_required
def approve_release(release_id: int):
    """Approve a release waiting in a protected environment."""
    release, deployment = get_release_or_404(release_id)
    approval_domain.approve(get_db(), get_state(), release, current_user, sim_now())
    return _release_json(release_id, deployment["id"])


@releases_bp.route("/releases/<int:release_id>/reject", methods=["POST"])
@releases_bp.arguments(RejectInput)
@releases_bp.response(200, ReleaseAnswerSchema)
@login_required
def reject_release(body, release_id: int):
    """Reject a waiting release, with a reason."""
    release, deployment = get_release_or_404(release_id)
    approval_domain.reject(get_db(), get_state(), release, current_user, body["reason"], sim_now())
    return _release_json(release_id, deployment["id"])


# --- users and audit (admin scope) ------------------------------------------------------------------


def _admin_only() -> None:
    if not permissions.can_manage_users(current_user):
        abort(403)


@admin_bp.route("/users", methods=["GET"])
@admin_bp.arguments(UserListArgs, location="query")
@admin_bp.response(200, UserPage)
@scope("admin")
@login_required
def list_users(args):
    """Every user, newest first."""
    _admin_only()
    return cursor_page(get_db(), *user_domain.users_sql(args["role"]), args)


@admin_bp.route("/users", methods=["POST"])
@admin_bp.arguments(UserInputSchema)
@admin_bp.response(201, UserSchema)
@scope("admin")
@login_required
def create_user(body):
    """Create a user."""
    _admin_only()
    user_id = user_domain.create_user(
        get_db(), body["username"], body["password"], body["role"], now=sim_now(), actor_id=current_user.id
    )
    return dict(user_domain.get_user(get_db(), user_id))


def _user_or_404(user_id: int):
    row = user_domain.get_user(get_db(), user_id)
    if row is None:
        abort(404)
    return row


@admin_bp.route("/users/<int:user_id>", methods=["GET"])
@admin_bp.response(200, UserSchema)
@scope("admin")
@login_required
def get_user(user_id: int):
    """One user."""
    _admin_only()
    return dict(_user_or_404(user_id))


@admin_bp.route("/users/<int:user_id>/block", methods=["POST"])
@admin_bp.response(200, UserSchema)
@scope("admin")
@login_required
def block_user(user_id: int):
    """Block a user: their sessions end and their tokens stop working."""
    _admin_only()
    _user_or_404(user_id)
    row = user_domain.block_user(get_db(), user_id, actor=current_user, now=sim_now())
    end_session_streams(user_id)
    return dict(row)


@admin_bp.route("/users/<int:user_id>/unblock", methods=["POST"])
@admin_bp.response(200, UserSchema)
@scope("admin")
@login_required
def unblock_user(user_id: int):
    """Unblock a user."""
    _admin_only()
    _user_or_404(user_id)
    return dict(user_domain.unblock_user(get_db(), user_id, actor=current_user, now=sim_now()))


@admin_bp.route("/users/<int:user_id>/role", methods=["POST"])
@admin_bp.arguments(RoleInput)
@admin_bp.response(200, UserSchema)
@scope("admin")
@login_required
def change_role(body, user_id: int):
    """Give a user another role (their sessions end)."""
    _admin_only()
    _user_or_404(user_id)
    if user_domain.change_role(get_db(), user_id, body["role"], actor=current_user, now=sim_now()):
        end_session_streams(user_id)
    return dict(user_domain.get_user(get_db(), user_id))


@admin_bp.route("/audit", methods=["GET"])
@admin_bp.arguments(AuditArgs, location="query")
@admin_bp.response(200, AuditPage)
@scope("admin")
@login_required
def audit_log(args):
    """The audit log, newest first, with the audit page's filters."""
    if not permissions.can_view_audit(current_user):
        abort(403)
    filters, errors = audit_queries.parse_filters(args)
    if errors:
        raise ValidationError(errors)
    page = audit_queries.search(
        get_db(),
        filters,
        before=decode_cursor(args.get("cursor")),
        per_page=args.get("limit") or DEFAULT_LIMIT,
    )
    items = [dict(row) for row in page.items]
    cursor = page.older_cursor
    return {"items": items, "next_cursor": encode_cursor(cursor) if cursor else None}
