"""What Samosval says about its database never shows a PostgreSQL password, and the
SQLite-only backup command refuses clearly on PostgreSQL."""

from __future__ import annotations

import pytest

from samosval.db import describe_target, init_db_message
from tests.conftest import ON_POSTGRES


@pytest.mark.parametrize(
    ("target", "shown"),
    [
        ("postgresql://sam:s3cret@db.example:5432/samosval", "postgresql://sam:***@db.example:5432/samosval"),
        ("postgresql://sam:p%40ss:word@db/samosval", "postgresql://sam:***@db/samosval"),
        ("postgresql://postgres@127.0.0.1:5432/samosval", "postgresql://postgres@127.0.0.1:5432/samosval"),
        (
            "postgresql://db/samosval?user=sam&password=s3cret&sslmode=require",
            "postgresql://db/samosval?user=sam&password=***&sslmode=require",
        ),
        ("postgresql://db/samosval?password=s3cret", "postgresql://db/samosval?password=***"),
        ("/srv/samosval/instance/samosval.sqlite3", "/srv/samosval/instance/samosval.sqlite3"),
    ],
)
def test_describe_target_hides_the_password(target, shown):
    assert describe_target(target) == shown


def test_init_db_message_never_prints_the_password():
    result = {"created": False, "migrated_to": ["0002"], "root_created": False}
    message = init_db_message("postgresql://sam:s3cret@db/samosval", result)
    assert "s3cret" not in message
    assert "postgresql://sam:***@db/samosval" in message


@pytest.mark.skipif(not ON_POSTGRES, reason="the PostgreSQL pass checks the PostgreSQL refusal")
def test_backup_on_postgresql_points_to_pg_dump(runner, tmp_path):
    result = runner.invoke(args=["backup", str(tmp_path / "copy.sqlite3")])
    assert result.exit_code == 1
    assert "pg_dump" in result.output
    assert not (tmp_path / "copy.sqlite3").exists()


@pytest.mark.skipif(not ON_POSTGRES, reason="PostgreSQL connections only")
def test_postgresql_sessions_end_when_idle_in_a_transaction_and_plan_each_search(app):
    from samosval.db import connect

    db = connect(app.config["DATABASE"])
    try:
        assert db.execute("SHOW idle_in_transaction_session_timeout").fetchone()[0] == "2s"
        # Plans follow each search's own text, even once psycopg prepared the statement.
        assert db.execute("SHOW plan_cache_mode").fetchone()[0] == "force_custom_plan"
    finally:
        db.close()


@pytest.mark.backend_neutral
def test_the_embedded_default_never_loads_the_cluster_drivers(tmp_path):
    """SQLite and in-memory buffers: once the database exists, psycopg, redis,
    SQLAlchemy and Alembic stay out of the process (each costs start-up time; none is
    needed). Creating the database runs Alembic; the second start must not."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys; from samosval import create_app; "
        f"app = create_app({{'SIMULATOR_AUTOSTART': False, 'SECRET_KEY': 'k'}}, instance_path={str(tmp_path)!r}); "
        "c = app.test_client(); assert c.get('/login').status_code == 200; "
        "assert c.get('/healthz').get_json()['live'] == 'memory'; "
        "heavy = ('psycopg', 'psycopg_pool', 'redis', 'sqlalchemy', 'alembic'); "
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & set(heavy)); "
        "assert sys.argv[1] == 'first' or not loaded, loaded"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAMOSVAL_")}
    root = Path(__file__).resolve().parent.parent
    for run in ("first", "second"):
        result = subprocess.run(
            [sys.executable, "-c", code, run], cwd=root, env=env, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "samosval.sqlite3").exists()
