"""What a database target names: a SQLite path or a PostgreSQL URL (no imports, so
both samosval.db and samosval.migrations use it)."""

from __future__ import annotations

import re


def is_postgres(target: str) -> bool:
    return str(target).startswith(("postgresql://", "postgres://", "postgresql+psycopg://"))


def sqlalchemy_url(target: str) -> str:
    """The SQLAlchemy URL (for Alembic) of a SQLite path or a PostgreSQL URL."""
    if is_postgres(target):
        return "postgresql+psycopg://" + str(target).split("://", 1)[1]
    return f"sqlite:///{target}"


def describe_target(target: str) -> str:
    """The database for messages and logs: a PostgreSQL URL without its password
    (in the user part or as a ``password=`` parameter)."""
    if not is_postgres(target):
        return str(target)
    scheme, rest = str(target).split("://", 1)
    rest, question, query = rest.partition("?")
    userinfo, at, host = rest.rpartition("@")
    if at and ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    query = re.sub(r"(^|&)(password=)[^&]*", r"\1\2***", query)
    return f"{scheme}://{userinfo}{at}{host}{question}{query}"
