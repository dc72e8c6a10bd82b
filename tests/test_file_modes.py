"""The instance folder and the database (password hashes, session digests) are
created readable by their owner only."""

from __future__ import annotations

import os
import stat

import pytest

from samosval import create_app
from samosval.db import connect, init_db_if_needed

# SQLite's files (the database, its -wal and -shm): PostgreSQL keeps its own.
pytestmark = pytest.mark.sqlite_only


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_it_creates_the_instance_folder_and_database_for_the_owner_only(tmp_path):
    instance = tmp_path / "fresh" / "instance"
    app = create_app({"TESTING": True, "SIMULATOR_AUTOSTART": False}, instance_path=str(instance))
    assert mode(instance) == 0o700
    assert mode(app.config["DATABASE"]) == 0o600
    assert mode(instance / "secret_key") == 0o600
    db = connect(app.config["DATABASE"])  # WAL mode: the -wal and -shm files follow the database's mode
    try:
        db.execute("CREATE TABLE scratch (x)")
        for suffix in ("-wal", "-shm"):
            assert mode(app.config["DATABASE"] + suffix) == 0o600
    finally:
        db.close()


def test_it_creates_a_database_elsewhere_for_the_owner_only(tmp_path):
    path = tmp_path / "data" / "nested" / "samosval.sqlite3"
    result = init_db_if_needed(str(path))
    assert result["created"] is True
    assert mode(path) == 0o600 and mode(path.parent) == 0o700


def test_it_leaves_an_existing_databases_mode_alone(tmp_path):
    path = tmp_path / "samosval.sqlite3"
    init_db_if_needed(str(path))
    os.chmod(path, 0o640)  # the operator's choice, e.g. a backup group
    assert init_db_if_needed(str(path))["created"] is False
    assert mode(path) == 0o640
