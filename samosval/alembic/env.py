"""Alembic's environment for Samosval: one schema (``samosval.schema.metadata``), one
history (``versions/``) for SQLite and PostgreSQL.

The app runs it programmatically (:func:`samosval.migrations.upgrade_database`),
handing over an open connection in ``config.attributes["connection"]``. From the
command line (``alembic -c alembic.ini ...``) the database is
``-x database=<path or postgresql:// URL>``, else ``SAMOSVAL_DATABASE_URL``, else
``instance/samosval.sqlite3``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from samosval import migrations

# Any fixed number: the PostgreSQL advisory lock that makes concurrent starts
# upgrade one after the other.
MIGRATION_LOCK = 0x5A4D_0001


def configure(connection) -> None:
    context.configure(
        connection=connection,
        transactional_ddl=True,
        on_version_apply=_on_version_apply,
        **migrations.context_options(connection.dialect.name),
    )


def _on_version_apply(ctx, step, heads, run_args) -> None:
    report = context.config.attributes.get("on_version_apply")
    if report is not None:
        report(step)


def run_migrations(connection) -> None:
    configure(connection)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        context.run_migrations()
        if connection.dialect.name == "sqlite":
            migrations.mark_sqlite(connection)


def run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    target = context.get_x_argument(as_dictionary=True).get("database") or migrations.default_target()
    engine = migrations.create_engine(target)
    try:
        with engine.connect() as connection:
            run_migrations(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("Samosval's migrations run against a database (no --sql mode).")
run_online()
