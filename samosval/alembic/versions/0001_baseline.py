"""Baseline: the whole schema of Samosval as the hand-kept migrations left it (their
version 11), on SQLite or PostgreSQL, from an empty database.

Frozen: never edit a released revision; change the schema with a new one. An
existing SQLite database of the hand-kept era reaches this shape through
``samosval/legacy`` and is stamped here (see ``samosval/migrations.py``).

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Epoch seconds: REAL on SQLite, DOUBLE PRECISION on PostgreSQL.
REAL = sa.Double().with_variant(sa.REAL(), "sqlite")

# Substring search on SQLite: FTS5 trigram tables over audit_log.details and
# image_requests' name and repository URL, external content kept in step by
# triggers (samosval/domain/text_search.py). Text exactly as the hand-kept schema had it.
SQLITE_SEARCH = [
    """CREATE VIRTUAL TABLE IF NOT EXISTS request_fts USING fts5(
    image_name, repo_url, content='image_requests', content_rowid='id', tokenize='trigram'
)""",
    """CREATE TRIGGER IF NOT EXISTS request_fts_insert AFTER INSERT ON image_requests BEGIN
    INSERT INTO request_fts (rowid, image_name, repo_url) VALUES (new.id, new.image_name, new.repo_url);
END""",
    """CREATE TRIGGER IF NOT EXISTS request_fts_delete AFTER DELETE ON image_requests BEGIN
    INSERT INTO request_fts (request_fts, rowid, image_name, repo_url)
        VALUES ('delete', old.id, old.image_name, old.repo_url);
END""",
    """CREATE TRIGGER IF NOT EXISTS request_fts_update AFTER UPDATE OF image_name, repo_url ON image_requests BEGIN
    INSERT INTO request_fts (request_fts, rowid, image_name, repo_url)
        VALUES ('delete', old.id, old.image_name, old.repo_url);
    INSERT INTO request_fts (rowid, image_name, repo_url) VALUES (new.id, new.image_name, new.repo_url);
END""",
    """CREATE VIRTUAL TABLE IF NOT EXISTS audit_fts USING fts5(
    details, content='audit_log', content_rowid='id', tokenize='trigram'
)""",
    """CREATE TRIGGER IF NOT EXISTS audit_fts_insert AFTER INSERT ON audit_log BEGIN
    INSERT INTO audit_fts (rowid, details) VALUES (new.id, new.details);
END""",
    """CREATE TRIGGER IF NOT EXISTS audit_fts_delete AFTER DELETE ON audit_log BEGIN
    INSERT INTO audit_fts (audit_fts, rowid, details) VALUES ('delete', old.id, old.details);
END""",
    """CREATE TRIGGER IF NOT EXISTS audit_fts_update AFTER UPDATE OF details ON audit_log BEGIN
    INSERT INTO audit_fts (audit_fts, rowid, details) VALUES ('delete', old.id, old.details);
    INSERT INTO audit_fts (rowid, details) VALUES (new.id, new.details);
