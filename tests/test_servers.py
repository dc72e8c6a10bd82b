"""The real PostgreSQL and Redis servers of tests/servers.py: they answer, restart on
the same port, and leave no process behind (even when the test process is killed)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psycopg
import pytest

from tests import servers
from tests.servers import PostgresServer, RedisServer

ROOT = Path(__file__).resolve().parents[1]

# These tests start their own servers whatever the backend: once per CI run is enough.
pytestmark = pytest.mark.backend_neutral


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def children(pid: int) -> list[int]:
    result = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(line) for line in result.stdout.split()]


def wait_gone(pids, timeout: float = 10.0) -> list[int]:
    """Polls until every pid has exited; returns those still running at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        left = [pid for pid in pids if alive(pid)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def test_postgres_answers_on_loopback_with_durability_off(postgres_server):
    with psycopg.connect(postgres_server.url) as conn:
        settings = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('listen_addresses', 'fsync', 'synchronous_commit', 'full_page_writes', 'max_connections')"
            ).fetchall()
        )
        user = conn.execute("SELECT current_user").fetchone()[0]
    assert postgres_server.url == f"postgresql://postgres@127.0.0.1:{postgres_server.port}/postgres"
    assert settings == {
        "listen_addresses": "127.0.0.1",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "300",
    }
    assert user == "postgres"


def test_postgres_runs_as_postgres_user_when_root(postgres_server):
    owner = Path(f"/proc/{postgres_server.pid}").stat().st_uid
    expected = servers.pwd.getpwnam("postgres").pw_uid if os.geteuid() == 0 else os.geteuid()
    assert owner == expected


def test_create_database_from_a_template_and_drop_it_while_connected(postgres_server):
    source = postgres_server.create_database("servers_test_source")
    with psycopg.connect(source, autocommit=True) as conn:
        conn.execute("CREATE TABLE things (name text)")
        conn.execute("INSERT INTO things VALUES ('kept')")
    try:
        copy = postgres_server.create_database("servers_test_copy", template="servers_test_source")
        assert copy.endswith(f":{postgres_server.port}/servers_test_copy")
        lingering = psycopg.connect(copy)  # a test that forgot to close: the drop still works
        assert lingering.execute("SELECT name FROM things").fetchall() == [("kept",)]
        postgres_server.drop_database("servers_test_copy")
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(copy).close()
        lingering.close()
    finally:
        postgres_server.drop_database("servers_test_copy")
        postgres_server.drop_database("servers_test_source")
    postgres_server.drop_database("servers_test_never_created")  # no error


def test_postgres_restart_keeps_port_and_data(postgres_server):
    url = postgres_server.create_database("servers_test_restart")
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (n int)")
            conn.execute("INSERT INTO kept VALUES (7)")
        port, pid = postgres_server.port, postgres_server.pid
        open_conn = psycopg.connect(url)

        postgres_server.stop()
        assert not alive(pid)
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url, connect_timeout=2).close()
        postgres_server.start()

        assert (postgres_server.port, postgres_server.url) == (port, postgres_server.url)
        assert postgres_server.pid != pid
        with pytest.raises(psycopg.OperationalError):
            open_conn.execute("SELECT 1")  # clients of the old server were disconnected
        open_conn.close()
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT n FROM kept").fetchone() == (7,)
        postgres_server.restart()  # the admin connection reconnects by itself
        postgres_server.restart(mode="immediate")  # like a crash: recovery on start
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT n FROM kept").fetchone() == (7,)
    finally:
        postgres_server.start()
        postgres_server.drop_database("servers_test_restart")


def test_redis_answers_and_restarts_empty_on_the_same_port(redis_server):
    client = redis_server.client()
    try:
        client.set("servers-test:key", "value")
        assert client.get("servers-test:key") == b"value"
        assert client.config_get("bind")["bind"] == "127.0.0.1"
        assert client.config_get("save")["save"] == ""
        assert client.config_get("appendonly")["appendonly"] == "no"
        port, pid = redis_server.port, redis_server.pid

        redis_server.restart()

        assert redis_server.port == port and redis_server.pid != pid and not alive(pid)
        assert redis_server.url == f"redis://127.0.0.1:{port}/0"
        assert client.get("servers-test:key") is None  # nothing persisted; the client reconnected
    finally:
        client.close()


def test_close_leaves_no_process_and_no_folder():
    pg = PostgresServer()
    redis = RedisServer()
    try:
        pg.start()
        redis.start()
        pids = [pg.pid, *children(pg.pid), redis.pid]
        assert len(pids) >= 4  # the postmaster, its helpers, redis
        folders = [pg.dir, redis.dir]
    finally:
        pg.close()
        redis.close()
    assert wait_gone(pids, timeout=0.5) == []  # close() waits for the exit
    assert not any(folder.exists() for folder in folders)


@pytest.mark.slow
def test_servers_die_with_a_killed_test_process(tmp_path):
    script = textwrap.dedent(
        """
        import os, signal, sys
        sys.path.insert(0, sys.argv[1])
        from tests.servers import PostgresServer, RedisServer
        pg = PostgresServer(); pg.start()
        redis = RedisServer(); redis.start()
        print(pg.pid, redis.pid, pg.dir, redis.dir, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(ROOT)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == -9, result.stderr
    pg_pid, redis_pid, pg_dir, redis_dir = result.stdout.split()
    try:
        assert wait_gone([int(pg_pid), int(redis_pid)]) == []
        assert Path(pg_dir).is_dir() and Path(redis_dir).is_dir()  # no teardown ran
        # The next servers made remove the folders a dead test process left behind.
        PostgresServer().close()
        RedisServer().close()
        assert not Path(pg_dir).exists() and not Path(redis_dir).exists()
    finally:
        for folder in (pg_dir, redis_dir):
            subprocess.run(["rm", "-rf", folder], check=True)


def test_missing_binaries_skip_or_fail_when_required(monkeypatch, tmp_path):
    monkeypatch.setattr(servers, "POSTGRES_VERSIONS_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv(servers.POSTGRES_BIN_ENV, raising=False)
    monkeypatch.setattr(servers.shutil, "which", lambda *args, **kwargs: None)
    for factory in (PostgresServer, RedisServer):
        with pytest.raises(servers.ServerMissing, match="apt-get install"):
            factory()

    monkeypatch.delenv(servers.REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="not installed"):
        servers._session_server(PostgresServer)
    monkeypatch.setenv(servers.REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="SAMOSVAL_REQUIRE_SERVERS=1"):
        servers._session_server(RedisServer)
