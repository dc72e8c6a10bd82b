"""What the API reads and answers: marshmallow schemas, which are also what the
OpenAPI document says (apispec reads them)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from .. import permissions
from ..domain import deployments as deployment_domain
from ..domain.requests import REQUEST_STATUSES, UPDATE_MODES
from ..domain.statuses import BUILD_STATUSES
from .common import PageArgsSchema, page_schema


class Flag(fields.Boolean):
    """A boolean answer from SQLite's 0/1 (marshmallow passes 0 through as 0)."""

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else bool(value)


def _text(**kwargs):
    return fields.String(allow_none=True, **kwargs)


def _int(**kwargs):
    return fields.Integer(allow_none=True, **kwargs)


# --- who am I ------------------------------------------------------------------------


class MeSchema(Schema):
    id = fields.Integer(required=True)
    username = fields.String(required=True)
    role = fields.String(required=True, validate=validate.OneOf(permissions.ROLES))
    token_scopes = fields.List(
        fields.String(),
        allow_none=True,
        required=True,
        metadata={"description": "The token's scopes; null with a session cookie."},
    )


# --- image requests ---------------------------------------------------------------------


class RequestListArgs(PageArgsSchema):
    status = fields.String(load_default="", validate=validate.OneOf(("", *REQUEST_STATUSES)))
    owner = fields.String(load_default="", validate=validate.Length(max=64))
    q = fields.String(load_default="", validate=validate.Length(max=100))
    mine = fields.Bool(load_default=False)


class RequestItemSchema(Schema):
    id = fields.Integer(required=True)
    image_name = fields.String(required=True)
    version_tag = _text()
    status = fields.String(required=True)
    repo_url = fields.String(required=True)
    updated_at = _text()
    owner_username = fields.String(required=True)


class RequestSchema(RequestItemSchema):
    repo_branch = _text()
    update_mode = fields.String(required=True)
    target_commit = _text()
    base_image = _text()
    run_commands = _text()
    entrypoint = _text()
    dockerfile_content = _text()
    ram_mb = _int()
    vcpu = fields.Float(allow_none=True)
    collaborators = _text()
    creator_username = _text()
    created_at = _text()
    next_statuses = fields.List(
        fields.String(), required=True, metadata={"description": "Statuses you may move it to now."}
    )


class RequestInputSchema(Schema):
    """The request form's fields. Everything is checked by the same rules as the form."""

    image_name = fields.String(required=True, validate=validate.Length(max=128))
    repo_url = fields.String(required=True, validate=validate.Length(max=500))
    repo_branch = fields.String(load_default="main", validate=validate.Length(max=200))
    update_mode = fields.String(load_default="continuous", validate=validate.OneOf(UPDATE_MODES))
    target_commit = fields.String(load_default="", validate=validate.Length(max=40))
    base_image = fields.String(required=True, validate=validate.Length(max=200))
    run_commands = fields.String(load_default="", validate=validate.Length(max=10000))
    entrypoint = fields.String(load_default="", validate=validate.Length(max=500))
    ram_mb = fields.Integer(load_default=512, validate=validate.Range(min=0, max=10**6))
    vcpu = fields.Float(load_default=1.0, allow_nan=False, validate=validate.Range(min=0, max=10**3))
    version_tag = fields.String(required=True, validate=validate.Length(max=128))
    collaborators = fields.String(load_default="", validate=validate.Length(max=2000))
    owner = fields.String(
        load_default="",
        validate=validate.Length(max=64),
        metadata={"description": "Staff only; a developer owns what they create."},
    )


class RequestStatusInput(Schema):
    status = fields.String(required=True, validate=validate.OneOf(REQUEST_STATUSES))


class StatusChangedSchema(Schema):
    id = fields.Integer(required=True)
    status = fields.String(required=True)


# --- builds ----------------------------------------------------------------------------


