"""The hand-kept steps v2..v11, keyed by ``PRAGMA user_version``, as they were.

Version 1 is the plain layout of the customer's specification (section 6.2),
which an early build of Samosval created. Each later version is one function
below; the steps read table definitions from ``schema_v11.sql``, the frozen
``schema.sql`` of version 11. Each step runs in its own transaction, so a failed
upgrade leaves the old data untouched.
"""

from __future__ import annotations

import re
import sqlite3
from contextlib import contextmanager
from pathlib import Path

from ..domain.digests import image_digest
from ..domain.repos import normalize_repo_url, split_logins

# schema.sql as it was at version 11 (the steps create tables from it).
SCHEMA_V11_PATH = Path(__file__).resolve().parent / "schema_v11.sql"

# The specification's own tables (version 1). Kept verbatim so tests can build
# an "old" database and prove the upgrade path keeps every row.
SPEC_V1_SCHEMA = """
CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    username TEXT UNIQUE NOT NULL,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    is_active INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE image_requests (
    id INTEGER PRIMARY KEY,
    image_name TEXT NOT NULL, repo_url TEXT NOT NULL, repo_branch TEXT NOT NULL,
    update_mode TEXT NOT NULL, target_commit TEXT, base_image TEXT NOT NULL,
    run_commands TEXT, entrypoint TEXT, dockerfile_content TEXT,
    ram_mb INTEGER NOT NULL, vcpu REAL NOT NULL, version_tag TEXT NOT NULL,
    owner_id INTEGER NOT NULL REFERENCES users(id), status TEXT NOT NULL,
    collaborators TEXT, created_by INTEGER NOT NULL REFERENCES users(id),
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL
);
CREATE TABLE images (
    id INTEGER PRIMARY KEY, request_id INTEGER NOT NULL REFERENCES image_requests(id),
    name TEXT NOT NULL, version TEXT NOT NULL, image_tag TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE builds (
    id INTEGER PRIMARY KEY, request_id INTEGER NOT NULL REFERENCES image_requests(id),
    image_id INTEGER REFERENCES images(id), status TEXT NOT NULL, build_log TEXT,
    error_message TEXT, built_by INTEGER NOT NULL REFERENCES users(id),
    created_at TEXT NOT NULL
);
CREATE TABLE deployments (
    id INTEGER PRIMARY KEY, image_id INTEGER NOT NULL REFERENCES images(id),
    name TEXT NOT NULL, environment TEXT NOT NULL, status TEXT NOT NULL,
    replicas INTEGER NOT NULL, ports TEXT, stopped_by_operator INTEGER NOT NULL,
    needs_restart INTEGER NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL
);
CREATE TABLE alerts (
    id INTEGER PRIMARY KEY, alert_type TEXT NOT NULL, target_id INTEGER NOT NULL,
    message TEXT NOT NULL, resolved INTEGER NOT NULL, created_at TEXT NOT NULL
);
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id),
    action TEXT NOT NULL, target_id INTEGER, details TEXT, created_at TEXT NOT NULL
);
"""


def _add_columns(db: sqlite3.Connection, table: str, columns: list[str]) -> None:
    existing = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
    for column in columns:
        if column.split()[0] not in existing:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column}")


def _v2_samosval_extensions(db: sqlite3.Connection, schema_sql: str) -> None:
    """Columns and tables Samosval adds to the spec's layout."""
    _add_columns(
        db,
        "users",
        [
            "must_change_password INTEGER NOT NULL DEFAULT 0",
            "last_login_at TEXT",
            "locale TEXT",
            "session_version INTEGER NOT NULL DEFAULT 0",
        ],
    )
    _add_columns(db, "image_requests", ["repo_key TEXT", "last_commit TEXT"])
    _add_columns(db, "images", ["digest TEXT", "build_number INTEGER"])
    _add_columns(
        db,
        "builds",
        [
            "updated_at TEXT",
            "started_at TEXT",
            "finished_at TEXT",
            "steps_done INTEGER NOT NULL DEFAULT 0",
            "steps_total INTEGER NOT NULL DEFAULT 0",
            "next_step_at REAL",
            "status_since REAL",
            "commit_sha TEXT",
        ],
    )
    _add_columns(
        db,
        "deployments",
        [
            "created_by INTEGER REFERENCES users(id)",
            "next_step_at REAL",
            "status_since REAL",
            "last_commit TEXT",
        ],
    )
    _add_columns(
        db,
        "alerts",
        [
            "target_type TEXT",
            "resolved_at TEXT",
            "resolved_by INTEGER REFERENCES users(id)",
        ],
    )
    _add_columns(db, "audit_log", ["target_type TEXT", "ip TEXT", "request_id TEXT"])
    # New tables and every index: schema.sql is written with IF NOT EXISTS.
    for statement in _statements(schema_sql):
        db.execute(statement)
    # Back-fill derived data for rows written by version 1.
    rows = db.execute("SELECT id, repo_url, collaborators FROM image_requests").fetchall()
    for request_id, repo_url, collaborators in rows:
        db.execute(
            "UPDATE image_requests SET repo_key = ? WHERE id = ?", (normalize_repo_url(repo_url), request_id)
        )
        for login in split_logins(collaborators):
            db.execute(
                "INSERT OR IGNORE INTO request_collaborators (request_id, username) VALUES (?, ?)",
                (request_id, login),
            )
    db.execute("UPDATE alerts SET target_type = 'deployment' WHERE target_type IS NULL")


