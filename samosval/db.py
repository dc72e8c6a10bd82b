"""The only module that opens database connections.

Two back-ends behind one small API (``connect``, ``transaction``, rows that answer
``row[0]`` and ``row["name"]``):

* SQLite (the embedded default): one file, ``sqlite3`` in autocommit mode. Every write
  goes through :func:`transaction`, which takes the write lock up front (``BEGIN
  IMMEDIATE``) so two writers queue on the busy timeout instead of failing with
  "database is locked" halfway through.
* PostgreSQL (``SAMOSVAL_DATABASE_URL=postgresql://...``): psycopg 3, which cooperates
  with gevent by itself, through one pool per process. The code keeps writing ``?``
  placeholders; :class:`PgConnection` translates them. :func:`transaction` takes one
  transaction-level advisory lock, so writers serialize exactly as they do on SQLite
  and no rule that reads-then-writes has to be rewritten for READ COMMITTED.

Request handlers get one connection each through ``g`` (returned on teardown); the
engine and background workers hold their own from :func:`connect`.
"""

from __future__ import annotations

import atexit
import functools
import os
import re
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path

import click
from flask import current_app, g
from flask.cli import with_appcontext
from werkzeug.security import generate_password_hash

from . import migrations
from .targets import describe_target, is_postgres, sqlalchemy_url  # noqa: F401 (migrations.py needs them too)
from .timeutil import utcnow_iso

BUSY_TIMEOUT_MS = 10_000
# Every write transaction on PostgreSQL takes this transaction-level advisory lock
# (an arbitrary constant: "samosval" in ASCII, truncated to a bigint).
WRITE_LOCK_KEY = 0x73616D6F7376
POOL_MAX_SIZE = int(os.environ.get("SAMOSVAL_DATABASE_POOL_SIZE", "20"))
# How long a request waits for a connection: when PostgreSQL is down, the wait before
# its 503 (a busy pool frees a connection within milliseconds).
POOL_TIMEOUT_SECONDS = 5.0
# A process paused inside a transaction (SIGSTOP, a debugger) would hold the writers'
# lock, and with it every writer and any engine takeover, for ever: the server ends
# such a session after this long (well inside the engine lease's 5 s; no transaction
# of Samosval waits between its statements).
IDLE_IN_TRANSACTION_MS = 2_000
CONNECT_TIMEOUT_SECONDS = 5

# Errors to catch on either back-end. Read them as ``db.IntegrityError`` at the
# ``except`` (not ``from .db import ...``): psycopg's classes join them when the first
# PostgreSQL connection loads the driver, which the embedded default never imports
# (it costs ~80 ms of start-up).
IntegrityError: tuple[type[Exception], ...] = (sqlite3.IntegrityError,)
DatabaseError: tuple[type[Exception], ...] = (sqlite3.Error,)
# The database cannot answer right now (locked, restarting, unreachable): 503, not 500.
UnavailableError: tuple[type[Exception], ...] = (sqlite3.OperationalError,)
psycopg = None


def _load_driver() -> None:
    global psycopg, IntegrityError, DatabaseError, UnavailableError
    if psycopg is not None:
        return
    import psycopg as driver
    from psycopg_pool import PoolTimeout

    IntegrityError = (sqlite3.IntegrityError, driver.IntegrityError)
    DatabaseError = (sqlite3.Error, driver.Error, PoolTimeout)
    UnavailableError = (sqlite3.OperationalError, driver.OperationalError, PoolTimeout)
    psycopg = driver


def unavailable_errors(target: str) -> tuple[type[Exception], ...]:
    """:data:`UnavailableError` for ``target``'s driver (loads psycopg for a PostgreSQL
    URL), for handlers registered before the first connection."""
    if is_postgres(target):
        _load_driver()
    return UnavailableError


def dialect(db) -> str:
    """Which database ``db`` talks to ("sqlite" or "postgresql"), for the few queries
    each database spells its own way."""
    return "postgresql" if isinstance(db, PgConnection) else "sqlite"


def connect(target: str):
    """Open a connection: a SQLite path gets ``sqlite3`` with Samosval's PRAGMAs (each
    thread must open its own); a PostgreSQL URL gets a connection from this process's
    pool, returned to it by ``close()``."""
    if is_postgres(target):
        return PgConnection(_pool(str(target)))
    db = sqlite3.connect(target, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=True)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA foreign_keys = ON")
    db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    return db


