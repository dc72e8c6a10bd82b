"""The database schema, once, for SQLite and PostgreSQL (SQLAlchemy Core metadata).

This module only *describes* the tables; the app keeps writing plain SQL through
:mod:`samosval.db`. Creating and changing the schema is Alembic's job
(``samosval/alembic/``, run by :func:`samosval.migrations.upgrade_database`).

To change the schema: edit the tables below, then add an Alembic revision in
``samosval/alembic/versions/`` (``python -m samosval.migrations revision "message"``
autogenerates a draft against a scratch database), update ``HEAD`` in
``samosval/migrations.py`` and regenerate ``schema.sql`` with
``python -m samosval.migrations schema-sql > schema.sql``. tests/test_schema_*.py check that all
of these agree.

Types stay what the app's SQL expects on both databases: timestamps are ISO-8601
TEXT, flags INTEGER 0/1, epoch seconds REAL (double precision on PostgreSQL).
Every id is AUTOINCREMENT on SQLite (a deleted row's id is never given to a new
one: an old tab or an audit filter would otherwise mix two objects) and a SERIAL
(sequence) on PostgreSQL. Substring search (trigram indexes: FTS5 tables on SQLite,
pg_trgm GIN indexes on PostgreSQL) is created by the migrations, see
:data:`SQLITE_SEARCH_DDL` and :data:`POSTGRES_SEARCH_DDL`.
"""

from __future__ import annotations

from sqlalchemy import (
    REAL,
    BigInteger,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    text,
)

metadata = MetaData()

# Epoch seconds: REAL on SQLite (as always), DOUBLE PRECISION on PostgreSQL (its REAL
# is single precision: a 1.8e9 timestamp would lose minutes).
Real = Double().with_variant(REAL(), "sqlite")


def _id() -> Column:
    return Column("id", Integer, primary_key=True, autoincrement=True)


def _table(name: str, *items, **kwargs) -> Table:
    return Table(name, metadata, *items, **kwargs)


def _with_id(name: str, *items) -> Table:
    return _table(name, _id(), *items, sqlite_autoincrement=True)


def _users(column: str, nullable: bool = True, ondelete: str | None = None) -> Column:
    return Column(column, Integer, ForeignKey("users.id", ondelete=ondelete), nullable=nullable)


def _flag(name: str, default: int) -> Column:
    return Column(name, Integer, nullable=False, server_default=text(str(default)))