def _statements(script: str) -> list[str]:
    """Split schema.sql into statements (it has no semicolons inside literals; a
    trigger's body runs to its ``END``)."""
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    statements, pending = [], ""
    for part in "\n".join(lines).split(";"):
        pending = f"{pending};{part}" if pending else part.strip()
        if pending.upper().startswith("CREATE TRIGGER") and not pending.upper().endswith("END"):
            continue
        if pending:
            statements.append(pending.strip())
        pending = ""
    return statements


def _create_table_statements(schema_sql: str) -> dict[str, str]:
    found = {}
    for statement in _statements(schema_sql):
        match = re.match(r"CREATE TABLE IF NOT EXISTS (\w+)", statement)
        if match:
            found[match.group(1)] = statement
    return found


def _v3_autoincrement(db: sqlite3.Connection, schema_sql: str) -> None:
    """Ids are never reused: every table with an id becomes AUTOINCREMENT (and
    webhook_deliveries gains body_digest). SQLite cannot alter a primary key, so
    each table is rebuilt from its schema.sql definition - the same shape as a
    fresh database - keeping every row and id; indexes are then re-created.
    Runs with foreign keys off (see :func:`upgrade`), so dropping a parent table
    neither fails nor cascades."""
    rebuilt = []
    for table, create in _create_table_statements(schema_sql).items():
        current = db.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).fetchone()
        if current is None:
            continue  # a table of a later version: its own step creates it
        if "AUTOINCREMENT" in current[0].upper() and table != "webhook_deliveries":
            continue
        if not re.search(r"\bid INTEGER PRIMARY KEY\b", current[0], re.IGNORECASE):
            continue  # no id column (request_collaborators)
        rebuilt.append(table)
        old_columns = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
        db.execute(f"ALTER TABLE {table} RENAME TO _v3_old_{table}")
        db.execute(create)
        new_columns = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        columns = ", ".join(c for c in old_columns if c in new_columns)
        db.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM _v3_old_{table} ORDER BY id")
        db.execute(f"DROP TABLE _v3_old_{table}")
    for statement in _statements(schema_sql):
        match = re.match(r"CREATE INDEX IF NOT EXISTS \w+ ON (\w+)\(", statement)
        if match and match.group(1) in rebuilt:
            db.execute(statement)


def _v4_sessions(db: sqlite3.Connection, schema_sql: str) -> None:
    """Server-side sessions and per-username login delays: two new tables, created
    from their schema.sql definitions."""
    for statement in _statements(schema_sql):
        for table in ("sessions", "login_throttle"):
            if statement.startswith(f"CREATE TABLE IF NOT EXISTS {table} (") or re.match(
                rf"CREATE INDEX IF NOT EXISTS \w+ ON {table}\(", statement
            ):
                db.execute(statement)


def _v5_audit_search(db: sqlite3.Connection, schema_sql: str) -> None:
    """Audit text search: the FTS5 trigram table over ``audit_log.details`` and the
    triggers that keep it in step, from schema.sql, then filled from every existing
    row. ``rebuild`` only reads audit_log: no audit row is touched."""
    for statement in _statements(schema_sql):
        if "audit_fts" in statement:
            db.execute(statement)
    db.execute("INSERT INTO audit_fts (audit_fts) VALUES ('rebuild')")