@contextmanager
def transaction(db):
    """A short write transaction: commit on success, roll back on any error.

    A connection may carry a ``fence`` callable (the engine's does, on PostgreSQL): it
    runs first inside the transaction and raises when this process may no longer write.
    """
    if isinstance(db, PgConnection):
        db.execute("BEGIN")
        try:
            db.execute("SELECT pg_advisory_xact_lock(?)", (WRITE_LOCK_KEY,))
            fence = getattr(db, "fence", None)
            if fence is not None:
                fence(db)
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction and not db.closed:
                db.execute("ROLLBACK")
            raise
        return
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


# --- PostgreSQL -------------------------------------------------------------------

_pools: dict[str, object] = {}
_pools_lock = threading.Lock()


def _pool(url: str):
    pool = _pools.get(url)
    if pool is None:
        _load_driver()
        with _pools_lock:
            pool = _pools.get(url)
            if pool is None:
                from psycopg_pool import ConnectionPool

                pool = ConnectionPool(
                    url,
                    min_size=1,
                    max_size=POOL_MAX_SIZE,
                    timeout=POOL_TIMEOUT_SECONDS,
                    kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_SECONDS},
                    configure=_configure_pg,
                    check=ConnectionPool.check_connection,
                    name="samosval",
                    open=True,
                )
                _pools[url] = pool
    return pool


def close_pools() -> None:
    """Close every pool of this process (tests dropping databases; shutdown)."""
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.close()


# At exit, before the interpreter tears down: a pool left to its __del__ then joins
# its workers through gevent's finalized hub and prints a traceback (CLI, gunicorn).
atexit.register(close_pools)


def _configure_pg(conn) -> None:
    conn.adapters.register_loader("numeric", _numeric_loader())
    conn.row_factory = _row_factory
    conn.execute(f"SET idle_in_transaction_session_timeout = {IDLE_IN_TRANSACTION_MS}")
    # psycopg prepares a statement after 5 runs, and PostgreSQL then may switch to one
    # generic plan for every parameter: a text search or a status filter whose best
    # plan depends on the value would walk whole tables (measured: 0.3 ms -> 60 ms).
    # Planning each run costs well under a millisecond.
    conn.execute("SET plan_cache_mode = force_custom_plan")


def _load_numeric(data) -> int | float:
    """``sum()`` and ``avg()`` answer NUMERIC: whole numbers load as int, others as
    float (as SQLite gives them), never as Decimal."""
    text = bytes(data).decode()
    return int(text) if text.lstrip("-").isdigit() else float(text)


@functools.cache
def _numeric_loader():
    return type("NumericLoader", (psycopg.adapt.Loader,), {"load": lambda self, data: _load_numeric(data)})


class Row(tuple):
    """A row like ``sqlite3.Row``: by index, by column name, ``keys()``, ``dict(row)``."""

    __slots__ = ()
    _index: dict[str, int] = {}
    _keys: tuple[str, ...] = ()

    def __getitem__(self, key):
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._keys)


@functools.lru_cache(maxsize=512)
def _row_class(names: tuple[str, ...]) -> type[Row]:
    return type(
        "Row", (Row,), {"__slots__": (), "_index": {n: i for i, n in enumerate(names)}, "_keys": names}
    )


def _row_factory(cursor):
    if cursor.description is None:
        return tuple
    row_class = _row_class(tuple(column.name for column in cursor.description))
    return row_class


# psycopg's placeholders are %s, and it reads every % (even inside a quoted literal):
# ? outside '...' strings, "..." identifiers and -- comments becomes %s, and every
# literal % is doubled.
_SQL_TOKEN = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|\?|%")


@functools.lru_cache(maxsize=4096)
def _pg_sql(sql: str) -> str:
    def replace(match: re.Match) -> str:
        token = match.group(0)
        if token == "?":
            return "%s"
        return token.replace("%", "%%")

    return _SQL_TOKEN.sub(replace, sql)


class PgCursor:
    """What ``execute`` returns: fetch methods, iteration, ``rowcount`` and a lazy
    ``lastrowid`` (the sequence value the last INSERT took on this connection)."""

    __slots__ = ("_cursor", "_conn")

    def __init__(self, cursor, conn):
        self._cursor = cursor
        self._conn = conn

    def fetchone(self):
        return self._cursor.fetchone() if self._cursor.description is not None else None

    def fetchall(self):
        return self._cursor.fetchall() if self._cursor.description is not None else []

    def fetchmany(self, size: int = 1):
        return self._cursor.fetchmany(size)

    def __iter__(self):
        return iter(self.fetchall())

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def description(self):
        return self._cursor.description

    @property
    def lastrowid(self):
        return self._conn.execute("SELECT lastval()").fetchone()[0]


