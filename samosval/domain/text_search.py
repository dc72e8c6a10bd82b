"""Substring search through SQLite FTS5 trigram tables (``audit_fts``,
``request_fts``, created by the migrations): the one SQLite-specific piece of the
list queries, and its PostgreSQL spelling through pg_trgm GIN indexes.

The index only narrows: callers always re-check each candidate with the literal,
escaped LIKE they had before, so results are exactly the LIKE results (the trigram
index folds case in every script, LIKE only in ASCII, so it finds a superset).
"""

from __future__ import annotations

import sqlite3

from ..db import fts5_search, ilike
from . import without_nul
from .users import like_escape

# A trigram index cannot look up shorter text.
MIN_INDEXED_TEXT = 3
# More index matches than this and the text is common: walking the page's own order
# and checking LIKE meets a page of matches sooner than sorting them all.
SELECTIVE_MATCHES = 20_000
# The tables this module may name in SQL (never taken from input), and on PostgreSQL
# the table and the columns (each with a pg_trgm GIN index) each one stands for.
INDEXES = frozenset({"audit_fts", "request_fts"})
INDEXED_COLUMNS = {
    "audit_fts": ("audit_log", ("details",)),
    "request_fts": ("image_requests", ("image_name", "repo_url")),
}

# PostgreSQL, the same rule spelled for its planner, which cannot choose by itself:
# it assumes matches are spread evenly over the ids (so text only old rows hold makes
# it walk the whole log newest first), and a prepared statement's generic plan guesses
# 0.5% for any text. So the order is fixed here: a page first walks its own order over
# the RECENT_IDS ids next to its cursor, checking ILIKE row by row with the index out
# of the question (common text fills a page there); beyond them it asks the index for
# the matching ids, reading at most SELECTIVE_MATCHES of them (:func:`matching_ids`),
# and reads those rows by id; more, and the text is common: the walk goes on.
RECENT_IDS = 5_000
# A list with no such walk first (requests: by update time, OFFSET pages) probes for
# fewer ids on PostgreSQL: common text then reads 2,000 index matches, not 20,000, and
# sends no long list of ids back (10,000 requests: 1.5 ms instead of 14 ms).
SELECTIVE_MATCHES_POSTGRES = 2_000


def indexable(text: str) -> bool:
    return len(text) >= MIN_INDEXED_TEXT


def phrase(text: str) -> str:
    """An FTS5 query matching ``text`` as one literal substring. A NUL ends LIKE's
    pattern, and :func:`samosval.domain.users.like_escape` turns it into ``\\x01``;
    the index looks for the same (never stored) character."""
    return '"' + without_nul(text).replace('"', '""') + '"'


def matching_ids(db: sqlite3.Connection, index: str, text: str, limit: int | None = None) -> list[int] | None:
    """The ids of the rows that may hold ``text`` (by the index: a superset of the
    LIKE matches), when fewer than ``limit``; None when the text is common or too
    short for the index (the caller then checks LIKE row by row). Reads at most
    ``limit`` index entries; the caller passes the ids (see :func:`samosval.db.id_in`)
    instead of evaluating the index query a second time. On PostgreSQL the ids are the
    ILIKE matches themselves, found through the pg_trgm indexes (:func:`matching_sql`),
    and ``limit`` is SELECTIVE_MATCHES_POSTGRES unless the caller walks first."""
    if index not in INDEXES:
        raise ValueError(index)
    if not indexable(text):
        return None
    if limit is None:
        limit = SELECTIVE_MATCHES if fts5_search(db) else SELECTIVE_MATCHES_POSTGRES
    if fts5_search(db):
        sql, params = f"SELECT rowid FROM {index} WHERE {index} MATCH ? LIMIT ?", [phrase(text), limit]
        ids = [row[0] for row in db.execute(sql, params)]
    else:
        # One array, not a row per id: thousands of row tuples made Python's garbage
        # collector sweep the whole process every few pages (a 60 ms pause).
        sql, params = matching_sql(db, index, text, limit)
        ids = db.execute(f"SELECT array_agg(id) FROM ({sql}) AS m", params).fetchone()[0] or []
    return ids if len(ids) < limit else None


def matching_sql(db, index: str, text: str, limit: int = SELECTIVE_MATCHES) -> tuple[str, list]:
    """PostgreSQL's lookup of the rows holding ``text``. Nothing else narrows it, and
    the LIMIT is written out: a prepared statement's generic plan, guessing for every
    parameter, then still reads the pg_trgm index (a guessed id range or LIMIT made it
    walk the primary key through the whole table)."""
    table, columns = INDEXED_COLUMNS[index]
    pattern = "%" + like_escape(text) + "%"
    where = " OR ".join(f"{column} {ilike(db)} ? ESCAPE '\\'" for column in columns)
    return f"SELECT id FROM {table} WHERE {where} LIMIT {int(limit)}", [pattern] * len(columns)
