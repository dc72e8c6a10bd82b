"""Database creation, reuse, PRAGMAs, root creation and the upgrade path, on SQLite
files (PostgreSQL: tests/test_schema_alembic.py)."""

from __future__ import annotations

import sqlite3

import pytest
from werkzeug.security import check_password_hash

from samosval import create_app
from samosval.db import connect, init_db_if_needed
from samosval.migrations import HEAD, LEGACY_VERSION, SPEC_V1_SCHEMA, history, upgrade

pytestmark = pytest.mark.sqlite_only


def schema_shape(path):
    db = sqlite3.connect(path)
    tables = {}
    for (name,) in db.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
    ):
        tables[name] = sorted((row[1], row[2].upper()) for row in db.execute(f"PRAGMA table_info({name})"))
    indexes = sorted(
        row[0]
        for row in db.execute(
            "SELECT name FROM sqlite_master WHERE type='index' AND name NOT LIKE 'sqlite_%'"
        )
    )
    db.close()
    return tables, indexes


def test_it_creates_the_database_and_root_on_first_start(tmp_path):
    path = tmp_path / "instance" / "samosval.sqlite3"
    assert not path.exists()
    create_app({"SIMULATOR_AUTOSTART": False}, instance_path=str(tmp_path / "instance"))
    assert path.exists()
    db = connect(str(path))
    root = db.execute("SELECT * FROM users WHERE username='root'").fetchone()
    assert root["role"] == "admin" and root["is_active"] == 1
    assert check_password_hash(root["password_hash"], "root")
    assert root["password_hash"] != "root"
    assert db.execute("PRAGMA user_version").fetchone()[0] == LEGACY_VERSION
    assert db.execute("SELECT version_num FROM alembic_version").fetchone()[0] == HEAD


def test_it_reuses_the_database_on_the_second_start(tmp_path):
    instance = str(tmp_path / "instance")
    app = create_app({"SIMULATOR_AUTOSTART": False}, instance_path=instance)
    db = connect(app.config["DATABASE"])
    db.execute(
        "INSERT INTO users (username, password_hash, role, is_active, created_at) "
        "VALUES ('keepme', 'x', 'developer', 1, '2026-01-01T00:00:00Z')"
    )
    db.close()
    result = init_db_if_needed(app.config["DATABASE"])
    assert result == {"created": False, "migrated_to": [], "root_created": False}
    create_app({"SIMULATOR_AUTOSTART": False}, instance_path=instance)
    db = connect(app.config["DATABASE"])
    assert db.execute("SELECT COUNT(*) FROM users WHERE username IN ('root', 'keepme')").fetchone()[0] == 2


def test_it_uses_a_configured_root_password(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMOSVAL_ROOT_PASSWORD", "s3cret-start")
    app = create_app({"SIMULATOR_AUTOSTART": False}, instance_path=str(tmp_path / "i"))
    db = connect(app.config["DATABASE"])
    root = db.execute("SELECT * FROM users WHERE username='root'").fetchone()
    assert check_password_hash(root["password_hash"], "s3cret-start")
    assert root["must_change_password"] == 0


def test_it_sets_the_pragmas(app):
    db = connect(app.config["DATABASE"])
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000


def test_it_generates_the_secret_key_once_with_owner_only_access(tmp_path):
    instance = tmp_path / "instance"
    first = create_app({"SIMULATOR_AUTOSTART": False}, instance_path=str(instance))
    second = create_app({"SIMULATOR_AUTOSTART": False}, instance_path=str(instance))
    key_file = instance / "secret_key"
    assert first.config["SECRET_KEY"] == second.config["SECRET_KEY"] == key_file.read_text().strip()
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"


def test_it_upgrades_a_spec_era_database_keeping_every_row(tmp_path):
    old = tmp_path / "old.sqlite3"
    db = sqlite3.connect(old)
    db.executescript(SPEC_V1_SCHEMA)
    db.executescript("""
        INSERT INTO users VALUES (1, 'root', 'h', 'admin', 1, '2025-01-01T00:00:00Z');
        INSERT INTO users VALUES (2, 'ann', 'h', 'developer', 1, '2025-01-01T00:00:00Z');
        INSERT INTO image_requests (id, image_name, repo_url, repo_branch, update_mode, base_image,
            ram_mb, vcpu, version_tag, owner_id, status, collaborators, created_by, created_at, updated_at)
            VALUES (1, 'api', 'git@github.com:Org/Api.git', 'main', 'continuous', 'python:3.12', 512, 1,
            'v1', 2, 'approved', 'root, ann', 2, '2025-01-01T00:00:00Z', '2025-01-01T00:00:00Z');
        INSERT INTO images VALUES (1, 1, 'api', 'v1', 'api:v1', '2025-01-01T00:00:00Z');
        INSERT INTO builds VALUES (1, 1, 1, 'success', 'log', NULL, 1, '2025-01-01T00:00:00Z');
        INSERT INTO deployments VALUES (1, 1, 'api-dev', 'dev', 'running', 1, '8000:8000', 0, 0,
            '2025-01-01T00:00:00Z', '2025-01-01T00:00:00Z');
        INSERT INTO alerts VALUES (1, 'deployment_failed', 1, 'boom', 0, '2025-01-01T00:00:00Z');
        INSERT INTO audit_log VALUES (1, 1, 'login', NULL, NULL, '2025-01-01T00:00:00Z');
    """)
    db.commit()
    db.close()

    result = init_db_if_needed(str(old))
    # The hand-kept steps, then the Alembic history from the baseline it was stamped at.
    assert result["migrated_to"] == [*range(2, LEGACY_VERSION + 1), *history()]

    db = connect(str(old))
    for table, count in [
        ("users", 2),
        ("image_requests", 1),
        ("images", 1),
        ("builds", 1),
        ("deployments", 1),
        ("alerts", 1),
        ("audit_log", 1),
    ]:
        assert db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == count, table
    request = db.execute("SELECT * FROM image_requests WHERE id = 1").fetchone()
    assert request["repo_key"] == "github.com/org/api"
    assert [r[0] for r in db.execute("SELECT username FROM request_collaborators ORDER BY username")] == [
        "ann",
        "root",
    ]
    assert db.execute("SELECT password_hash FROM users WHERE id = 1").fetchone()[0] == "h"
    db.close()
    # The upgraded database has the same shape as a fresh one.
    fresh = tmp_path / "fresh.sqlite3"
    init_db_if_needed(str(fresh))
    assert schema_shape(old) == schema_shape(fresh)


def test_it_leaves_an_up_to_date_database_alone(tmp_path):
    path = tmp_path / "x.sqlite3"
    init_db_if_needed(str(path))
    db = connect(str(path))
    assert upgrade(db) == []


def test_it_hashes_passwords_with_werkzeugs_default_in_production(tmp_path, monkeypatch):
    from werkzeug.security import generate_password_hash

    import samosval.db
    import samosval.domain.users as users_module

    # undo the suite's fast hashing for this test
    monkeypatch.setattr(users_module, "generate_password_hash", generate_password_hash)
    monkeypatch.setattr(samosval.db, "generate_password_hash", generate_password_hash)
    path = str(tmp_path / "x.sqlite3")
    init_db_if_needed(path)
    db = connect(path)
    users_module.create_user(db, "hashcheck", "long-enough-pw", "developer", now=1_800_000_000.0)
    default_method = generate_password_hash("x").split(":")[0]
    for row in db.execute("SELECT password_hash FROM users"):
        assert row[0].split(":")[0] == default_method == "scrypt"
