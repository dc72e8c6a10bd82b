"""Audit text search through the FTS5 trigram index (issue 23): results equal the
literal LIKE search it replaced, whatever the text (``%``, ``_``, quotes, Cyrillic,
a NUL byte, one or two characters); the index follows inserts, updates and
deletes; migration 5 builds it from an existing log and keeps every row.

On PostgreSQL (the suite's second pass) the same searches equal a literal ILIKE,
which the pg_trgm index serves; the FTS5 checks are SQLite's own."""

from __future__ import annotations

import pytest

from samosval import migrations
from samosval.db import connect, dialect, ilike, init_db_if_needed
from samosval.domain import audit_queries
from samosval.domain.audit_queries import AuditFilters
from samosval.domain.users import like_escape

DETAILS = [
    '{"note": "100% done"}',
    '{"note": "100 percent"}',
    '{"field": "image_name"}',
    '{"field": "imageXname"}',
    '{"note": "it\'s here"}',
    '{"note": "say \\"hi\\""}',
    '{"note": "Привет, мир"}',
    '{"note": "ПРИВЕТ"}',
    '{"note": "привет"}',
    '{"note": "Ёлка ёлка"}',
    '{"note": "back\\\\slash"}',
    '{"note": "a_b%c"}',
    '{"note": "ABC abc"}',
    '{"note": "tab\there"}',
    None,
    "",
    "plain text, not JSON",
    '{"note": "x\u0001y"}',
    '{"emoji": "🚀 launch"}',
    '{"note": "under_score_"}',
]
QUERIES = [
    "%",
    "_",
    "%_",
    "100%",
    "0%",
    "image_name",
    "e_n",
    "'",
    "it's",
    '"',
    '\\"hi\\"',
    'say \\"',
    "Привет",
    "привет",
    "ПРИВЕТ",
    "ривет, м",
    "мир",
    "ёлка",
    "Ё",
    "ABC",
    "abc",
    "bC a",
    "\x00",
    "x\x00y",
    "ab\x00",
    "\\",
    "back\\\\slash",
    "a_b%c",
    "b%c",
    "🚀",
    "🚀 l",
    "launch",
    "nothing-matches",
    "e",
    "no",
    "x\x01y",
    "%%%",
    "___",
    "note",
    "under_score_",
]


def old_like_ids(db, q: str, **where) -> list[int]:
    """The search as it was before the index: a LIKE over every row, newest first
    (ILIKE on PostgreSQL, whose LIKE is case-sensitive)."""
    sql = f"SELECT id FROM audit_log WHERE details {ilike(db)} ? ESCAPE '\\'"
    params = ["%" + like_escape(q) + "%"]
    for column, value in where.items():
        sql += f" AND {column} = ?"
        params.append(value)
    return [row[0] for row in db.execute(sql + " ORDER BY id DESC", params)]


def all_pages(db, filters: AuditFilters, per_page: int = 3) -> list[int]:
    """Every id the audit page shows for ``filters``, following "Older" to the end."""
    shown, before = [], None
    for _ in range(10_000):
        page = audit_queries.search(db, filters, before=before, per_page=per_page)
        shown += [row["id"] for row in page.items]
        if not page.has_older:
            return shown
        before = page.older_cursor
    raise AssertionError("the pages never end")


@pytest.fixture
def log_db(database_config, monkeypatch):
    """A fresh database of the suite's back-end holding the sample log."""
    db = connect(database_config["DATABASE"])
    # Small windows so short texts cross several of them in this small log.
    monkeypatch.setattr(audit_queries, "SHORT_TEXT_WINDOW", 7)
    db.execute("BEGIN")
    for n in range(3):
        for i, details in enumerate(DETAILS):
            db.execute(
                "INSERT INTO audit_log (user_id, action, details, created_at) VALUES (?, ?, ?, ?)",
                (
                    1 if i % 2 else None,
                    "login" if i % 3 else "request_edit",
                    details,
                    f"2026-03-{1 + n:02d}T{i:02d}:00:00Z",
                ),
            )
    db.execute("COMMIT")
    yield db
    db.close()


@pytest.mark.parametrize("q", QUERIES)
def test_search_equals_the_literal_like(log_db, q):
    expected = old_like_ids(log_db, q)
    if q.isascii() and "\x00" not in q:  # the same, by Python: a substring in any ASCII case
        rows = log_db.execute("SELECT id, details FROM audit_log ORDER BY id DESC").fetchall()
        assert expected == [i for i, details in rows if details is not None and q.lower() in details.lower()]
    assert all_pages(log_db, AuditFilters(q=q)) == expected
    assert all_pages(log_db, AuditFilters(q=q), per_page=50) == expected


