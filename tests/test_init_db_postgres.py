"""``flask --app app init-db`` on PostgreSQL, as the README's "Several processes"
section runs it: on an empty database it creates the schema (Alembic, up to
``migrations.HEAD``) and ``root``; run again, it changes nothing and says so. The
database URL it prints never carries the password, and it exits without a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from samosval import db as db_module
from samosval import migrations
from tests.live import ROOT

pytestmark = [pytest.mark.backend_neutral, pytest.mark.slow]  # starts its own PostgreSQL and processes

SECRET = f"secret-{uuid.uuid4().hex[:8]}"


def init_db(url: str, instance) -> str:
    """Run ``flask --app app init-db`` with ``SAMOSVAL_DATABASE_URL=url``; returns what
    it printed (it must succeed)."""
    env = {**os.environ, "SAMOSVAL_DATABASE_URL": url, "SAMOSVAL_INSTANCE_PATH": str(instance)}
    env.pop("SAMOSVAL_DATABASE", None)
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", "init-db"],
        cwd=str(ROOT),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_init_db_creates_the_schema_and_root_once_and_never_prints_the_password(tmp_path, postgres_server):
    name = f"init_db_{uuid.uuid4().hex[:8]}"
    postgres_server.create_database(name)
    # The test server trusts loopback clients: any password is accepted, and must be hidden.
    url = f"postgresql://postgres:{SECRET}@127.0.0.1:{postgres_server.port}/{name}"
    shown = f"postgresql://postgres:***@127.0.0.1:{postgres_server.port}/{name}"
    try:
        first = init_db(url, tmp_path)
        assert f"Database created at {shown}." in first, first
        assert "Admin user 'root' created" in first, first
        db = db_module.connect(url)
        try:
            assert db.execute("SELECT version_num FROM alembic_version").fetchone()[0] == migrations.HEAD
            root = db.execute("SELECT role, is_active FROM users WHERE username = 'root'").fetchone()
            assert (root["role"], root["is_active"]) == ("admin", 1)
        finally:
            db.close()

        second = init_db(url, tmp_path)
        assert f"Database ready at {shown}: already up to date, nothing changed." in second, second
        assert "Admin user 'root' already exists." in second, second
        for printed in (first, second):
            assert SECRET not in printed and "Traceback" not in printed, printed
    finally:
        db_module.close_pools()
        postgres_server.drop_database(name)
