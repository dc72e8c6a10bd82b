"""Schema migrations: a database of every earlier version upgrades to exactly the
shape of a fresh one (AUTOINCREMENT included), keeping every row; ids are never
reused once the upgrade ran (on either database: see also tests/test_schema_alembic.py)."""

from __future__ import annotations

import sqlite3

import pytest

from samosval.db import connect, init_db_if_needed
from samosval.legacy import steps as legacy
from samosval.migrations import HEAD, LEGACY_VERSION, SPEC_V1_SCHEMA, upgrade
from tests import factories

TABLES_WITH_IDS = (
    "users",
    "image_requests",
    "images",
    "builds",
    "deployments",
    "alerts",
    "audit_log",
    "webhook_tokens",
    "webhook_deliveries",
)


def full_shape(path) -> dict:
    """Tables with their columns and whether the id is AUTOINCREMENT, and indexes."""
    db = sqlite3.connect(path)
    try:
        tables = {}
        for name, sql in db.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        ):
            columns = sorted(
                (row[1], row[2].upper(), row[3], row[5]) for row in db.execute(f"PRAGMA table_info({name})")
            )
            tables[name] = (columns, "AUTOINCREMENT" in sql.upper())
        indexes = sorted(
            db.execute(
                "SELECT name, tbl_name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%'"
            ).fetchall()
        )
        foreign_keys = {
            name: sorted(tuple(r[2:5]) for r in db.execute(f"PRAGMA foreign_key_list({name})"))
            for name in tables
        }
        return {"tables": tables, "indexes": indexes, "foreign_keys": foreign_keys}
    finally:
        db.close()


def v2_database(path) -> None:
    """A database as version 2 left it: spec tables with Samosval's columns added,
    ids without AUTOINCREMENT."""
    db = sqlite3.connect(path)
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
        INSERT INTO deployments VALUES (7, 1, 'api-prod', 'prod', 'running', 2, '8000:8000', 0, 0,
            '2025-01-01T00:00:00Z', '2025-01-01T00:00:00Z');
        INSERT INTO alerts VALUES (1, 'deployment_failed', 7, 'boom', 0, '2025-01-01T00:00:00Z');
        INSERT INTO audit_log VALUES (1, 1, 'login', NULL, NULL, '2025-01-01T00:00:00Z');
    """)
    db.commit()
    # Run only the steps up to version 2, as a Samosval of that time did.
    saved = legacy.MIGRATIONS
    legacy.MIGRATIONS = [step for step in saved if step[0] <= 2]
    try:
        assert legacy.upgrade_to_final(db) == [2]
    finally:
        legacy.MIGRATIONS = saved
    db.execute(
        "INSERT INTO webhook_tokens (id, name, token_prefix, token_hash, sealed_secret, created_at) "
        "VALUES (3, 'ci', 'smsv_abc', 'h', 's', '2025-01-01T00:00:00Z')"
    )
    db.execute(
        "INSERT INTO webhook_deliveries (id, created_at, source, outcome, http_status, token_id) "
        "VALUES (5, '2025-01-01T00:00:00Z', 'github', 'processed', 200, 3)"
    )
    db.commit()
    db.close()


@pytest.mark.backend_neutral
def test_a_version_2_database_upgrades_to_the_fresh_shape_keeping_every_row(tmp_path):
    old = tmp_path / "v2.sqlite3"
    v2_database(old)
    before = sqlite3.connect(old)
    rows_before = {t: before.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in TABLES_WITH_IDS}
    before.close()

    result = init_db_if_needed(str(old))
    assert 3 in result["migrated_to"]

    after = sqlite3.connect(old)
    for table, rows in rows_before.items():
        columns = len(rows[0]) if rows else 0
        kept = [r[:columns] for r in after.execute(f"SELECT * FROM {table} ORDER BY 1")]
        # Every row and id kept (users may gain root's row only if it was missing: it is not).
        assert kept == [tuple(r) for r in rows], table
    assert after.execute("PRAGMA foreign_key_check").fetchall() == []
    assert after.execute("PRAGMA user_version").fetchone()[0] == LEGACY_VERSION
    assert after.execute("SELECT version_num FROM alembic_version").fetchone()[0] == HEAD
    after.close()

    fresh = tmp_path / "fresh.sqlite3"
    init_db_if_needed(str(fresh))
    assert full_shape(old) == full_shape(fresh)
    assert all(full_shape(fresh)["tables"][t][1] for t in TABLES_WITH_IDS)


@pytest.mark.backend_neutral
def test_the_upgrade_keeps_foreign_keys_on_afterwards(tmp_path):
    old = tmp_path / "v2.sqlite3"
    v2_database(old)
    db = connect(str(old))
    upgrade(db)
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    db.close()


@pytest.mark.backend_neutral
def test_ids_are_not_reused_after_the_upgrade(tmp_path):
    old = tmp_path / "v2.sqlite3"
    v2_database(old)
    init_db_if_needed(str(old))
    db = connect(str(old))
    db.execute("DELETE FROM alerts")
    db.execute("DELETE FROM deployments WHERE id = 7")
    new_id = db.execute(
        "INSERT INTO deployments (image_id, name, environment, status, replicas, "
        "created_at, updated_at) VALUES (1, 'x', 'dev', 'running', 1, 'now', 'now')"
    ).lastrowid
    assert new_id == 8
    db.close()


@pytest.mark.parametrize("table", ["deployments", "webhook_deliveries", "audit_log", "alerts"])
def test_a_deleted_id_is_never_given_again(db, users, table):
    def create():
        if table == "deployments":
            image = factories.make_image(db, request_id=factories.make_request(db, owner_id=users["dana"]))
            return factories.make_deployment(db, image_id=image)
        if table == "webhook_deliveries":
            return db.execute(
                "INSERT INTO webhook_deliveries (created_at, source, outcome, http_status) "
                "VALUES ('now', 'generic', 'refused', 401)"
            ).lastrowid
        if table == "audit_log":
            return db.execute("INSERT INTO audit_log (action, created_at) VALUES ('x', 'now')").lastrowid
        return db.execute(
            "INSERT INTO alerts (alert_type, target_id, message, created_at) VALUES ('x', 1, 'm', 'now')"
        ).lastrowid

    first = create()
    db.execute(f"DELETE FROM {table} WHERE id = ?", (first,))
    assert create() > first


def test_deleting_a_deployment_through_the_domain_does_not_free_its_id(app, auth, db, sample):
    response = auth.client_for("oleg").post(f"/deployments/{sample['deployment_id']}/delete")
    assert response.status_code in (302, 303)
    assert db.execute("SELECT COUNT(*) FROM deployments").fetchone()[0] == 0
    new = factories.make_deployment(db, image_id=sample["image_id"])
    assert new > sample["deployment_id"]
