"""Real PostgreSQL and Redis servers for the tests, started on loopback ports and
stopped at the end of the session (no mocks, no fakes).

``PostgresServer`` and ``RedisServer`` are plain classes, so a benchmark script can
use them too::

    with PostgresServer() as pg, RedisServer() as redis:
        url = pg.create_database("bench")

The session fixtures ``postgres_server`` and ``redis_server`` wrap them (the
conftest registers this module through ``pytest_plugins``). When the binaries are
missing the fixtures skip, or fail when ``SAMOSVAL_REQUIRE_SERVERS=1`` (CI, set by
``scripts/test.sh``, which installs Debian's ``postgresql`` and ``redis-server``).

Both servers are direct children of the test process (no ``pg_ctl``, no daemonizing)
with a parent-death signal, so they die with it even when it is killed with
``kill -9``. The signal follows the *thread* that started the process: start and
restart servers from the main thread (a server started in a worker thread dies when
that thread ends). PostgreSQL refuses to run as root: when we are root its processes run
as the ``postgres`` user (Debian's package creates it) in a data folder it owns.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.live import die_with_parent, free_port

REQUIRE_ENV = "SAMOSVAL_REQUIRE_SERVERS"
POSTGRES_BIN_ENV = "SAMOSVAL_POSTGRES_BIN"  # overrides the search below
POSTGRES_VERSIONS_DIR = "/usr/lib/postgresql"  # Debian: one bin folder per major version
START_TIMEOUT = 30.0
# Where the servers keep their files: a memory file system when there is room (a
# database copied from a template costs ~12 ms there and ~70-300 ms on a busy disk).
MEMORY_DIR = "/dev/shm"
MEMORY_DIR_MIN_FREE = 1 << 30


class ServerMissing(RuntimeError):
    """The server's binaries are not installed."""


class ServerError(RuntimeError):
    """The server did not start (the message carries its log)."""


def find_postgres_bin() -> Path:
    """The folder with ``postgres`` and ``initdb``: Debian keeps them per major version
    in /usr/lib/postgresql/<version>/bin (the newest wins); elsewhere they are on PATH."""
    candidates = []
    if os.environ.get(POSTGRES_BIN_ENV):
        candidates.append(Path(os.environ[POSTGRES_BIN_ENV]))
    versions = Path(POSTGRES_VERSIONS_DIR)
    if versions.is_dir():
        numbered = [p for p in versions.iterdir() if re.fullmatch(r"\d+(\.\d+)?", p.name)]
        candidates += [p / "bin" for p in sorted(numbered, key=lambda p: float(p.name), reverse=True)]
    on_path = shutil.which("postgres")
    if on_path:
        candidates.append(Path(on_path).parent)
    for folder in candidates:
        if (folder / "postgres").is_file() and (folder / "initdb").is_file():
            return folder
    raise ServerMissing(
        "PostgreSQL is not installed (no postgres/initdb in /usr/lib/postgresql/*/bin or on PATH); "
        "install Debian's package: apt-get install postgresql"
    )


def find_redis_server() -> str:
    path = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/bin:/usr/sbin")
    if not path:
        raise ServerMissing(
            "redis-server is not installed; install Debian's package: apt-get install redis-server"
        )
    return path


OWNER_FILE = "owner.pid"


def scratch_dir(prefix: str) -> Path:
    """A new folder for a server's files: in /dev/shm when it has 1 GiB free (a small
    container /dev/shm has not), else in the usual temporary folder. It records the
    test process's pid; folders left by killed runs (no teardown ran) are removed."""
    try:
        stats = os.statvfs(MEMORY_DIR)
        roomy = stats.f_bavail * stats.f_frsize >= MEMORY_DIR_MIN_FREE and os.access(MEMORY_DIR, os.W_OK)
    except OSError:
        roomy = False
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=MEMORY_DIR if roomy else None))
    (folder / OWNER_FILE).write_text(str(os.getpid()))
    remove_stale_dirs(folder.parent, prefix)
    return folder


