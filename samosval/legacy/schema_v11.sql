-- FROZEN: schema.sql as the hand-kept history left it at version 11, read by the steps in
-- samosval/legacy/steps.py. Never edit it; the schema changes through Alembic now.
-- Every id is AUTOINCREMENT: a deleted row's id is never given to a new one (an old
-- tab or an audit filter would otherwise mix two objects).

CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    username TEXT UNIQUE NOT NULL,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    is_active INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    must_change_password INTEGER NOT NULL DEFAULT 0,
    last_login_at TEXT,
    locale TEXT,
    session_version INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS idx_users_role ON users(role, username);

CREATE TABLE IF NOT EXISTS image_requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    image_name TEXT NOT NULL,
    repo_url TEXT NOT NULL,
    repo_branch TEXT NOT NULL,
    update_mode TEXT NOT NULL,
    target_commit TEXT,
    base_image TEXT NOT NULL,
    run_commands TEXT,
    entrypoint TEXT,
    dockerfile_content TEXT,
    ram_mb INTEGER NOT NULL,
    vcpu REAL NOT NULL,
    version_tag TEXT NOT NULL,
    owner_id INTEGER NOT NULL REFERENCES users(id),
    status TEXT NOT NULL,
    collaborators TEXT,
    created_by INTEGER NOT NULL REFERENCES users(id),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    repo_key TEXT,
    last_commit TEXT
);
CREATE INDEX IF NOT EXISTS idx_requests_status ON image_requests(status, updated_at);
CREATE INDEX IF NOT EXISTS idx_requests_owner ON image_requests(owner_id, updated_at);
CREATE INDEX IF NOT EXISTS idx_requests_created_by ON image_requests(created_by, updated_at);
CREATE INDEX IF NOT EXISTS idx_requests_updated ON image_requests(updated_at);
CREATE INDEX IF NOT EXISTS idx_requests_repo ON image_requests(repo_key, repo_branch, update_mode);

-- The requests list's text search (image name or repository URL): a trigram index,
-- external content, kept in step by triggers; LIKE re-checks every candidate.
CREATE VIRTUAL TABLE IF NOT EXISTS request_fts USING fts5(
    image_name, repo_url, content='image_requests', content_rowid='id', tokenize='trigram'
);
CREATE TRIGGER IF NOT EXISTS request_fts_insert AFTER INSERT ON image_requests BEGIN
    INSERT INTO request_fts (rowid, image_name, repo_url) VALUES (new.id, new.image_name, new.repo_url);
END;
CREATE TRIGGER IF NOT EXISTS request_fts_delete AFTER DELETE ON image_requests BEGIN
    INSERT INTO request_fts (request_fts, rowid, image_name, repo_url)
        VALUES ('delete', old.id, old.image_name, old.repo_url);
END;
CREATE TRIGGER IF NOT EXISTS request_fts_update AFTER UPDATE OF image_name, repo_url ON image_requests BEGIN
    INSERT INTO request_fts (request_fts, rowid, image_name, repo_url)
        VALUES ('delete', old.id, old.image_name, old.repo_url);
    INSERT INTO request_fts (rowid, image_name, repo_url) VALUES (new.id, new.image_name, new.repo_url);
END;

-- Collaborators are kept in image_requests.collaborators (the spec's comma-separated
-- string) and mirrored here, one row per login, so visibility checks match whole
-- logins through an index instead of a LIKE over the string.
CREATE TABLE IF NOT EXISTS request_collaborators (
    request_id INTEGER NOT NULL REFERENCES image_requests(id) ON DELETE CASCADE,
    username TEXT NOT NULL,
    PRIMARY KEY (request_id, username)
);
CREATE INDEX IF NOT EXISTS idx_request_collaborators_user ON request_collaborators(username, request_id);

CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id INTEGER NOT NULL REFERENCES image_requests(id),
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    image_tag TEXT NOT NULL,
    created_at TEXT NOT NULL,
    digest TEXT,
    build_number INTEGER
);
CREATE INDEX IF NOT EXISTS idx_images_request ON images(request_id, id);
CREATE INDEX IF NOT EXISTS idx_images_created ON images(created_at);
-- "Is this the newest image of its tag?" on every list and detail row.
CREATE INDEX IF NOT EXISTS idx_images_tag ON images(image_tag, id);

CREATE TABLE IF NOT EXISTS builds (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id INTEGER NOT NULL REFERENCES image_requests(id),
    image_id INTEGER REFERENCES images(id),
    status TEXT NOT NULL,
    build_log TEXT,
    error_message TEXT,
    built_by INTEGER NOT NULL REFERENCES users(id),
    created_at TEXT NOT NULL,
    updated_at TEXT,
    started_at TEXT,
    finished_at TEXT,
    steps_done INTEGER NOT NULL DEFAULT 0,
    steps_total INTEGER NOT NULL DEFAULT 0,
    next_step_at REAL,
    status_since REAL,
    commit_sha TEXT
);
CREATE INDEX IF NOT EXISTS idx_builds_status ON builds(status, next_step_at);
CREATE INDEX IF NOT EXISTS idx_builds_request ON builds(request_id, id);
CREATE INDEX IF NOT EXISTS idx_builds_image ON builds(image_id, id);
-- The dashboard's 14-day trends read only the last days.
CREATE INDEX IF NOT EXISTS idx_builds_created ON builds(created_at);

CREATE TABLE IF NOT EXISTS deployments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    image_id INTEGER NOT NULL REFERENCES images(id),
    name TEXT NOT NULL,
    environment TEXT NOT NULL,
    status TEXT NOT NULL,
    replicas INTEGER NOT NULL,
    ports TEXT,
    stopped_by_operator INTEGER NOT NULL DEFAULT 0,
    needs_restart INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    created_by INTEGER REFERENCES users(id),
    next_step_at REAL,
    status_since REAL,
    last_commit TEXT,
    current_release_id INTEGER,
    pinned_at TEXT,
    pinned_by INTEGER REFERENCES users(id)
);
CREATE INDEX IF NOT EXISTS idx_deployments_status ON deployments(status, next_step_at);
CREATE INDEX IF NOT EXISTS idx_deployments_image ON deployments(image_id, status);
CREATE INDEX IF NOT EXISTS idx_deployments_env ON deployments(environment, status);
CREATE INDEX IF NOT EXISTS idx_deployments_updated ON deployments(updated_at);
CREATE INDEX IF NOT EXISTS idx_deployments_created ON deployments(created_at);

CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_type TEXT NOT NULL,
    target_id INTEGER NOT NULL,
    message TEXT NOT NULL,
    resolved INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    target_type TEXT,
    resolved_at TEXT,
    resolved_by INTEGER REFERENCES users(id),
    message_params TEXT
);
CREATE INDEX IF NOT EXISTS idx_alerts_open ON alerts(resolved, created_at);
CREATE INDEX IF NOT EXISTS idx_alerts_target ON alerts(target_type, target_id, resolved);

CREATE TABLE IF NOT EXISTS audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER REFERENCES users(id),
    action TEXT NOT NULL,
    target_id INTEGER,
    details TEXT,
    created_at TEXT NOT NULL,
    target_type TEXT,
    ip TEXT,
    request_id TEXT
);
CREATE INDEX IF NOT EXISTS idx_audit_created ON audit_log(created_at, id);
CREATE INDEX IF NOT EXISTS idx_audit_user ON audit_log(user_id, id);
CREATE INDEX IF NOT EXISTS idx_audit_action ON audit_log(action, id);
CREATE INDEX IF NOT EXISTS idx_audit_target ON audit_log(target_type, target_id, id);

