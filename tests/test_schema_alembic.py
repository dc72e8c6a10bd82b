"""One schema (samosval/schema.py) and one Alembic history for SQLite and PostgreSQL:
a database of any earlier version upgrades in place to exactly the shape of a fresh
one, keeping every row; the metadata, the revisions, HEAD and schema.sql agree."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from samosval import db as samosval_db
from samosval import migrations
from samosval.db import connect, init_db_if_needed
from samosval.legacy import steps as legacy
from samosval.schema import metadata

ROOT = Path(__file__).resolve().parent.parent
REGENERATE = "python -m samosval.migrations schema-sql > schema.sql"

# Rows of the specification's layout (version 1), with gaps in the ids.
SPEC_ROWS = """
    INSERT INTO users VALUES (1, 'root', 'h', 'admin', 1, '2025-01-01T00:00:00Z');
    INSERT INTO users VALUES (4, 'ann', 'h', 'developer', 1, '2025-01-01T00:00:00Z');
    INSERT INTO image_requests (id, image_name, repo_url, repo_branch, update_mode, base_image,
        ram_mb, vcpu, version_tag, owner_id, status, collaborators, created_by, created_at, updated_at)
        VALUES (3, 'api', 'git@github.com:Org/Api.git', 'main', 'continuous', 'python:3.12', 512, 1.5,
        'v1', 4, 'approved', 'root, ann', 4, '2025-01-01T00:00:00Z', '2025-01-01T00:00:00Z');
    INSERT INTO images VALUES (2, 3, 'api', 'v1', 'api:v1', '2025-01-01T00:00:00Z');
    INSERT INTO builds VALUES (5, 3, 2, 'success', 'log', NULL, 4, '2025-01-01T00:00:00Z');
    INSERT INTO deployments VALUES (7, 2, 'api-prod', 'prod', 'running', 2, '8000:8000', 0, 0,
        '2025-01-01T00:00:00Z', '2025-01-01T00:00:00Z');
    INSERT INTO alerts VALUES (9, 'deployment_failed', 7, 'boom', 0, '2025-01-01T00:00:00Z');
    INSERT INTO audit_log VALUES (11, 1, 'login', NULL, 'Привет, image_name', '2025-01-01T00:00:00Z');
"""
SPEC_TABLES = ("users", "image_requests", "images", "builds", "deployments", "alerts", "audit_log")


def definitions(path) -> list[tuple]:
    """Everything SQLite knows about the schema: every table, index and trigger with
    its SQL text, plus columns with types, NOT NULL, defaults and keys, and foreign
    keys with their actions."""
    db = sqlite3.connect(path)
    try:
        found = sorted(db.execute("SELECT type, name, tbl_name, COALESCE(sql, '') FROM sqlite_master"))
        for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        ).fetchall():
            found.append((name, tuple(tuple(r) for r in db.execute(f"PRAGMA table_info({name})"))))
            found.append((name, tuple(tuple(r) for r in db.execute(f"PRAGMA foreign_key_list({name})"))))
        return found
    finally:
        db.close()


def spec_columns() -> dict[str, list[str]]:
    db = sqlite3.connect(":memory:")
    db.executescript(legacy.SPEC_V1_SCHEMA)
    columns = {t: [r[1] for r in db.execute(f"PRAGMA table_info({t})")] for t in SPEC_TABLES}
    db.close()
    return columns


def rows_of(path, tables=SPEC_TABLES) -> dict:
    """The rows of the spec's columns (later steps fill the columns they add)."""
    columns = spec_columns()
    db = sqlite3.connect(path)
    try:
        return {
            t: db.execute(f"SELECT {', '.join(columns.get(t, ['*']))} FROM {t} ORDER BY id").fetchall()
            for t in tables
        }
    finally:
        db.close()


def legacy_database(path, version: int) -> None:
    """A database as a Samosval of the hand-kept era at ``version`` left it: the
    spec's tables and rows, then the steps up to that version."""
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(legacy.SPEC_V1_SCHEMA + SPEC_ROWS)
    saved = legacy.MIGRATIONS
    legacy.MIGRATIONS = [step for step in saved if step[0] <= version]
    try:
        legacy.upgrade_to_final(db)
    finally:
        legacy.MIGRATIONS = saved
    db.close()


@pytest.fixture(scope="module")
def fresh_sqlite(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("fresh") / "fresh.sqlite3")
    assert migrations.upgrade_database(path) == migrations.history()
    return path


# --- the history itself ---------------------------------------------------------------


@pytest.mark.backend_neutral
def test_head_constant_is_alembics_head():
    assert migrations.head_revision() == migrations.HEAD
    assert migrations.history()[0] == migrations.BASELINE


