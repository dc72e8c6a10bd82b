"""Substring search through SQLite FTS5 trigram tables (``audit_fts``,
``request_fts``, created by the migrations): the one SQLite-specific piece of the
list queries. On PostgreSQL the callers' ``col ILIKE ...`` (see
:func:`samosval.db.ilike`) uses pg_trgm GIN indexes directly, and nothing here
narrows first.

The index only narrows: callers always re-check each candidate with the literal,
escaped LIKE they had before, so results are exactly the LIKE results (the trigram
index folds case in every script, LIKE only in ASCII, so it finds a superset).
"""

from __future__ import annotations

import sqlite3

from ..db import fts5_search

# A trigram index cannot look up shorter text.
MIN_INDEXED_TEXT = 3
# More index matches than this and the text is common: walking the page's own order
# and checking LIKE meets a page of matches sooner than sorting them all.
SELECTIVE_MATCHES = 20_000
# The tables this module may name in SQL (never taken from input).
INDEXES = frozenset({"audit_fts", "request_fts"})


def indexable(text: str) -> bool:
    return len(text) >= MIN_INDEXED_TEXT


def phrase(text: str) -> str:
    """An FTS5 query matching ``text`` as one literal substring. A NUL ends LIKE's
    pattern, and :func:`samosval.domain.users.like_escape` turns it into ``\\x01``;
    the index looks for the same (never stored) character."""
    return '"' + text.replace("\x00", "\x01").replace('"', '""') + '"'


def matching_ids(
    db: sqlite3.Connection, index: str, text: str, limit: int = SELECTIVE_MATCHES
) -> list[int] | None:
    """The ids of the rows that may hold ``text`` (by the index: a superset of the
    LIKE matches), when fewer than ``limit``; None when the text is common or too
    short for the index (the caller then checks LIKE row by row). Reads at most
    ``limit`` index entries; the caller passes the ids as ``id IN (...)`` instead of
    evaluating the index query a second time."""
    if index not in INDEXES:
        raise ValueError(index)
    if not indexable(text) or not fts5_search(db):
        return None
    ids = [
        row[0]
        for row in db.execute(
            f"SELECT rowid FROM {index} WHERE {index} MATCH ? LIMIT ?", (phrase(text), limit)
        )
    ]
    return ids if len(ids) < limit else None