users = _with_id(
    "users",
    Column("username", Text, nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("role", Text, nullable=False),
    _flag("is_active", 1),
    Column("created_at", Text, nullable=False),
    _flag("must_change_password", 0),
    Column("last_login_at", Text),
    Column("locale", Text),
    Column("session_version", Integer, nullable=False, server_default=text("0")),
)
Index("idx_users_role", users.c.role, users.c.username)

image_requests = _with_id(
    "image_requests",
    Column("image_name", Text, nullable=False),
    Column("repo_url", Text, nullable=False),
    Column("repo_branch", Text, nullable=False),
    Column("update_mode", Text, nullable=False),
    Column("target_commit", Text),
    Column("base_image", Text, nullable=False),
    Column("run_commands", Text),
    Column("entrypoint", Text),
    Column("dockerfile_content", Text),
    Column("ram_mb", Integer, nullable=False),
    Column("vcpu", Real, nullable=False),
    Column("version_tag", Text, nullable=False),
    _users("owner_id", nullable=False),
    Column("status", Text, nullable=False),
    Column("collaborators", Text),
    _users("created_by", nullable=False),
    Column("created_at", Text, nullable=False),
    Column("updated_at", Text, nullable=False),
    Column("repo_key", Text),
    Column("last_commit", Text),
)
Index("idx_requests_status", image_requests.c.status, image_requests.c.updated_at)
Index("idx_requests_owner", image_requests.c.owner_id, image_requests.c.updated_at)
Index("idx_requests_created_by", image_requests.c.created_by, image_requests.c.updated_at)
Index("idx_requests_updated", image_requests.c.updated_at)
Index(
    "idx_requests_repo", image_requests.c.repo_key, image_requests.c.repo_branch, image_requests.c.update_mode
)

# Collaborators are kept in image_requests.collaborators (the spec's comma-separated
# string) and mirrored here, one row per login, so visibility checks match whole
# logins through an index instead of a LIKE over the string.
request_collaborators = _table(
    "request_collaborators",
    Column("request_id", Integer, ForeignKey("image_requests.id", ondelete="CASCADE"), nullable=False),
    Column("username", Text, nullable=False),
    PrimaryKeyConstraint("request_id", "username"),
)
Index("idx_request_collaborators_user", request_collaborators.c.username, request_collaborators.c.request_id)

images = _with_id(
    "images",
    Column("request_id", Integer, ForeignKey("image_requests.id"), nullable=False),
    Column("name", Text, nullable=False),
    Column("version", Text, nullable=False),
    Column("image_tag", Text, nullable=False),
    Column("created_at", Text, nullable=False),
    Column("digest", Text),
    Column("build_number", Integer),
)
Index("idx_images_request", images.c.request_id, images.c.id)
Index("idx_images_created", images.c.created_at)
# "Is this the newest image of its tag?" on every list and detail row.
Index("idx_images_tag", images.c.image_tag, images.c.id)

builds = _with_id(
    "builds",
    Column("request_id", Integer, ForeignKey("image_requests.id"), nullable=False),
    Column("image_id", Integer, ForeignKey("images.id")),
    Column("status", Text, nullable=False),
    Column("build_log", Text),
    Column("error_message", Text),
    _users("built_by", nullable=False),
    Column("created_at", Text, nullable=False),
    Column("updated_at", Text),
    Column("started_at", Text),
    Column("finished_at", Text),
    Column("steps_done", Integer, nullable=False, server_default=text("0")),
    Column("steps_total", Integer, nullable=False, server_default=text("0")),
    Column("next_step_at", Real),
    Column("status_since", Real),
    Column("commit_sha", Text),
)
Index("idx_builds_status", builds.c.status, builds.c.next_step_at)
Index("idx_builds_request", builds.c.request_id, builds.c.id)
Index("idx_builds_image", builds.c.image_id, builds.c.id)
# The dashboard's 14-day trends read only the last days.
Index("idx_builds_created", builds.c.created_at)

deployments = _with_id(
    "deployments",
    Column("image_id", Integer, ForeignKey("images.id"), nullable=False),
    Column("name", Text, nullable=False),
    Column("environment", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("replicas", Integer, nullable=False),
    Column("ports", Text),
    _flag("stopped_by_operator", 0),
    _flag("needs_restart", 0),
    Column("created_at", Text, nullable=False),
    Column("updated_at", Text, nullable=False),
    _users("created_by"),
    Column("next_step_at", Real),
    Column("status_since", Real),
    Column("last_commit", Text),
    Column("current_release_id", Integer),
    Column("pinned_at", Text),
    _users("pinned_by"),
)
Index("idx_deployments_status", deployments.c.status, deployments.c.next_step_at)
Index("idx_deployments_image", deployments.c.image_id, deployments.c.status)
Index("idx_deployments_env", deployments.c.environment, deployments.c.status)
Index("idx_deployments_updated", deployments.c.updated_at)
Index("idx_deployments_created", deployments.c.created_at)

alerts = _with_id(
    "alerts",
    Column("alert_type", Text, nullable=False),
    Column("target_id", Integer, nullable=False),
    Column("message", Text, nullable=False),
    _flag("resolved", 0),
    Column("created_at", Text, nullable=False),
    Column("target_type", Text),
    Column("resolved_at", Text),
    _users("resolved_by"),
    Column("message_params", Text),
)
Index("idx_alerts_open", alerts.c.resolved, alerts.c.created_at)
Index("idx_alerts_target", alerts.c.target_type, alerts.c.target_id, alerts.c.resolved)

audit_log = _with_id(
    "audit_log",
    _users("user_id"),
    Column("action", Text, nullable=False),
    Column("target_id", Integer),
    Column("details", Text),
    Column("created_at", Text, nullable=False),
    Column("target_type", Text),
    Column("ip", Text),
    Column("request_id", Text),
)
Index("idx_audit_created", audit_log.c.created_at, audit_log.c.id)
Index("idx_audit_user", audit_log.c.user_id, audit_log.c.id)
Index("idx_audit_action", audit_log.c.action, audit_log.c.id)
Index("idx_audit_target", audit_log.c.target_type, audit_log.c.target_id, audit_log.c.id)

webhook_tokens = _with_id(
    "webhook_tokens",
    Column("name", Text, nullable=False),
    Column("token_prefix", Text, nullable=False),
    Column("token_hash", Text, nullable=False, unique=True),
    Column("sealed_secret", Text, nullable=False),
    _users("created_by"),
    Column("created_at", Text, nullable=False),
    Column("last_used_at", Text),
    Column("revoked_at", Text),
)

webhook_deliveries = _with_id(
    "webhook_deliveries",
    Column("created_at", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("event", Text),
    Column("delivery_key", Text),
    Column("repo_url", Text),
    Column("repo_key", Text),
    Column("branch", Text),
    Column("commit_sha", Text),
    _users("user_id"),
    Column("token_id", Integer, ForeignKey("webhook_tokens.id")),
    Column("outcome", Text, nullable=False),
    Column("reason", Text),
    Column("http_status", Integer, nullable=False),
    Column("matched_request_ids", Text),
    Column("restarted_ids", Text),
    Column("marked_ids", Text),
    Column("body_digest", Text),
)
_d = webhook_deliveries.c
Index("idx_deliveries_created", _d.created_at, _d.id)
# The deliveries page filtered by outcome, newest first.
Index("idx_deliveries_outcome", _d.outcome, _d.id)
Index("idx_deliveries_key", _d.delivery_key)
Index("idx_deliveries_commit", _d.repo_key, _d.branch, _d.commit_sha, _d.outcome)
# A replayed signed body is found by its SHA-256, whatever delivery id it carries.
Index("idx_deliveries_digest", _d.token_id, _d.body_digest)

# One row per signed-in browser. The cookie carries a random token; only its
# SHA-256 is stored. session_version must equal the user's for the row to count.
sessions = _with_id(
    "sessions",
    Column("token_hash", Text, nullable=False, unique=True),
    _users("user_id", nullable=False, ondelete="CASCADE"),
    Column("session_version", Integer, nullable=False),
    Column("created_at", Text, nullable=False),
    Column("last_seen_at", Text, nullable=False),
    Column("address", Text),
    Column("user_agent", Text),
)
Index("idx_sessions_user", sessions.c.user_id, sessions.c.last_seen_at)

# Wrong passwords per username (lower-cased), for growing delays between attempts.
login_throttle = _table(
    "login_throttle",
    Column("username", Text, primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("last_failure_at", Real, nullable=False),
    Column("blocked_until", Real, nullable=False),
)
Index("idx_login_throttle_age", login_throttle.c.last_failure_at)

# Releases (issue 20): every rollout of a deployment is numbered v1, v2, ... per
# deployment. status: pending_approval | deploying | running | failed | rejected |
# expired | cancelled ("running" is the outcome: it came up). config_version points
# at the configuration it ran with (NULL until deployments have configurations).
releases = _with_id(
    "releases",
    Column("deployment_id", Integer, ForeignKey("deployments.id", ondelete="CASCADE"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("status", Text, nullable=False),
    Column("image_id", Integer, ForeignKey("images.id")),
    Column("image_tag", Text, nullable=False),
    Column("image_digest", Text, nullable=False),
    Column("commit_sha", Text),
    Column("config_version", Integer),
    Column("trigger_kind", Text, nullable=False),
    Column("cause", Text, nullable=False),
    Column("rollback_of", Integer),
    Column("delivery_id", Integer),
    Column("created_at", Text, nullable=False),
    Column("created_ts", Real, nullable=False),
    _users("created_by"),
    Column("finished_at", Text),
    Column("failure_reason", Text),
    Column("decided_at", Text),
    _users("decided_by"),
    Column("decision_reason", Text),
)
Index("idx_releases_number", releases.c.deployment_id, releases.c.number, unique=True)
Index("idx_releases_status", releases.c.status, releases.c.created_ts)

# Environments an admin protected: every rollout there waits for a second person.
protected_environments = _table(
    "protected_environments",
    Column("environment", Text, primary_key=True),
    Column("protected_at", Text, nullable=False),
    _users("protected_by"),
)

# Configuration of deployments (issue 21): each change is a numbered version per
# deployment, the whole set of variables; a release's config_version is that number.
# A secret's value is only ever stored sealed (samosval/crypto.py): value is NULL.
config_versions = _with_id(
    "config_versions",
    Column("deployment_id", Integer, ForeignKey("deployments.id", ondelete="CASCADE"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("created_at", Text, nullable=False),
    _users("created_by"),
)
Index("idx_config_versions_number", config_versions.c.deployment_id, config_versions.c.number, unique=True)
config_entries = _table(
    "config_entries",
    Column("version_id", Integer, ForeignKey("config_versions.id", ondelete="CASCADE"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("key", Text, nullable=False),
    Column("value", Text),
    Column("sealed_value", Text),
    PrimaryKeyConstraint("version_id", "key"),
)

# Notifications (issue 21): channels an admin configures (secret settings sealed),
# people's subscriptions, a durable outbox with every attempt, and the audit-log
# cursor up to which events were fanned out.
notification_channels = _with_id(
    "notification_channels",
    Column("name", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("settings", Text, nullable=False),
    Column("sealed_settings", Text, nullable=False),
    _flag("enabled", 1),
    Column("created_at", Text, nullable=False),
    _users("created_by"),
    Column("updated_at", Text, nullable=False),
)
notification_subscriptions = _with_id(
    "notification_subscriptions",
    _users("user_id", nullable=False, ondelete="CASCADE"),
    Column("channel_id", Integer, ForeignKey("notification_channels.id", ondelete="CASCADE"), nullable=False),
    Column("scope", Text, nullable=False),
    Column("target_id", Integer),
    Column("events", Text, nullable=False),
    Column("recipient", Text, nullable=False, server_default=text("''")),
    Column("created_at", Text, nullable=False),
)
Index("idx_subscriptions_user", notification_subscriptions.c.user_id, notification_subscriptions.c.id)
Index("idx_subscriptions_target", notification_subscriptions.c.scope, notification_subscriptions.c.target_id)
notification_outbox = _with_id(
    "notification_outbox",
    Column("channel_id", Integer, ForeignKey("notification_channels.id", ondelete="CASCADE"), nullable=False),
    Column("source_audit_id", Integer),
    Column("recipient", Text, nullable=False, server_default=text("''")),
    Column("event", Text, nullable=False),
    Column("payload", Text, nullable=False),
    Column("delivery_uuid", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", Real),
    Column("last_error", Text),
    Column("created_at", Text, nullable=False),
    Column("sent_at", Text),
)
_o = notification_outbox.c
Index("idx_outbox_source", _o.source_audit_id, _o.channel_id, _o.recipient, unique=True)
Index("idx_outbox_due", _o.status, _o.next_attempt_at)
Index("idx_outbox_channel", _o.channel_id, _o.id)
notification_attempts = _with_id(
    "notification_attempts",
    Column("message_id", Integer, ForeignKey("notification_outbox.id", ondelete="CASCADE"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("at", Text, nullable=False),
    Column("ok", Integer, nullable=False),
    Column("http_status", Integer),
    Column("error", Text),
    Column("duration_ms", Real, nullable=False),
)
Index("idx_attempts_message", notification_attempts.c.message_id, notification_attempts.c.number)
notification_state = _table(
    "notification_state",
    Column("name", Text, primary_key=True),
    Column("value", Integer, nullable=False),
)

# Personal access tokens for the JSON API (issue 22): shown once, kept as a SHA-256
# hash; scopes is a space-separated subset of "read write admin".
api_tokens = _with_id(
    "api_tokens",
    _users("user_id", nullable=False, ondelete="CASCADE"),
    Column("name", Text, nullable=False),
    Column("token_prefix", Text, nullable=False),
    Column("token_hash", Text, nullable=False, unique=True),
    Column("scopes", Text, nullable=False),
    Column("created_at", Text, nullable=False),
    Column("expires_at", Text, nullable=False),
    Column("expires_ts", Real, nullable=False),
    Column("last_used_at", Text),
    Column("last_used_ts", Real),
    Column("revoked_at", Text),
)
Index("idx_api_tokens_user", api_tokens.c.user_id, api_tokens.c.id)

# The engine's lease (issue 15, samosval/simulator/leader.py): one row per lease name.
# Several processes on PostgreSQL step the simulation only while holding it; token
# grows by one on every takeover (the fencing token); expires_at is epoch seconds of
# the database's clock. Unused on SQLite (one process, no lease).
engine_lease = _table(
    "engine_lease",
    Column("name", Text, primary_key=True),
    Column("holder", Text, nullable=False),
    Column("token", BigInteger, nullable=False),
    Column("expires_at", Real, nullable=False),
)

# Substring search on PostgreSQL (pg_trgm GIN indexes; the baseline migration creates
# the extension). On SQLite the same columns are searched through FTS5 trigram tables
# and triggers, which the migrations create and the metadata does not describe.
for _name, _column in (
    ("idx_requests_image_name_trgm", image_requests.c.image_name),
    ("idx_requests_repo_url_trgm", image_requests.c.repo_url),
    ("idx_audit_details_trgm", audit_log.c.details),
):
    _trigram = Index(_name, _column, postgresql_using="gin", postgresql_ops={_column.name: "gin_trgm_ops"})
    _trigram.ddl_if(dialect="postgresql")

# Tables the migrations own outside the metadata (FTS5 tables and their shadow tables,
# Alembic's own version table): schema comparisons skip them.
UNDESCRIBED_TABLE_PREFIXES = ("audit_fts", "request_fts", "alembic_version")


def described(name: str | None, type_: str) -> bool:
    """Whether a reflected object belongs to the metadata (Alembic's ``include_name``)."""
    return not (type_ == "table" and name and name.startswith(UNDESCRIBED_TABLE_PREFIXES))


def for_dialect(obj, dialect_name: str) -> bool:
    """Whether ``obj`` (an Index) exists on ``dialect_name`` (its ``ddl_if``, if any)."""
    condition = getattr(obj, "_ddl_if", None)
    return condition is None or condition.dialect in (None, dialect_name)