def remove_stale_dirs(parent: Path, prefix: str) -> None:
    """Remove ``prefix*`` folders whose test process is gone (its servers died with it)."""
    for folder in parent.glob(prefix + "*"):
        try:
            os.kill(int((folder / OWNER_FILE).read_text()), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except (OSError, ValueError):
            pass  # no owner file (yet), or not ours to judge


def _as_user(account: pwd.struct_passwd | None):
    """A preexec function: drop to ``account`` (if any), then ask for SIGTERM when the
    parent dies. The order matters: changing the user clears the parent-death signal."""

    def preexec():
        if account is not None:
            os.setgroups([])
            os.setgid(account.pw_gid)
            os.setuid(account.pw_uid)
        die_with_parent()

    return preexec


class _Process:
    """One server process with a log file; the shared part of both servers."""

    name = "server"

    def __init__(self, base_dir: str | os.PathLike | None = None):
        self._own_dir = base_dir is None
        self.dir = Path(base_dir) if base_dir else scratch_dir(f"samosval-{self.name}-")
        self.log_path = self.dir / f"{self.name}.log"
        self.process: subprocess.Popen | None = None
        self.port: int | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def _spawn(self, command: list[str], account=None, cwd=None) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_as_user(account),
                # Its own session: Ctrl-C in the terminal reaches pytest, whose
                # teardown stops the server, not the server directly.
                start_new_session=True,
            )

    def _wait_ready(self, ready) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise ServerError(f"{self.name} exited with {self.process.returncode}:\n{self.log_text()}")
            if ready():
                return
            if time.monotonic() > deadline:
                self._signal_and_wait(signal.SIGKILL)
                raise ServerError(f"{self.name} did not start in {START_TIMEOUT} s:\n{self.log_text()}")
            time.sleep(0.05)

    def _signal_and_wait(self, sig: int, timeout: float = 30.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def start(self) -> None:
        """Start on a free port the first time, on the same port afterwards (restarts)."""
        if self.running:
            return
        first = self.port is None
        for _attempt in range(3 if first else 1):
            if first:
                self.port = free_port()
            try:
                self._start()
                return
            except ServerError:
                # Another process may have taken the free port between our probe and
                # the server's bind: try another one (first start only).
                if not first or "in use" not in self.log_text():
                    raise
        raise ServerError(f"{self.name} found no free port:\n{self.log_text()}")

    def _start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and remove its folder (if we created it)."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()


class PostgresServer(_Process):
    """A throw-away PostgreSQL cluster: ``initdb`` into a temporary folder, then
    ``postgres`` on 127.0.0.1 only, trust authentication, durability off (fsync,
    synchronous_commit, full_page_writes) since the data is thrown away."""

    name = "postgres"
    SUPERUSER = "postgres"
    SETTINGS = {
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": "",  # TCP only: no clash with a system cluster's socket
        "max_connections": "300",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "shared_buffers": "64MB",
        "log_min_messages": "warning",
        "log_connections": "off",
        "log_checkpoints": "off",
        "timezone": "UTC",
    }

    def __init__(self, base_dir=None, settings: dict | None = None):
        self.bin = find_postgres_bin()
        super().__init__(base_dir)
        self.data_dir = self.dir / "data"
        self.settings = {**self.SETTINGS, **(settings or {})}
        self.account = None
        if os.geteuid() == 0:
            try:
                self.account = pwd.getpwnam("postgres")
            except KeyError:
                raise ServerMissing(
                    "running as root, and there is no 'postgres' user to run PostgreSQL as "
                    "(Debian's postgresql package creates it)"
                ) from None
            os.chown(self.dir, self.account.pw_uid, self.account.pw_gid)
            os.chmod(self.dir, 0o700)
        self._admin = None
        self._admin_lock = threading.Lock()

    @property
    def url(self) -> str:
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        return f"postgresql://{self.SUPERUSER}@127.0.0.1:{self.port}/{name}"

    def _initdb(self) -> None:
        command = [
            str(self.bin / "initdb"),
            "--pgdata",
            str(self.data_dir),
            "--username",
            self.SUPERUSER,
            "--auth",
            "trust",  # loopback only: listen_addresses is 127.0.0.1, no Unix socket
            "--encoding",
            "UTF8",
            "--locale",
            "C.UTF-8",  # code-point order like SQLite's, with Unicode-aware lower()
            "--no-sync",
            "--no-instructions",
        ]
        result = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            preexec_fn=_as_user(self.account),
            cwd=str(self.dir),
        )
        if result.returncode != 0:
            raise ServerError(f"initdb failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")

    def _start(self) -> None:
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        command = [str(self.bin / "postgres"), "-D", str(self.data_dir), "-p", str(self.port)]
        for key, value in self.settings.items():
            command += ["-c", f"{key}={value}"]
        if self.account is not None and not self.log_path.exists():
            self.log_path.touch()
        self._spawn(command, self.account, cwd=str(self.dir))
        self._wait_ready(self._accepts)

    def _accepts(self) -> bool:
        import psycopg

        try:
            psycopg.connect(self.url, connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` (disconnect clients, roll back; the default),
        ``smart`` (wait for clients) or ``immediate`` (like a crash: recovery at the
        next start)."""
        self._close_admin()
        sig = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}[mode]
        self._signal_and_wait(sig)

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def _close_admin(self) -> None:
        with self._admin_lock:
            if self._admin is not None:
                try:
                    self._admin.close()
                except Exception:
                    pass
                self._admin = None

    def execute(self, sql, params=None, dbname: str = "postgres") -> list[tuple]:
        """Run one statement as the superuser (autocommit); returns its rows, if any."""
        import psycopg

        if dbname != "postgres":
            with psycopg.connect(self.database_url(dbname), autocommit=True) as conn:
                cur = conn.execute(sql, params)
                return cur.fetchall() if cur.description else []
        with self._admin_lock:
            for attempt in (1, 2):
                if self._admin is None or self._admin.closed:
                    self._admin = psycopg.connect(self.url, autocommit=True)
                try:
                    cur = self._admin.execute(sql, params)
                    return cur.fetchall() if cur.description else []
                except psycopg.OperationalError:
                    # The server was restarted under a kept connection: reconnect once.
                    self._admin.close()
                    self._admin = None
                    if attempt == 2:
                        raise
        return []

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create database ``name`` (a copy of ``template`` if given); returns its URL."""
        from psycopg import sql

        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        self.execute(statement)
        return self.database_url(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists, disconnecting anyone still on it."""
        from psycopg import sql

        self.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def disconnect_all(self, name: str) -> None:
        """Close every session on database ``name`` (a template must have none)."""
        self.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )


class RedisServer(_Process):
    """``redis-server`` on 127.0.0.1, nothing persisted (no RDB, no AOF)."""

    name = "redis"

    def __init__(self, base_dir=None):
        self.binary = find_redis_server()
        super().__init__(base_dir)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _start(self) -> None:
        command = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(self.dir),
            "--logfile",
            "",  # stdout, i.e. our log file
        ]
        self._spawn(command, cwd=str(self.dir))
        self._wait_ready(self._accepts)

    def _accepts(self) -> bool:
        import redis

        client = redis.Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=2)
        try:
            return bool(client.ping())
        except redis.exceptions.RedisError:
            return False
        finally:
            client.close()

    def client(self):
        """A redis-py client on this server."""
        import redis

        return redis.Redis.from_url(self.url)

    def stop(self) -> None:
        # SIGTERM: with nothing to save, Redis closes its clients and exits at once.
        self._signal_and_wait(signal.SIGTERM)


def _unavailable(reason: str):
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1)", pytrace=False)
    pytest.skip(reason)


def _session_server(factory):
    try:
        server = factory()
    except ServerMissing as exc:
        _unavailable(str(exc))
    try:
        server.start()
    except BaseException:
        server.close()
        raise
    return server


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server for the whole session (``.url``, ``.create_database``...).
    A test that stops or restarts it must leave it running."""
    server = _session_server(PostgresServer)
    yield server
    server.close()


@pytest.fixture(scope="session")
def redis_server():
    """A Redis server for the whole session (``.url``, ``.restart()``...). Tests share
    it: each one uses its own key prefix rather than flushing."""
    server = _session_server(RedisServer)
    yield server
    server.close()