-- Audit text search: a trigram index over details (substring matching, any script),
-- external content (the text is stored once, in audit_log), kept in step by the
-- triggers below. Candidates are re-checked with the literal LIKE (see
-- samosval/domain/audit_queries.py), so the index only narrows, never decides.
CREATE VIRTUAL TABLE IF NOT EXISTS audit_fts USING fts5(
    details, content='audit_log', content_rowid='id', tokenize='trigram'
);
CREATE TRIGGER IF NOT EXISTS audit_fts_insert AFTER INSERT ON audit_log BEGIN
    INSERT INTO audit_fts (rowid, details) VALUES (new.id, new.details);
END;
CREATE TRIGGER IF NOT EXISTS audit_fts_delete AFTER DELETE ON audit_log BEGIN
    INSERT INTO audit_fts (audit_fts, rowid, details) VALUES ('delete', old.id, old.details);
END;
CREATE TRIGGER IF NOT EXISTS audit_fts_update AFTER UPDATE OF details ON audit_log BEGIN
    INSERT INTO audit_fts (audit_fts, rowid, details) VALUES ('delete', old.id, old.details);
    INSERT INTO audit_fts (rowid, details) VALUES (new.id, new.details);
END;

CREATE TABLE IF NOT EXISTS webhook_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    token_prefix TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    sealed_secret TEXT NOT NULL,
    created_by INTEGER REFERENCES users(id),
    created_at TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at TEXT
);

CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT NOT NULL,
    source TEXT NOT NULL,
    event TEXT,
    delivery_key TEXT,
    repo_url TEXT,
    repo_key TEXT,
    branch TEXT,
    commit_sha TEXT,
    user_id INTEGER REFERENCES users(id),
    token_id INTEGER REFERENCES webhook_tokens(id),
    outcome TEXT NOT NULL,
    reason TEXT,
    http_status INTEGER NOT NULL,
    matched_request_ids TEXT,
    restarted_ids TEXT,
    marked_ids TEXT,
    body_digest TEXT
);
CREATE INDEX IF NOT EXISTS idx_deliveries_created ON webhook_deliveries(created_at, id);
-- The deliveries page filtered by outcome, newest first.
CREATE INDEX IF NOT EXISTS idx_deliveries_outcome ON webhook_deliveries(outcome, id);
CREATE INDEX IF NOT EXISTS idx_deliveries_key ON webhook_deliveries(delivery_key);
CREATE INDEX IF NOT EXISTS idx_deliveries_commit ON webhook_deliveries(repo_key, branch, commit_sha, outcome);
-- A replayed signed body is found by its SHA-256, whatever delivery id it carries.
CREATE INDEX IF NOT EXISTS idx_deliveries_digest ON webhook_deliveries(token_id, body_digest);

-- One row per signed-in browser. The cookie carries a random token; only its
-- SHA-256 is stored. session_version must equal the user's for the row to count.
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash TEXT UNIQUE NOT NULL,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    session_version INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    address TEXT,
    user_agent TEXT
);
CREATE INDEX IF NOT EXISTS idx_sessions_user ON sessions(user_id, last_seen_at);