class PgConnection:
    """A pooled psycopg connection with the slice of the ``sqlite3.Connection`` API
    Samosval uses. ``close()`` hands it back to the pool."""

    def __init__(self, pool):
        self._pool = pool
        self._conn = pool.getconn()
        self.fence = None  # see transaction()

    @property
    def raw(self):
        return self._conn

    @property
    def closed(self) -> bool:
        return self._conn is None

    def execute(self, sql: str, params=()) -> PgCursor:
        if params:
            cursor = self._conn.execute(_pg_sql(sql), tuple(params) if isinstance(params, list) else params)
        else:
            cursor = self._conn.execute(sql)
        return PgCursor(cursor, self)

    def executemany(self, sql: str, seq_of_params) -> PgCursor:
        cursor = self._conn.cursor()
        cursor.executemany(_pg_sql(sql), list(seq_of_params))
        return PgCursor(cursor, self)

    def executescript(self, script: str) -> None:
        self._conn.execute(script)

    @property
    def in_transaction(self) -> bool:
        return self._conn is not None and (
            self._conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
        )

    def commit(self) -> None:
        if self.in_transaction:
            self._conn.execute("COMMIT")

    def rollback(self) -> None:
        if self.in_transaction:
            self._conn.execute("ROLLBACK")

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            # The pool rolls back an open transaction and discards a broken connection.
            self._pool.putconn(conn)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def get_db() -> sqlite3.Connection:
    if "db" not in g:
        g.db = connect(current_app.config["DATABASE"])
    return g.db


def close_db(_exc=None) -> None:
    db = g.pop("db", None)
    if db is not None:
        db.close()


def init_db_if_needed(path: str, root_password: str = "root") -> dict:
    """Create or upgrade the database at ``path`` and make sure ``root`` exists.

    Safe to call on every start: an up-to-date database is left as it is.
    Returns what was done, for the start-up message and for tests.
    """
    created = not is_postgres(path) and not os.path.exists(path)
    if created:
        Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Password hashes and session digests live here: readable by the owner only.
        # SQLite gives its -wal and -shm files the database file's mode.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    applied = migrations.upgrade_database(path)
    # A PostgreSQL database is "created" when its first revision ran just now.
    created = created or (is_postgres(path) and applied[:1] == [migrations.BASELINE])
    db = connect(path)
    try:
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
    path = describe_target(path)
    if result["created"]:
        lines = [f"Database created at {path}."]
    elif result.get("migrated_to"):
        lines = [f"Database at {path} upgraded to schema version {result['migrated_to'][-1]}."]
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


# --- Dialect spellings ---
# The few places where SQLite and PostgreSQL need different SQL, each chosen by
# dialect(db) here, so domain code never asks which database it talks to. ``db`` may
# be None (SQL built for EXPLAIN in tests): the SQLite spelling.


def ilike(db) -> str:
    """The operator for a substring match that ignores case as SQLite's LIKE does:
    ILIKE on PostgreSQL, whose LIKE is case-sensitive (its pg_trgm GIN indexes serve
    ILIKE directly)."""
    return "ILIKE" if db is not None and dialect(db) == "postgresql" else "LIKE"


def unindexed(db, column: str) -> str:
    """``column`` as a filter only, never an index choice: SQLite's unary plus (its
    planner otherwise seeks a worse index); PostgreSQL's planner weighs the indexes
    by their statistics, and has no unary plus on text."""
    return column if db is not None and dialect(db) == "postgresql" else f"+{column}"


def fts5_search(db) -> bool:
    """Whether substring search narrows through the FTS5 trigram tables (SQLite);
    on PostgreSQL the ILIKE itself uses the pg_trgm GIN indexes."""
    return db is None or dialect(db) == "sqlite"


def filter_only(db, condition: str) -> str:
    """``condition`` checked row by row on whatever the planner walks, never looked up
    in an index of its own. PostgreSQL: ``(condition) IS TRUE``, a test no index
    serves (its pg_trgm indexes would otherwise be picked or not by a guess), which the
    planner estimates as the condition itself, so it still knows how common the text
    is. SQLite has no index for ``LIKE '%...%'``: unchanged."""
    return f"({condition}) IS TRUE" if db is not None and dialect(db) == "postgresql" else condition


def id_in(db, column: str, ids: list[int]) -> tuple[str, list]:
    """``column`` is one of ``ids``, as ``(sql, params)``: PostgreSQL takes the list as
    one array parameter, SQLite one placeholder each. No ids: a condition never true."""
    if not ids:
        return "0 = 1", []
    if db is not None and dialect(db) == "postgresql":
        return f"{column} = ANY(?)", [list(ids)]
    return f"{column} IN ({', '.join('?' * len(ids))})", list(ids)