class BuildListArgs(PageArgsSchema):
    status = fields.String(load_default="", validate=validate.OneOf(("", *BUILD_STATUSES)))


class BuildSchema(Schema):
    id = fields.Integer(required=True)
    request_id = fields.Integer(required=True)
    status = fields.String(required=True)
    steps_done = _int()
    steps_total = _int()
    image_id = _int()
    created_at = _text()
    finished_at = _text()
    image_name = _text()
    version_tag = _text()
    built_by_username = _text()
    error_message = _text()


class BuildLogArgs(Schema):
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0, max=2**62))


class BuildLogSchema(Schema):
    status = fields.String(required=True)
    log = fields.String(required=True, metadata={"description": "The text after offset."})
    offset = fields.Integer(required=True, metadata={"description": "Pass back to get what follows."})
    steps_done = _int()
    steps_total = _int()
    progress = fields.Float(required=True)
    image_id = _int()
    error_message = _text()
    finished = Flag(required=True)


# --- images --------------------------------------------------------------------------------


class ImageListArgs(PageArgsSchema):
    q = fields.String(load_default="", validate=validate.Length(max=100))


class ImageSchema(Schema):
    id = fields.Integer(required=True)
    request_id = fields.Integer(required=True)
    name = fields.String(required=True)
    version = fields.String(required=True)
    image_tag = fields.String(required=True)
    digest = _text()
    build_number = _int()
    created_at = fields.String(required=True)
    image_name = _text()
    newest_id = _int(metadata={"description": "The newest image of this tag you can see."})
    deployment_count = _int()


class DeploymentInputSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(max=200))
    environment = fields.String(required=True, validate=validate.OneOf(deployment_domain.ENVIRONMENTS))
    replicas = fields.Integer(load_default=1, validate=validate.Range(min=-(10**6), max=10**6))
    ports = fields.String(load_default="", validate=validate.Length(max=500))


# --- deployments ---------------------------------------------------------------------------


class DeploymentListArgs(PageArgsSchema):
    status = fields.String(
        load_default="", validate=validate.OneOf(("", *deployment_domain.DEPLOYMENT_STATUSES))
    )
    environment = fields.String(
        load_default="", validate=validate.OneOf(("", *deployment_domain.ENVIRONMENTS))
    )