@pytest.mark.backend_neutral
def test_schema_sql_is_what_the_migrations_create():
    current = (ROOT / "schema.sql").read_text(encoding="utf-8")
    assert current == migrations.sqlite_ddl(), f"schema.sql is out of date: run `{REGENERATE}`"


@pytest.mark.backend_neutral
def test_a_fresh_sqlite_database_equals_the_metadata(fresh_sqlite):
    assert migrations.schema_differences(fresh_sqlite) == []
    db = sqlite3.connect(fresh_sqlite)
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert set(metadata.tables) <= tables
    assert {"audit_fts", "request_fts"} <= tables
    triggers = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    assert triggers == {f"{t}_fts_{e}" for t in ("audit", "request") for e in ("insert", "delete", "update")}
    assert db.execute("PRAGMA user_version").fetchone()[0] == migrations.LEGACY_VERSION
    db.close()


@pytest.mark.backend_neutral
def test_an_up_to_date_sqlite_database_is_checked_without_sqlalchemy(fresh_sqlite):
    code = (
        "import sys; from samosval import migrations; "
        f"assert migrations.upgrade_database({fresh_sqlite!r}) == []; "
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'alembic')]; "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


@pytest.mark.backend_neutral
def test_the_alembic_command_line_sees_the_same_history(fresh_sqlite):
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", "alembic.ini", "-x", f"database={fresh_sqlite}", "current"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"{migrations.HEAD} (head)" in result.stdout


@pytest.mark.backend_neutral
def test_a_database_the_alembic_command_created_is_up_to_date_for_the_app(tmp_path):
    path = str(tmp_path / "cli.sqlite3")
    command = [
        sys.executable,
        "-m",
        "alembic",
        "-c",
        "alembic.ini",
        "-x",
        f"database={path}",
        "upgrade",
        "head",
    ]
    subprocess.run(command, cwd=ROOT, capture_output=True, check=True)
    db = sqlite3.connect(path)
    assert migrations._sqlite_up_to_date(db)
    db.close()
    assert migrations.upgrade_database(path) == []


# --- SQLite databases of the hand-kept era ------------------------------------------------


@pytest.mark.backend_neutral
@pytest.mark.parametrize("version", range(1, migrations.LEGACY_VERSION + 1))
def test_every_hand_kept_version_upgrades_to_the_fresh_shape_keeping_every_row(
    tmp_path, fresh_sqlite, version
):
    old = str(tmp_path / f"v{version}.sqlite3")
    legacy_database(old, version)
    before = rows_of(old)

    applied = migrations.upgrade_database(old)

    # The hand-kept steps, the baseline it is stamped at, then the later revisions.
    assert applied == [*range(version + 1, migrations.LEGACY_VERSION + 1), *migrations.history()]
    assert rows_of(old) == before
    assert definitions(old) == definitions(fresh_sqlite)
    assert migrations.schema_differences(old) == []
    db = sqlite3.connect(old)
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # The search indexes still find the old rows, and follow new ones.
    db.execute("INSERT INTO audit_fts (audit_fts, rank) VALUES ('integrity-check', 1)")
    assert db.execute("SELECT rowid FROM audit_fts WHERE audit_fts MATCH '\"ривет\"'").fetchall() == [(11,)]
    assert db.execute("SELECT rowid FROM request_fts WHERE request_fts MATCH '\"org/api\"'").fetchall() == [
        (3,)
    ]
    db.close()
    assert migrations.upgrade_database(old) == []


@pytest.mark.backend_neutral
def test_a_version_11_database_keeps_its_autoincrement_counters(tmp_path):
    """The rebuild to the baseline's definitions copies rows: a deleted newest id must
    still never be given again."""
    path = str(tmp_path / "v11.sqlite3")
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(legacy.schema_v11_sql())
    db.execute(f"PRAGMA user_version = {legacy.FINAL_VERSION}")
    db.execute("INSERT INTO audit_log (action, created_at) VALUES ('a', 'now')")
    newest = db.execute("INSERT INTO audit_log (action, created_at) VALUES ('b', 'now')").lastrowid
    db.execute("DELETE FROM audit_log WHERE id = ?", (newest,))
    db.close()

    assert migrations.upgrade_database(path) == migrations.history()
    db = connect(path)
    assert (
        db.execute("INSERT INTO audit_log (action, created_at) VALUES ('c', 'now')").lastrowid == newest + 1
    )
    db.close()