@pytest.mark.parametrize("q", ["привет", "%", "e_n", "no", "\x00"])
def test_search_with_other_filters_equals_the_literal_like(log_db, q):
    assert all_pages(log_db, AuditFilters(q=q, action="login")) == old_like_ids(log_db, q, action="login")
    dated = AuditFilters(q=q, date_from="2026-03-02", date_to="2026-03-02")
    expected = [
        i
        for i in old_like_ids(log_db, q)
        if log_db.execute("SELECT created_at FROM audit_log WHERE id = ?", (i,))
        .fetchone()[0]
        .startswith("2026-03-02")
    ]
    assert all_pages(log_db, dated) == expected


def test_the_index_follows_updates_and_deletes(log_db):
    row_id = log_db.execute(
        "INSERT INTO audit_log (action, details, created_at) VALUES "
        "('login', 'zebra crossing', '2026-03-09T00:00:00Z')"
    ).lastrowid
    assert all_pages(log_db, AuditFilters(q="zebra")) == [row_id]
    log_db.execute("UPDATE audit_log SET details = 'giraffe' WHERE id = ?", (row_id,))
    assert all_pages(log_db, AuditFilters(q="zebra")) == []
    assert all_pages(log_db, AuditFilters(q="giraffe")) == [row_id]
    log_db.execute("DELETE FROM audit_log WHERE id = ?", (row_id,))
    assert all_pages(log_db, AuditFilters(q="giraffe")) == []
    if dialect(log_db) == "sqlite":  # the FTS5 index is consistent with its content table
        log_db.execute("INSERT INTO audit_fts (audit_fts, rank) VALUES ('integrity-check', 1)")


@pytest.mark.sqlite_only
def test_text_of_three_characters_or_more_goes_through_the_index(log_db):
    sql, params = audit_queries.search_sql(AuditFilters(q="привет"))
    plan = " | ".join(row[3] for row in log_db.execute("EXPLAIN QUERY PLAN " + sql, params))
    assert "VIRTUAL TABLE" in plan and "TEMP B-TREE" not in plan, plan
    sql, params = audit_queries.search_sql(AuditFilters(q="ab"))
    plan = " | ".join(row[3] for row in log_db.execute("EXPLAIN QUERY PLAN " + sql, params))
    assert "VIRTUAL TABLE" not in plan and "rowid>" in plan, plan


def test_a_short_text_reads_one_window_per_page(log_db):
    newest = log_db.execute("SELECT MAX(id) FROM audit_log").fetchone()[0]
    page = audit_queries.search(log_db, AuditFilters(q="zz"))
    assert page.items == [] and page.has_older
    assert page.older_cursor == newest + 1 - audit_queries.SHORT_TEXT_WINDOW
    assert all_pages(log_db, AuditFilters(q="zz")) == []


@pytest.mark.sqlite_only
def test_migration_5_indexes_an_existing_log_and_keeps_every_row(tmp_path):
    path = str(tmp_path / "v4.sqlite3")
    init_db_if_needed(path)
    db = connect(path)
    db.execute("DROP TABLE audit_fts")
    for name in ("audit_fts_insert", "audit_fts_delete", "audit_fts_update"):
        db.execute(f"DROP TRIGGER IF EXISTS {name}")
    db.execute("PRAGMA user_version = 4")
    db.executemany(
        "INSERT INTO audit_log (user_id, action, details, created_at) VALUES (NULL, 'login', ?, ?)",
        [(details, f"2026-03-01T00:00:{i % 60:02d}Z") for i, details in enumerate(DETAILS * 50)],
    )
    before = db.execute("SELECT * FROM audit_log ORDER BY id").fetchall()
    assert migrations.upgrade(db)[0] == 5
    assert [tuple(r) for r in db.execute("SELECT * FROM audit_log ORDER BY id")] == [tuple(r) for r in before]
    for q in ("Привет", "100%", "image_name", "nothing"):
        assert all_pages(db, AuditFilters(q=q), per_page=20) == old_like_ids(db, q)
    db.execute("INSERT INTO audit_fts (audit_fts, rank) VALUES ('integrity-check', 1)")
    # Later rows are indexed by the triggers the migration created.
    new_id = db.execute(
        "INSERT INTO audit_log (action, details, created_at) VALUES "
        "('login', 'after the upgrade', '2026-03-02T00:00:00Z')"
    ).lastrowid
    assert all_pages(db, AuditFilters(q="after the up")) == [new_id]
    db.close()