def _v6_releases(db: sqlite3.Connection, schema_sql: str) -> None:
    """Releases and protected environments (issue 20): the two tables from schema.sql,
    the deployment's current release and pin, and a v1 for every existing deployment
    (its image and last commit, the outcome its status implies)."""
    _add_columns(
        db,
        "deployments",
        [
            "current_release_id INTEGER",
            "pinned_at TEXT",
            "pinned_by INTEGER REFERENCES users(id)",
        ],
    )
    for statement in _statements(schema_sql):
        for table in ("releases", "protected_environments"):
            if statement.startswith(f"CREATE TABLE IF NOT EXISTS {table} (") or re.match(
                rf"CREATE (UNIQUE )?INDEX IF NOT EXISTS \w+ ON {table}\(", statement
            ):
                db.execute(statement)
    rows = db.execute(
        "SELECT d.id, d.status, d.image_id, d.last_commit, d.created_at, d.created_by, d.status_since, "
        "i.image_tag, i.digest FROM deployments d JOIN images i ON i.id = d.image_id "
        "WHERE d.current_release_id IS NULL"
    ).fetchall()
    for row in rows:
        status = {"deploying": "deploying", "failed": "failed"}.get(row[1], "running")
        release_id = db.execute(
            "INSERT INTO releases (deployment_id, number, status, image_id, image_tag, image_digest, "
            "commit_sha, trigger_kind, cause, created_at, created_ts, created_by) "
            "VALUES (?, 1, ?, ?, ?, ?, ?, 'user', 'create', ?, ?, ?)",
            (
                row[0],
                status,
                row[2],
                row[7],
                image_digest(row[7], row[2], row[8]),
                row[3],
                row[4],
                row[6] or 0.0,
                row[5],
            ),
        ).lastrowid
        db.execute("UPDATE deployments SET current_release_id = ? WHERE id = ?", (release_id, row[0]))


def _v7_alert_message_params(db: sqlite3.Connection, schema_sql: str) -> None:
    """Alerts keep the parameters of their message (JSON), so that the text is
    rendered in each viewer's language; ``message`` stays the English text."""
    _add_columns(db, "alerts", ["message_params TEXT"])


_V8_TABLES = (
    "config_versions",
    "config_entries",
    "notification_channels",
    "notification_subscriptions",
    "notification_outbox",
    "notification_attempts",
    "notification_state",
)


def _v8_config_and_notifications(db: sqlite3.Connection, schema_sql: str) -> None:
    """Configuration versions and notifications (issue 21): new tables from schema.sql;
    the fan-out starts after the newest audit row (no notifications for history)."""
    for statement in _statements(schema_sql):
        for table in _V8_TABLES:
            if statement.startswith(f"CREATE TABLE IF NOT EXISTS {table} (") or re.match(
                rf"CREATE (UNIQUE )?INDEX IF NOT EXISTS \w+ ON {table}\(", statement
            ):
                db.execute(statement)
    db.execute(
        "INSERT OR REPLACE INTO notification_state (name, value) "
        "SELECT 'audit_cursor', COALESCE(MAX(id), 0) FROM audit_log"
    )


def _v9_list_indexes(db: sqlite3.Connection, schema_sql: str) -> None:
    """The requests list's trigram search table (filled from every request) and its
    triggers, and the deliveries' outcome index, from schema.sql."""
    for statement in _statements(schema_sql):
        if "request_fts" in statement or "idx_deliveries_outcome" in statement:
            db.execute(statement)
    db.execute("INSERT INTO request_fts (request_fts) VALUES ('rebuild')")


def _v10_api_tokens(db: sqlite3.Connection, schema_sql: str) -> None:
    """Personal access tokens for the JSON API (issue 22), from schema.sql."""
    for statement in _statements(schema_sql):
        if (
            statement.startswith("CREATE TABLE IF NOT EXISTS api_tokens (")
            or "idx_api_tokens_user" in statement
        ):
            db.execute(statement)


def _v11_trend_indexes(db: sqlite3.Connection, schema_sql: str) -> None:
    """Indexes on builds and deployments by creation time (the dashboard's trends)."""
    for statement in _statements(schema_sql):
        if "idx_builds_created" in statement or "idx_deployments_created" in statement:
            db.execute(statement)


# (version reached, function). Frozen: the schema changes through Alembic now.
MIGRATIONS = [
    (2, _v2_samosval_extensions),
    (3, _v3_autoincrement),
    (4, _v4_sessions),
    (5, _v5_audit_search),
    (6, _v6_releases),
    (7, _v7_alert_message_params),
    (8, _v8_config_and_notifications),
    (9, _v9_list_indexes),
    (10, _v10_api_tokens),
    (11, _v11_trend_indexes),
]
FINAL_VERSION = MIGRATIONS[-1][0]


def schema_v11_sql() -> str:
    return SCHEMA_V11_PATH.read_text(encoding="utf-8")