-- Wrong passwords per username (lower-cased), for growing delays between attempts.
CREATE TABLE IF NOT EXISTS login_throttle (
    username TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    last_failure_at REAL NOT NULL,
    blocked_until REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_login_throttle_age ON login_throttle(last_failure_at);

-- Releases (issue 20): every rollout of a deployment is numbered v1, v2, ... per
-- deployment. status: pending_approval | deploying | running | failed | rejected |
-- expired | cancelled ("running" is the outcome: it came up). config_version points
-- at the configuration it ran with (NULL until deployments have configurations).
CREATE TABLE IF NOT EXISTS releases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    deployment_id INTEGER NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    status TEXT NOT NULL,
    image_id INTEGER REFERENCES images(id),
    image_tag TEXT NOT NULL,
    image_digest TEXT NOT NULL,
    commit_sha TEXT,
    config_version INTEGER,
    trigger_kind TEXT NOT NULL,
    cause TEXT NOT NULL,
    rollback_of INTEGER,
    delivery_id INTEGER,
    created_at TEXT NOT NULL,
    created_ts REAL NOT NULL,
    created_by INTEGER REFERENCES users(id),
    finished_at TEXT,
    failure_reason TEXT,
    decided_at TEXT,
    decided_by INTEGER REFERENCES users(id),
    decision_reason TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS idx_releases_number ON releases(deployment_id, number);
CREATE INDEX IF NOT EXISTS idx_releases_status ON releases(status, created_ts);

-- Environments an admin protected: every rollout there waits for a second person.
CREATE TABLE IF NOT EXISTS protected_environments (
    environment TEXT PRIMARY KEY,
    protected_at TEXT NOT NULL,
    protected_by INTEGER REFERENCES users(id)
);

-- Configuration of deployments (issue 21): each change is a numbered version per
-- deployment, the whole set of variables; a release's config_version is that number.
-- A secret's value is only ever stored sealed (samosval/crypto.py): value is NULL.
CREATE TABLE IF NOT EXISTS config_versions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    deployment_id INTEGER NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    created_by INTEGER REFERENCES users(id)
);
CREATE UNIQUE INDEX IF NOT EXISTS idx_config_versions_number ON config_versions(deployment_id, number);
CREATE TABLE IF NOT EXISTS config_entries (
    version_id INTEGER NOT NULL REFERENCES config_versions(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    key TEXT NOT NULL,
    value TEXT,
    sealed_value TEXT,
    PRIMARY KEY (version_id, key)
);

-- Notifications (issue 21): channels an admin configures (secret settings sealed),
-- people's subscriptions, a durable outbox with every attempt, and the audit-log
-- cursor up to which events were fanned out.
CREATE TABLE IF NOT EXISTS notification_channels (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    settings TEXT NOT NULL,
    sealed_settings TEXT NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    created_by INTEGER REFERENCES users(id),
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS notification_subscriptions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    channel_id INTEGER NOT NULL REFERENCES notification_channels(id) ON DELETE CASCADE,
    scope TEXT NOT NULL,
    target_id INTEGER,
    events TEXT NOT NULL,
    recipient TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_subscriptions_user ON notification_subscriptions(user_id, id);
CREATE INDEX IF NOT EXISTS idx_subscriptions_target ON notification_subscriptions(scope, target_id);
CREATE TABLE IF NOT EXISTS notification_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    channel_id INTEGER NOT NULL REFERENCES notification_channels(id) ON DELETE CASCADE,
    source_audit_id INTEGER,
    recipient TEXT NOT NULL DEFAULT '',
    event TEXT NOT NULL,
    payload TEXT NOT NULL,
    delivery_uuid TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL,
    last_error TEXT,
    created_at TEXT NOT NULL,
    sent_at TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS idx_outbox_source ON notification_outbox(source_audit_id, channel_id, recipient);
CREATE INDEX IF NOT EXISTS idx_outbox_due ON notification_outbox(status, next_attempt_at);
CREATE INDEX IF NOT EXISTS idx_outbox_channel ON notification_outbox(channel_id, id);
CREATE TABLE IF NOT EXISTS notification_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id INTEGER NOT NULL REFERENCES notification_outbox(id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    at TEXT NOT NULL,
    ok INTEGER NOT NULL,
    http_status INTEGER,
    error TEXT,
    duration_ms REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_attempts_message ON notification_attempts(message_id, number);
CREATE TABLE IF NOT EXISTS notification_state (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);

-- Personal access tokens for the JSON API (issue 22): shown once, kept as a SHA-256
-- hash; scopes is a space-separated subset of "read write admin".
CREATE TABLE IF NOT EXISTS api_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    token_prefix TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    scopes TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    expires_ts REAL NOT NULL,
    last_used_at TEXT,
    last_used_ts REAL,
    revoked_at TEXT
);

CREATE INDEX IF NOT EXISTS idx_api_tokens_user ON api_tokens(user_id, id);