class DeploymentItemSchema(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    environment = fields.String(required=True)
    status = fields.String(required=True)
    replicas = _int()
    ports = _text()
    stopped_by_operator = Flag(required=True)
    needs_restart = Flag(required=True)
    updated_at = _text()
    created_at = _text()
    image_id = fields.Integer(required=True)
    image_tag = fields.String(required=True)


class DeploymentSchema(DeploymentItemSchema):
    pinned = Flag(required=True)
    current_release_id = _int()
    actions = fields.List(
        fields.String(), required=True, metadata={"description": "The actions you may take now."}
    )


class DeploymentActionInput(Schema):
    action = fields.String(
        required=True, validate=validate.OneOf(tuple(deployment_domain.ACTION_FROM_STATUSES))
    )


class DeploymentStateSchema(Schema):
    id = fields.Integer(required=True)
    status = fields.String(required=True)
    actions = fields.List(fields.String())
    stopped_by_operator = Flag()
    needs_restart = Flag()
    updated_at = _text()
    pinned = Flag()
    current_release_id = _int()


class LogArgs(Schema):
    after = fields.Integer(
        load_default=0,
        validate=validate.Range(min=0, max=2**62),
        metadata={"description": "The last seq you have; 0 for the buffer's start."},
    )
    limit = fields.Integer(load_default=200, validate=validate.Range(min=1, max=1000))


class LogLineSchema(Schema):
    seq = fields.Integer(required=True)
    ts = fields.Float(required=True)
    level = fields.String(required=True)
    text = fields.String(required=True)


class LogPageSchema(Schema):
    lines = fields.List(fields.Nested(LogLineSchema), required=True)
    next_after = fields.Integer(required=True, metadata={"description": "Pass as after for what follows."})
    missed = fields.Integer(
        required=True, metadata={"description": "Lines after yours that fell off the 1000-line buffer."}
    )


class MetricsArgs(Schema):
    since = fields.Float(
        load_default=None,
        allow_nan=False,
        validate=validate.Range(min=0, max=1e12),
        metadata={"description": "Unix time: only points after it."},
    )


class MetricPointSchema(Schema):
    ts = fields.Float(required=True)
    cpu = fields.Float(required=True)
    ram = fields.Float(required=True)


class MetricsSchema(Schema):
    id = fields.Integer(required=True)
    status = fields.String(required=True)
    points = fields.List(fields.Nested(MetricPointSchema), required=True)


# --- releases ----------------------------------------------------------------------------------


class ReleaseSchema(Schema):
    id = fields.Integer(required=True)
    number = fields.Integer(required=True)
    status = fields.String(required=True)
    image_tag = _text()
    image_digest = _text()
    commit = _text()
    config_version = _int()
    trigger = _text()
    cause = _text()
    rollback_of = _int()
    delivery_id = _int()
    created_at = _text()
    created_by = _text()
    failure_reason = _text()
    decided_by = _text()
    decided_at = _text()
    decision_reason = _text()
    current = Flag(required=True)
    deployment_id = fields.Integer()


class RollbackInput(Schema):
    release = fields.Integer(
        required=True,
        validate=validate.Range(min=1, max=2**62),
        metadata={"description": "The release number to roll back to."},
    )


class RejectInput(Schema):
    reason = fields.String(load_default="", validate=validate.Length(max=1000))


class ReleaseAnswerSchema(Schema):
    release = fields.Nested(ReleaseSchema, required=True)
    pinned = Flag(required=True)


class PinSchema(Schema):
    id = fields.Integer(required=True)
    pinned = Flag(required=True)


# --- users and audit (admins) ---------------------------------------------------------------------


class UserListArgs(PageArgsSchema):
    role = fields.String(load_default="", validate=validate.OneOf(("", *permissions.ROLES)))


class UserSchema(Schema):
    id = fields.Integer(required=True)
    username = fields.String(required=True)
    role = fields.String(required=True)
    is_active = Flag(required=True)
    created_at = _text()
    last_login_at = _text()


class UserInputSchema(Schema):
    username = fields.String(required=True, validate=validate.Length(max=64))
    password = fields.String(required=True, load_only=True, validate=validate.Length(max=200))
    role = fields.String(required=True, validate=validate.OneOf(permissions.ROLES))


class RoleInput(Schema):
    role = fields.String(required=True, validate=validate.OneOf(permissions.ROLES))


class AuditArgs(PageArgsSchema):
    user = fields.String(load_default="", validate=validate.Length(max=64))
    action = fields.String(load_default="", validate=validate.Length(max=64))
    q = fields.String(load_default="", validate=validate.Length(max=200))
    target_type = fields.String(load_default="", validate=validate.Length(max=32))


class AuditEntrySchema(Schema):
    id = fields.Integer(required=True)
    created_at = fields.String(required=True)
    user_id = _int()
    username = _text()
    action = fields.String(required=True)
    target_type = _text()
    target_id = _int()
    details = _text()
    ip = _text()


RequestPage = page_schema(RequestItemSchema, "RequestPageSchema")
BuildPage = page_schema(BuildSchema, "BuildPageSchema")
ImagePage = page_schema(ImageSchema, "ImagePageSchema")
DeploymentPage = page_schema(DeploymentItemSchema, "DeploymentPageSchema")
ReleasePage = page_schema(ReleaseSchema, "ReleasePageSchema")
UserPage = page_schema(UserSchema, "UserPageSchema")
AuditPage = page_schema(AuditEntrySchema, "AuditPageSchema")