END""",
]

# Substring search on PostgreSQL: pg_trgm GIN indexes on the same columns (LIKE and
# ILIKE with a pattern of 3+ characters use them directly).
POSTGRES_TRIGRAM_INDEXES = [
    ("idx_requests_image_name_trgm", "image_requests", "image_name"),
    ("idx_requests_repo_url_trgm", "image_requests", "repo_url"),
    ("idx_audit_details_trgm", "audit_log", "details"),
]


def upgrade() -> None:
    op.create_table(
        "login_throttle",
        sa.Column("username", sa.Text(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failure_at", REAL, nullable=False),
        sa.Column("blocked_until", REAL, nullable=False),
        sa.PrimaryKeyConstraint("username"),
    )
    op.create_index("idx_login_throttle_age", "login_throttle", ["last_failure_at"], unique=False)
    op.create_table(
        "notification_state",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("username", sa.Text(), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("is_active", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("must_change_password", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_login_at", sa.Text(), nullable=True),
        sa.Column("locale", sa.Text(), nullable=True),
        sa.Column("session_version", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("username"),
        sqlite_autoincrement=True,
    )
    op.create_index("idx_users_role", "users", ["role", "username"], unique=False)
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("alert_type", sa.Text(), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("resolved", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("target_type", sa.Text(), nullable=True),
        sa.Column("resolved_at", sa.Text(), nullable=True),
        sa.Column("resolved_by", sa.Integer(), nullable=True),
        sa.Column("message_params", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["resolved_by"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("idx_alerts_open", "alerts", ["resolved", "created_at"], unique=False)
    op.create_index("idx_alerts_target", "alerts", ["target_type", "target_id", "resolved"], unique=False)
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("token_prefix", sa.Text(), nullable=False),
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.Text(), nullable=False),
        sa.Column("expires_ts", REAL, nullable=False),
        sa.Column("last_used_at", sa.Text(), nullable=True),
        sa.Column("last_used_ts", REAL, nullable=True),
        sa.Column("revoked_at", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
        sqlite_autoincrement=True,
    )
    op.create_index("idx_api_tokens_user", "api_tokens", ["user_id", "id"], unique=False)
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=True),
        sa.Column("details", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("target_type", sa.Text(), nullable=True),
        sa.Column("ip", sa.Text(), nullable=True),
        sa.Column("request_id", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("idx_audit_action", "audit_log", ["action", "id"], unique=False)
    op.create_index("idx_audit_created", "audit_log", ["created_at", "id"], unique=False)
    op.create_index("idx_audit_target", "audit_log", ["target_type", "target_id", "id"], unique=False)
    op.create_index("idx_audit_user", "audit_log", ["user_id", "id"], unique=False)
    op.create_table(
        "image_requests",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("image_name", sa.Text(), nullable=False),
        sa.Column("repo_url", sa.Text(), nullable=False),
        sa.Column("repo_branch", sa.Text(), nullable=False),
        sa.Column("update_mode", sa.Text(), nullable=False),
        sa.Column("target_commit", sa.Text(), nullable=True),
        sa.Column("base_image", sa.Text(), nullable=False),
        sa.Column("run_commands", sa.Text(), nullable=True),
        sa.Column("entrypoint", sa.Text(), nullable=True),
        sa.Column("dockerfile_content", sa.Text(), nullable=True),
        sa.Column("ram_mb", sa.Integer(), nullable=False),
        sa.Column("vcpu", REAL, nullable=False),
        sa.Column("version_tag", sa.Text(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("collaborators", sa.Text(), nullable=True),
        sa.Column("created_by", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Text(), nullable=False),
        sa.Column("repo_key", sa.Text(), nullable=True),
        sa.Column("last_commit", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("idx_requests_created_by", "image_requests", ["created_by", "updated_at"], unique=False)
    op.create_index("idx_requests_owner", "image_requests", ["owner_id", "updated_at"], unique=False)
    op.create_index(
        "idx_requests_repo", "image_requests", ["repo_key", "repo_branch", "update_mode"], unique=False
    )
    op.create_index("idx_requests_status", "image_requests", ["status", "updated_at"], unique=False)
    op.create_index("idx_requests_updated", "image_requests", ["updated_at"], unique=False)
    op.create_table(
        "notification_channels",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("settings", sa.Text(), nullable=False),
        sa.Column("sealed_settings", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "protected_environments",
        sa.Column("environment", sa.Text(), nullable=False),
        sa.Column("protected_at", sa.Text(), nullable=False),
        sa.Column("protected_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["protected_by"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("environment"),
    )
    op.create_table(
        "sessions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("session_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("last_seen_at", sa.Text(), nullable=False),
        sa.Column("address", sa.Text(), nullable=True),
        sa.Column("user_agent", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
        sqlite_autoincrement=True,
    )
    op.create_index("idx_sessions_user", "sessions", ["user_id", "last_seen_at"], unique=False)
    op.create_table(
        "webhook_tokens",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("token_prefix", sa.Text(), nullable=False),
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("sealed_secret", sa.Text(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("last_used_at", sa.Text(), nullable=True),
        sa.Column("revoked_at", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "images",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("version", sa.Text(), nullable=False),
        sa.Column("image_tag", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("digest", sa.Text(), nullable=True),
        sa.Column("build_number", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["image_requests.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("idx_images_created", "images", ["created_at"], unique=False)
    op.create_index("idx_images_request", "images", ["request_id", "id"], unique=False)
    op.create_index("idx_images_tag", "images", ["image_tag", "id"], unique=False)
    op.create_table(
        "notification_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("source_audit_id", sa.Integer(), nullable=True),
        sa.Column("recipient", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("delivery_uuid", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_attempt_at", REAL, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("sent_at", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["channel_id"], ["notification_channels.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("idx_outbox_channel", "notification_outbox", ["channel_id", "id"], unique=False)
    op.create_index("idx_outbox_due", "notification_outbox", ["status", "next_attempt_at"], unique=False)
    op.create_index(
        "idx_outbox_source",
        "notification_outbox",
        ["source_audit_id", "channel_id", "recipient"],
        unique=True,
    )
    op.create_table(
        "notification_subscriptions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=True),
        sa.Column("events", sa.Text(), nullable=False),
        sa.Column("recipient", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["channel_id"], ["notification_channels.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "idx_subscriptions_target", "notification_subscriptions", ["scope", "target_id"], unique=False
    )
    op.create_index("idx_subscriptions_user", "notification_subscriptions", ["user_id", "id"], unique=False)
    op.create_table(
        "request_collaborators",
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("username", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["request_id"], ["image_requests.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("request_id", "username"),
    )
    op.create_index(
        "idx_request_collaborators_user", "request_collaborators", ["username", "request_id"], unique=False
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("event", sa.Text(), nullable=True),
        sa.Column("delivery_key", sa.Text(), nullable=True),
        sa.Column("repo_url", sa.Text(), nullable=True),
        sa.Column("repo_key", sa.Text(), nullable=True),
        sa.Column("branch", sa.Text(), nullable=True),
        sa.Column("commit_sha", sa.Text(), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("token_id", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("http_status", sa.Integer(), nullable=False),
        sa.Column("matched_request_ids", sa.Text(), nullable=True),
        sa.Column("restarted_ids", sa.Text(), nullable=True),
        sa.Column("marked_ids", sa.Text(), nullable=True),
        sa.Column("body_digest", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["token_id"],
            ["webhook_tokens.id"],
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "idx_deliveries_commit",
        "webhook_deliveries",
        ["repo_key", "branch", "commit_sha", "outcome"],
        unique=False,
    )
    op.create_index("idx_deliveries_created", "webhook_deliveries", ["created_at", "id"], unique=False)
    op.create_index("idx_deliveries_digest", "webhook_deliveries", ["token_id", "body_digest"], unique=False)
    op.create_index("idx_deliveries_key", "webhook_deliveries", ["delivery_key"], unique=False)
    op.create_index("idx_deliveries_outcome", "webhook_deliveries", ["outcome", "id"], unique=False)
    op.create_table(
        "builds",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("build_log", sa.Text(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("built_by", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Text(), nullable=True),
        sa.Column("started_at", sa.Text(), nullable=True),
        sa.Column("finished_at", sa.Text(), nullable=True),
        sa.Column("steps_done", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("steps_total", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_step_at", REAL, nullable=True),
        sa.Column("status_since", REAL, nullable=True),
        sa.Column("commit_sha", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["built_by"],
            ["users.id"],
        ),
        sa.ForeignKeyConstraint(
            ["image_id"],
            ["images.id"],
        ),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["image_requests.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("idx_builds_created", "builds", ["created_at"], unique=False)
    op.create_index("idx_builds_image", "builds", ["image_id", "id"], unique=False)
    op.create_index("idx_builds_request", "builds", ["request_id", "id"], unique=False)
    op.create_index("idx_builds_status", "builds", ["status", "next_step_at"], unique=False)
    op.create_table(
        "deployments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("environment", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("replicas", sa.Integer(), nullable=False),
        sa.Column("ports", sa.Text(), nullable=True),
        sa.Column("stopped_by_operator", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("needs_restart", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Text(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("next_step_at", REAL, nullable=True),
        sa.Column("status_since", REAL, nullable=True),
        sa.Column("last_commit", sa.Text(), nullable=True),
        sa.Column("current_release_id", sa.Integer(), nullable=True),
        sa.Column("pinned_at", sa.Text(), nullable=True),
        sa.Column("pinned_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
        ),
        sa.ForeignKeyConstraint(
            ["image_id"],
            ["images.id"],
        ),
        sa.ForeignKeyConstraint(
            ["pinned_by"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("idx_deployments_created", "deployments", ["created_at"], unique=False)
    op.create_index("idx_deployments_env", "deployments", ["environment", "status"], unique=False)
    op.create_index("idx_deployments_image", "deployments", ["image_id", "status"], unique=False)
    op.create_index("idx_deployments_status", "deployments", ["status", "next_step_at"], unique=False)
    op.create_index("idx_deployments_updated", "deployments", ["updated_at"], unique=False)
    op.create_table(
        "notification_attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("at", sa.Text(), nullable=False),
        sa.Column("ok", sa.Integer(), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("duration_ms", REAL, nullable=False),
        sa.ForeignKeyConstraint(["message_id"], ["notification_outbox.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("idx_attempts_message", "notification_attempts", ["message_id", "number"], unique=False)
    op.create_table(
        "config_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("deployment_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
        ),
        sa.ForeignKeyConstraint(["deployment_id"], ["deployments.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("idx_config_versions_number", "config_versions", ["deployment_id", "number"], unique=True)
    op.create_table(
        "releases",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("deployment_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=True),
        sa.Column("image_tag", sa.Text(), nullable=False),
        sa.Column("image_digest", sa.Text(), nullable=False),
        sa.Column("commit_sha", sa.Text(), nullable=True),
        sa.Column("config_version", sa.Integer(), nullable=True),
        sa.Column("trigger_kind", sa.Text(), nullable=False),
        sa.Column("cause", sa.Text(), nullable=False),
        sa.Column("rollback_of", sa.Integer(), nullable=True),
        sa.Column("delivery_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("created_ts", REAL, nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("finished_at", sa.Text(), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("decided_at", sa.Text(), nullable=True),
        sa.Column("decided_by", sa.Integer(), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
        ),
        sa.ForeignKeyConstraint(
            ["decided_by"],
            ["users.id"],
        ),
        sa.ForeignKeyConstraint(["deployment_id"], ["deployments.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["image_id"],
            ["images.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("idx_releases_number", "releases", ["deployment_id", "number"], unique=True)
    op.create_index("idx_releases_status", "releases", ["status", "created_ts"], unique=False)
    op.create_table(
        "config_entries",
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("sealed_value", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["version_id"], ["config_versions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("version_id", "key"),
    )

    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for statement in SQLITE_SEARCH:
            op.execute(statement)
    elif dialect == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        for name, table, column in POSTGRES_TRIGRAM_INDEXES:
            op.create_index(
                name, table, [column], postgresql_using="gin", postgresql_ops={column: "gin_trgm_ops"}
            )


def downgrade() -> None:
    raise NotImplementedError("the baseline is not undone: restore a backup instead")
