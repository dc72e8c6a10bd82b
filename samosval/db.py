"""The only module that opens SQLite.

Request threads get one connection each through ``g`` (closed on teardown);
the simulation engine opens its own with :func:`connect`. Connections run in
autocommit mode; every write goes through :func:`transaction`, which takes the
write lock up front (``BEGIN IMMEDIATE``) so two writers queue on the busy
timeout instead of failing with "database is locked" halfway through.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import contextmanager
from pathlib import Path

import click
from flask import current_app, g
from flask.cli import with_appcontext
from werkzeug.security import generate_password_hash

from . import migrations
from .timeutil import utcnow_iso

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schema.sql"
BUSY_TIMEOUT_MS = 10_000


def connect(path: str) -> sqlite3.Connection:
    """Open a connection with Samosval's PRAGMAs. Each thread must open its own."""
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=True)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA foreign_keys = ON")
    db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    return db


@contextmanager
def transaction(db: sqlite3.Connection):
    """A short write transaction: commit on success, roll back on any error."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        # SQLite has already rolled back after some errors (disk full, I/O): a second
        # ROLLBACK would replace the real error with "no transaction is active". A
        # failed COMMIT leaves the transaction open: close it, or this connection
        # keeps the write lock (the engine's connection lives as long as the process).
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def get_db() -> sqlite3.Connection:
    if "db" not in g:
        g.db = connect(current_app.config["DATABASE"])
    return g.db


def close_db(_exc=None) -> None:
    db = g.pop("db", None)
    if db is not None:
        db.close()


def schema_sql() -> str:
    return SCHEMA_PATH.read_text(encoding="utf-8")


def init_db_if_needed(path: str, root_password: str = "root") -> dict:
    """Create or upgrade the database at ``path`` and make sure ``root`` exists.

    Safe to call on every start: an up-to-date database is left as it is.
    Returns what was done, for the start-up message and for tests.
    """
    Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    created = not os.path.exists(path)
    if created:
        # Password hashes and session digests live here: readable by the owner only.
        # SQLite gives its -wal and -shm files the database file's mode.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    db = connect(path)
    try:
        applied = migrations.upgrade(db, schema_sql())
        root_created = ensure_root(db, root_password)
    finally:
        db.close()
    return {"created": created, "migrated_to": applied, "root_created": root_created}


def ensure_root(db: sqlite3.Connection, password: str) -> bool:
    if db.execute("SELECT 1 FROM users WHERE username = 'root'").fetchone():
        return False
    with transaction(db):
        db.execute(
            "INSERT INTO users (username, password_hash, role, is_active, created_at, "
            "must_change_password) VALUES ('root', ?, 'admin', 1, ?, ?)",
            # The spec's root:root stays possible, but the UI nags until it is changed.
            (generate_password_hash(password), utcnow_iso(), int(password == "root")),
        )
    return True


def init_app(app) -> None:
    app.teardown_appcontext(close_db)
    app.cli.add_command(init_db_command)


@click.command("init-db")
@with_appcontext
def init_db_command():
    """Create the database (or upgrade it) and the root user."""
    path = current_app.config["DATABASE"]
    # Loading the app already ran init_db_if_needed: report what that first call did,
    # not this second one (which always finds everything in place).
    first = current_app.extensions.get("samosval_db_init") or {}
    result = init_db_if_needed(path, current_app.config["ROOT_PASSWORD"])
    for key in ("created", "root_created"):
        result[key] = result[key] or first.get(key, False)
    result["migrated_to"] = result["migrated_to"] or first.get("migrated_to")
    click.echo(init_db_message(path, result))


def init_db_message(path: str, result: dict) -> str:
    """What ``init-db`` did, in words."""
    if result["created"]:
        lines = [f"Database created at {path}."]
    elif result.get("migrated_to"):
        lines = [f"Database at {path} upgraded to schema version {max(result['migrated_to'])}."]
    else:
        lines = [f"Database ready at {path}: already up to date, nothing changed."]
    if result["root_created"]:
        lines.append(
            "Admin user 'root' created (password from SAMOSVAL_ROOT_PASSWORD, "
            "or 'root': change it at the first login)."
        )
    else:
        lines.append("Admin user 'root' already exists.")
    return "\n".join(lines)