def current_version(db: sqlite3.Connection) -> int:
    """The database's hand-kept version: 0 for an empty database, 1 for a spec-era one
    that never stamped its version."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if (
        version == 0
        and db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='users'").fetchone()
        and not db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='alembic_version'"
        ).fetchone()
    ):
        return 1
    return version


def upgrade_to_final(db: sqlite3.Connection, schema_sql: str | None = None) -> list[int]:
    """Run the missing steps of a database at version 1..10. Returns the versions applied."""
    schema_sql = schema_sql or schema_v11_sql()
    applied = []
    version = current_version(db)
    if not 0 < version < FINAL_VERSION:
        return applied
    # Rebuilding a table drops the old one: with foreign keys on, that would delete
    # (or cascade to) the rows that point at it. PRAGMA foreign_keys is a no-op
    # inside a transaction, so it is switched around the steps.
    with foreign_keys_off(db):
        for target, step in MIGRATIONS:
            if version >= target:
                continue
            db.execute("BEGIN IMMEDIATE")
            try:
                step(db, schema_sql)
                db.execute(f"PRAGMA user_version = {int(target)}")
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            applied.append(target)
            version = target
    return applied


@contextmanager
def foreign_keys_off(db: sqlite3.Connection):
    """Foreign keys off and renames that leave other tables' references alone, for
    steps that rebuild tables (outside any transaction)."""
    foreign_keys = db.execute("PRAGMA foreign_keys").fetchone()[0]
    db.execute("PRAGMA foreign_keys = OFF")
    db.execute("PRAGMA legacy_alter_table = ON")
    try:
        yield db
    finally:
        db.execute("PRAGMA legacy_alter_table = OFF")
        db.execute(f"PRAGMA foreign_keys = {1 if foreign_keys else 0}")


def adopt_baseline(db: sqlite3.Connection, target: dict[tuple[str, str], str], revision: str) -> None:
    """Give a version-11 database exactly the definitions Alembic's baseline creates
    (``target``: (type, name) -> SQL, read from a scratch database the baseline ran
    on), keeping every row, id and AUTOINCREMENT counter, then stamp it at
    ``revision``. One transaction, with foreign keys off: a rebuilt parent table is
    dropped and created again under its own name."""
    with foreign_keys_off(db):
        db.execute("BEGIN IMMEDIATE")
        try:
            # Triggers go with a rebuilt table: all are put back from the target.
            for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
                db.execute(f"DROP TRIGGER {name}")
            current = _definitions(db)
            for (kind, name), sql in target.items():
                if kind != "table" or current.get((kind, name)) == sql:
                    continue
                if (kind, name) not in current:
                    db.execute(sql)
                elif sql.upper().startswith("CREATE VIRTUAL TABLE") or "fts" in name:
                    raise RuntimeError(f"unexpected definition of {name}: {current[kind, name]!r}")
                else:
                    _rebuild(db, name, sql)
            current = _definitions(db)
            for (kind, name), sql in target.items():
                if kind in ("index", "trigger") and current.get((kind, name)) != sql:
                    if (kind, name) in current:
                        db.execute(f"DROP {kind.upper()} {name}")
                    db.execute(sql)
            db.execute("INSERT INTO alembic_version (version_num) VALUES (?)", (revision,))
            db.execute(f"PRAGMA user_version = {FINAL_VERSION}")
            problems = db.execute("PRAGMA foreign_key_check").fetchall()
            if problems:
                raise RuntimeError(f"foreign keys broken by the rebuild: {problems[:5]}")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise


def _definitions(db: sqlite3.Connection) -> dict[tuple[str, str], str]:
    return {
        (row[0], row[1]): row[2]
        for row in db.execute("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL")
    }


def _rebuild(db: sqlite3.Connection, table: str, create: str) -> None:
    old = f"_baseline_old_{table}"
    counter = (
        db.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
        if _has_sequence(db)
        else None
    )
    old_columns = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
    db.execute(f"ALTER TABLE {table} RENAME TO {old}")
    db.execute(create)
    new_columns = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
    columns = ", ".join(c for c in old_columns if c in new_columns)
    db.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {old} ORDER BY rowid")
    db.execute(f"DROP TABLE {old}")
    if counter is not None:
        # A deleted row's id is never given again: keep the old counter when it is ahead.
        db.execute(
            "UPDATE sqlite_sequence SET seq = CASE WHEN seq > ? THEN seq ELSE ? END WHERE name = ?",
            (counter[0], counter[0], table),
        )
        if not db.execute("SELECT 1 FROM sqlite_sequence WHERE name = ?", (table,)).fetchone():
            db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table, counter[0]))


def _has_sequence(db: sqlite3.Connection) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'").fetchone() is not None
