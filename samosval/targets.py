"""What a database target names: a SQLite path or a PostgreSQL URL (no imports, so
both samosval.db and samosval.migrations use it)."""

from __future__ import annotations


def is_postgres(target: str) -> bool:
    return str(target).startswith(("postgresql://", "postgres://", "postgresql+psycopg://"))


def sqlalchemy_url(target: str) -> str:
    """The SQLAlchemy URL (for Alembic) of a SQLite path or a PostgreSQL URL."""
    if is_postgres(target):
        return "postgresql+psycopg://" + str(target).split("://", 1)[1]
    return f"sqlite:///{target}"
