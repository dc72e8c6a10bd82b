-- Samosval's current schema on SQLite, generated: do not edit. The schema is
-- samosval/schema.py, its history the Alembic revisions in samosval/alembic/versions/;
-- this file is what they create (a fresh database's sqlite_master), for reading.
-- Regenerate: python -m samosval.migrations schema-sql > schema.sql

CREATE TABLE login_throttle (
	username TEXT NOT NULL,
	failures INTEGER NOT NULL,
	last_failure_at REAL NOT NULL,
	blocked_until REAL NOT NULL,
	PRIMARY KEY (username)
);

CREATE INDEX idx_login_throttle_age ON login_throttle (last_failure_at);

CREATE TABLE notification_state (
	name TEXT NOT NULL,
	value INTEGER NOT NULL,
	PRIMARY KEY (name)
);

CREATE TABLE users (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	username TEXT NOT NULL,
	password_hash TEXT NOT NULL,
	role TEXT NOT NULL,
	is_active INTEGER DEFAULT 1 NOT NULL,
	created_at TEXT NOT NULL,
	must_change_password INTEGER DEFAULT 0 NOT NULL,
	last_login_at TEXT,
	locale TEXT,
	session_version INTEGER DEFAULT 0 NOT NULL,
	UNIQUE (username)
);

CREATE INDEX idx_users_role ON users (role, username);

CREATE TABLE alerts (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	alert_type TEXT NOT NULL,
	target_id INTEGER NOT NULL,
	message TEXT NOT NULL,
	resolved INTEGER DEFAULT 0 NOT NULL,
	created_at TEXT NOT NULL,
	target_type TEXT,
	resolved_at TEXT,
	resolved_by INTEGER,
	message_params TEXT,
	FOREIGN KEY(resolved_by) REFERENCES users (id)
);

CREATE INDEX idx_alerts_open ON alerts (resolved, created_at);

CREATE INDEX idx_alerts_target ON alerts (target_type, target_id, resolved);

CREATE TABLE api_tokens (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	user_id INTEGER NOT NULL,
	name TEXT NOT NULL,
	token_prefix TEXT NOT NULL,
	token_hash TEXT NOT NULL,
	scopes TEXT NOT NULL,
	created_at TEXT NOT NULL,
	expires_at TEXT NOT NULL,
	expires_ts REAL NOT NULL,
	last_used_at TEXT,
	last_used_ts REAL,
	revoked_at TEXT,
	FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE,
	UNIQUE (token_hash)
);

CREATE INDEX idx_api_tokens_user ON api_tokens (user_id, id);

CREATE TABLE audit_log (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	user_id INTEGER,
	action TEXT NOT NULL,
	target_id INTEGER,
	details TEXT,
	created_at TEXT NOT NULL,
	target_type TEXT,
	ip TEXT,
	request_id TEXT,
	FOREIGN KEY(user_id) REFERENCES users (id)
);

CREATE INDEX idx_audit_action ON audit_log (action, id);

CREATE INDEX idx_audit_created ON audit_log (created_at, id);

CREATE INDEX idx_audit_target ON audit_log (target_type, target_id, id);

CREATE INDEX idx_audit_user ON audit_log (user_id, id);

CREATE TABLE image_requests (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
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
	owner_id INTEGER NOT NULL,
	status TEXT NOT NULL,
	collaborators TEXT,
	created_by INTEGER NOT NULL,
	created_at TEXT NOT NULL,
	updated_at TEXT NOT NULL,
	repo_key TEXT,
	last_commit TEXT,
	FOREIGN KEY(created_by) REFERENCES users (id),
	FOREIGN KEY(owner_id) REFERENCES users (id)
);

CREATE INDEX idx_requests_created_by ON image_requests (created_by, updated_at);

CREATE INDEX idx_requests_owner ON image_requests (owner_id, updated_at);

CREATE INDEX idx_requests_repo ON image_requests (repo_key, repo_branch, update_mode);

CREATE INDEX idx_requests_status ON image_requests (status, updated_at);

CREATE INDEX idx_requests_updated ON image_requests (updated_at);

CREATE TABLE notification_channels (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	name TEXT NOT NULL,
	kind TEXT NOT NULL,
	settings TEXT NOT NULL,
	sealed_settings TEXT NOT NULL,
	enabled INTEGER DEFAULT 1 NOT NULL,
	created_at TEXT NOT NULL,
	created_by INTEGER,
	updated_at TEXT NOT NULL,
	FOREIGN KEY(created_by) REFERENCES users (id)
);

CREATE TABLE protected_environments (
	environment TEXT NOT NULL,
	protected_at TEXT NOT NULL,
	protected_by INTEGER,
	PRIMARY KEY (environment),
	FOREIGN KEY(protected_by) REFERENCES users (id)
);

CREATE TABLE sessions (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	token_hash TEXT NOT NULL,
	user_id INTEGER NOT NULL,
	session_version INTEGER NOT NULL,
	created_at TEXT NOT NULL,
	last_seen_at TEXT NOT NULL,
	address TEXT,
	user_agent TEXT,
	FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE,
	UNIQUE (token_hash)
);

CREATE INDEX idx_sessions_user ON sessions (user_id, last_seen_at);

CREATE TABLE webhook_tokens (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	name TEXT NOT NULL,
	token_prefix TEXT NOT NULL,
	token_hash TEXT NOT NULL,
	sealed_secret TEXT NOT NULL,
	created_by INTEGER,
	created_at TEXT NOT NULL,
	last_used_at TEXT,
	revoked_at TEXT,
	FOREIGN KEY(created_by) REFERENCES users (id),
	UNIQUE (token_hash)
);

CREATE TABLE images (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	request_id INTEGER NOT NULL,
	name TEXT NOT NULL,
	version TEXT NOT NULL,
	image_tag TEXT NOT NULL,
	created_at TEXT NOT NULL,
	digest TEXT,
	build_number INTEGER,
	FOREIGN KEY(request_id) REFERENCES image_requests (id)
);

CREATE INDEX idx_images_created ON images (created_at);

CREATE INDEX idx_images_request ON images (request_id, id);

CREATE INDEX idx_images_tag ON images (image_tag, id);

CREATE TABLE notification_outbox (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	channel_id INTEGER NOT NULL,
	source_audit_id INTEGER,
	recipient TEXT DEFAULT '' NOT NULL,
	event TEXT NOT NULL,
	payload TEXT NOT NULL,
	delivery_uuid TEXT NOT NULL,
	status TEXT NOT NULL,
	attempts INTEGER DEFAULT 0 NOT NULL,
	next_attempt_at REAL,
	last_error TEXT,
	created_at TEXT NOT NULL,
	sent_at TEXT,
	FOREIGN KEY(channel_id) REFERENCES notification_channels (id) ON DELETE CASCADE
);

CREATE INDEX idx_outbox_channel ON notification_outbox (channel_id, id);

CREATE INDEX idx_outbox_due ON notification_outbox (status, next_attempt_at);

CREATE UNIQUE INDEX idx_outbox_source ON notification_outbox (source_audit_id, channel_id, recipient);

CREATE TABLE notification_subscriptions (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	user_id INTEGER NOT NULL,
	channel_id INTEGER NOT NULL,
	scope TEXT NOT NULL,
	target_id INTEGER,
	events TEXT NOT NULL,
	recipient TEXT DEFAULT '' NOT NULL,
	created_at TEXT NOT NULL,
	FOREIGN KEY(channel_id) REFERENCES notification_channels (id) ON DELETE CASCADE,
	FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE
);

CREATE INDEX idx_subscriptions_target ON notification_subscriptions (scope, target_id);

CREATE INDEX idx_subscriptions_user ON notification_subscriptions (user_id, id);

CREATE TABLE request_collaborators (
	request_id INTEGER NOT NULL,
	username TEXT NOT NULL,
	PRIMARY KEY (request_id, username),
	FOREIGN KEY(request_id) REFERENCES image_requests (id) ON DELETE CASCADE
);

CREATE INDEX idx_request_collaborators_user ON request_collaborators (username, request_id);

CREATE TABLE webhook_deliveries (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	created_at TEXT NOT NULL,
	source TEXT NOT NULL,
	event TEXT,
	delivery_key TEXT,
	repo_url TEXT,
	repo_key TEXT,
	branch TEXT,
	commit_sha TEXT,
	user_id INTEGER,
	token_id INTEGER,
	outcome TEXT NOT NULL,
	reason TEXT,
	http_status INTEGER NOT NULL,
	matched_request_ids TEXT,
	restarted_ids TEXT,
	marked_ids TEXT,
	body_digest TEXT,
	FOREIGN KEY(token_id) REFERENCES webhook_tokens (id),
	FOREIGN KEY(user_id) REFERENCES users (id)
);

CREATE INDEX idx_deliveries_commit ON webhook_deliveries (repo_key, branch, commit_sha, outcome);

CREATE INDEX idx_deliveries_created ON webhook_deliveries (created_at, id);

CREATE INDEX idx_deliveries_digest ON webhook_deliveries (token_id, body_digest);

CREATE INDEX idx_deliveries_key ON webhook_deliveries (delivery_key);

CREATE INDEX idx_deliveries_outcome ON webhook_deliveries (outcome, id);

CREATE TABLE builds (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	request_id INTEGER NOT NULL,
	image_id INTEGER,
	status TEXT NOT NULL,
	build_log TEXT,
	error_message TEXT,
	built_by INTEGER NOT NULL,
	created_at TEXT NOT NULL,
	updated_at TEXT,
	started_at TEXT,
	finished_at TEXT,
	steps_done INTEGER DEFAULT 0 NOT NULL,
	steps_total INTEGER DEFAULT 0 NOT NULL,
	next_step_at REAL,
	status_since REAL,
	commit_sha TEXT,
	FOREIGN KEY(built_by) REFERENCES users (id),
	FOREIGN KEY(image_id) REFERENCES images (id),
	FOREIGN KEY(request_id) REFERENCES image_requests (id)
);

CREATE INDEX idx_builds_created ON builds (created_at);

CREATE INDEX idx_builds_image ON builds (image_id, id);

CREATE INDEX idx_builds_request ON builds (request_id, id);

CREATE INDEX idx_builds_status ON builds (status, next_step_at);

CREATE TABLE deployments (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	image_id INTEGER NOT NULL,
	name TEXT NOT NULL,
	environment TEXT NOT NULL,
	status TEXT NOT NULL,
	replicas INTEGER NOT NULL,
	ports TEXT,
	stopped_by_operator INTEGER DEFAULT 0 NOT NULL,
	needs_restart INTEGER DEFAULT 0 NOT NULL,
	created_at TEXT NOT NULL,
	updated_at TEXT NOT NULL,
	created_by INTEGER,
	next_step_at REAL,
	status_since REAL,
	last_commit TEXT,
	current_release_id INTEGER,
	pinned_at TEXT,
	pinned_by INTEGER,
	FOREIGN KEY(created_by) REFERENCES users (id),
	FOREIGN KEY(image_id) REFERENCES images (id),
	FOREIGN KEY(pinned_by) REFERENCES users (id)
);

CREATE INDEX idx_deployments_created ON deployments (created_at);

CREATE INDEX idx_deployments_env ON deployments (environment, status);

CREATE INDEX idx_deployments_image ON deployments (image_id, status);

CREATE INDEX idx_deployments_status ON deployments (status, next_step_at);

CREATE INDEX idx_deployments_updated ON deployments (updated_at);

CREATE TABLE notification_attempts (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	message_id INTEGER NOT NULL,
	number INTEGER NOT NULL,
	at TEXT NOT NULL,
	ok INTEGER NOT NULL,
	http_status INTEGER,
	error TEXT,
	duration_ms REAL NOT NULL,
	FOREIGN KEY(message_id) REFERENCES notification_outbox (id) ON DELETE CASCADE
);

CREATE INDEX idx_attempts_message ON notification_attempts (message_id, number);

CREATE TABLE config_versions (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	deployment_id INTEGER NOT NULL,
	number INTEGER NOT NULL,
	created_at TEXT NOT NULL,
	created_by INTEGER,
	FOREIGN KEY(created_by) REFERENCES users (id),
	FOREIGN KEY(deployment_id) REFERENCES deployments (id) ON DELETE CASCADE
);

CREATE UNIQUE INDEX idx_config_versions_number ON config_versions (deployment_id, number);

CREATE TABLE releases (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	deployment_id INTEGER NOT NULL,
	number INTEGER NOT NULL,
	status TEXT NOT NULL,
	image_id INTEGER,
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
	created_by INTEGER,
	finished_at TEXT,
	failure_reason TEXT,
	decided_at TEXT,
	decided_by INTEGER,
	decision_reason TEXT,
	FOREIGN KEY(created_by) REFERENCES users (id),
	FOREIGN KEY(decided_by) REFERENCES users (id),
	FOREIGN KEY(deployment_id) REFERENCES deployments (id) ON DELETE CASCADE,
	FOREIGN KEY(image_id) REFERENCES images (id)
);

CREATE UNIQUE INDEX idx_releases_number ON releases (deployment_id, number);

CREATE INDEX idx_releases_status ON releases (status, created_ts);

CREATE TABLE config_entries (
	version_id INTEGER NOT NULL,
	position INTEGER NOT NULL,
	"key" TEXT NOT NULL,
	value TEXT,
	sealed_value TEXT,
	PRIMARY KEY (version_id, "key"),
	FOREIGN KEY(version_id) REFERENCES config_versions (id) ON DELETE CASCADE
);

CREATE VIRTUAL TABLE request_fts USING fts5(
    image_name, repo_url, content='image_requests', content_rowid='id', tokenize='trigram'
);

CREATE VIRTUAL TABLE audit_fts USING fts5(
    details, content='audit_log', content_rowid='id', tokenize='trigram'
);

CREATE TABLE engine_lease (
	name TEXT NOT NULL,
	holder TEXT NOT NULL,
	token BIGINT NOT NULL,
	expires_at REAL NOT NULL,
	PRIMARY KEY (name)
);