@pytest.mark.backend_neutral
def test_a_failed_adoption_leaves_the_database_as_it_was(tmp_path):
    path = str(tmp_path / "v11.sqlite3")
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(legacy.schema_v11_sql())
    db.execute(f"PRAGMA user_version = {legacy.FINAL_VERSION}")
    db.execute("INSERT INTO audit_log (action, created_at) VALUES ('kept', 'now')")
    # The hand-kept schema allowed a NULL text primary key; the baseline does not.
    db.execute("INSERT INTO notification_state (name, value) VALUES (NULL, 1)")
    db.close()
    before = definitions(path)

    with pytest.raises(sqlite3.IntegrityError):
        migrations.upgrade_database(path)

    assert definitions(path) == before
    assert rows_of(path, ["audit_log"])["audit_log"][0][2] == "kept"


@pytest.mark.backend_neutral
def test_the_old_entry_point_still_upgrades_an_open_connection(tmp_path):
    path = str(tmp_path / "v1.sqlite3")
    legacy_database(path, 1)
    db = connect(path)
    assert migrations.upgrade(db)[0] == 2
    assert db.execute("SELECT version_num FROM alembic_version").fetchone()[0] == migrations.HEAD
    db.close()


# --- PostgreSQL -----------------------------------------------------------------------


@pytest.fixture
def pg_database(postgres_server, request):
    name = "schema_" + request.node.name.lower().replace("[", "_").replace("]", "")[:40]
    postgres_server.drop_database(name)
    url = postgres_server.create_database(name)
    yield url
    samosval_db.close_pools()
    postgres_server.drop_database(name)


@pytest.mark.backend_neutral
def test_a_fresh_postgres_database_has_every_table_and_index_of_the_metadata(pg_database):
    import sqlalchemy as sa

    assert migrations.upgrade_database(pg_database) == migrations.history()
    engine = migrations.create_engine(pg_database)
    try:
        with engine.connect() as connection:
            inspector = sa.inspect(connection)
            assert set(inspector.get_table_names()) == set(metadata.tables) | {"alembic_version"}
            for table in metadata.sorted_tables:
                indexes = {
                    index["name"]
                    for index in inspector.get_indexes(table.name)
                    if not index.get("duplicates_constraint")
                }
                assert indexes == {index.name for index in table.indexes}, table.name
                unique = {tuple(u["column_names"]) for u in inspector.get_unique_constraints(table.name)}
                assert unique == {(c.name,) for c in table.columns if c.unique}, table.name
                columns = {c["name"]: c["nullable"] for c in inspector.get_columns(table.name)}
                assert columns == {c.name: c.nullable for c in table.columns}, table.name
            extensions = connection.exec_driver_sql("SELECT extname FROM pg_extension").scalars().all()
            assert "pg_trgm" in extensions
            # Epoch seconds keep their precision (PostgreSQL's REAL would not).
            kind = connection.exec_driver_sql(
                "SELECT data_type FROM information_schema.columns "
                "WHERE table_name = 'builds' AND column_name = 'next_step_at'"
            ).scalar()
            assert kind == "double precision"
    finally:
        engine.dispose()
    assert migrations.schema_differences(pg_database) == []
    assert migrations.upgrade_database(pg_database) == []


@pytest.mark.backend_neutral
def test_two_processes_starting_together_upgrade_once(pg_database):
    code = f"import json; from samosval import migrations; print(json.dumps(migrations.upgrade_database({pg_database!r})))"
    processes = [
        subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [json.loads(process.communicate(timeout=60)[0]) for process in processes]
    assert [process.returncode for process in processes] == [0, 0]
    assert sorted(results) == [[], migrations.history()]


@pytest.mark.backend_neutral
def test_init_db_creates_a_postgres_database_and_root_then_leaves_it_alone(pg_database):
    first = init_db_if_needed(pg_database)
    assert first == {"created": True, "migrated_to": migrations.history(), "root_created": True}
    second = init_db_if_needed(pg_database)
    assert second == {"created": False, "migrated_to": [], "root_created": False}


@pytest.mark.backend_neutral
def test_postgres_substring_search_can_use_the_trigram_indexes(pg_database):
    migrations.upgrade_database(pg_database)
    engine = migrations.create_engine(pg_database)
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SET enable_seqscan = off")
            for table, column, index in [
                ("audit_log", "details", "idx_audit_details_trgm"),
                ("image_requests", "image_name", "idx_requests_image_name_trgm"),
                ("image_requests", "repo_url", "idx_requests_repo_url_trgm"),
            ]:
                plan = connection.exec_driver_sql(
                    f"EXPLAIN SELECT id FROM {table} WHERE {column} ILIKE '%%needle%%'"
                ).scalars()
                assert any(index in line for line in plan), (table, column)
    finally:
        engine.dispose()
