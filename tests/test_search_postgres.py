"""Audit text search on PostgreSQL (issue 15): the strategy in
:data:`samosval.domain.text_search.RECENT_IDS` (walk the ids next to the cursor, then
read the few matching ids beyond through idx_audit_details_trgm, or walk on when the
text is common) gives exactly the rows a plain substring filter gives, for text that
matches nothing, a few old rows, many old rows or very many rows, on every page in
both directions and in the CSV export.

The equality tests run on both back-ends (SQLite searches through FTS5 and must agree
too); the plan checks are PostgreSQL's own and skip on SQLite."""

from __future__ import annotations

import csv
import io
from types import SimpleNamespace

import pytest

from samosval.db import connect, dialect
from samosval.domain import audit_queries, text_search
from samosval.domain import requests as request_domain
from samosval.domain.audit_queries import AuditFilters

ROWS = 600
# Small windows and a small "few" so this small log crosses every branch.
RECENT_IDS = 40
SELECTIVE_MATCHES = 50


def details(i: int) -> str:
    """Row ``i`` (1-based): every row says "event", the oldest 200 also "vintage", six
    old ones "rare-old", and the newest one "fresh-one"."""
    notes = [f"event {i}"]
    if i <= 200:
        notes.append("Vintage")
    if i in (3, 70, 71, 150, 151, 152):
        notes.append("RARE-old")
    if i == ROWS:
        notes.append("fresh-one")
    return '{"note": "' + ", ".join(notes) + '"}'


# Text matching (a) nothing, (b) a few old rows, (b') many old rows (more than
# SELECTIVE_MATCHES), (c) every row, and one row only, the newest.
TEXTS = ["nothing-here", "rare-old", "vintage", "event", "event 1", "fresh-one"]


@pytest.fixture
def search_db(database_config, monkeypatch):
    db = connect(database_config["DATABASE"])
    monkeypatch.setattr(text_search, "RECENT_IDS", RECENT_IDS)
    monkeypatch.setattr(text_search, "SELECTIVE_MATCHES", SELECTIVE_MATCHES)
    monkeypatch.setattr(audit_queries, "ID_BATCH", 2)
    db.execute("BEGIN")
    for i in range(1, ROWS + 1):
        db.execute(
            "INSERT INTO audit_log (user_id, action, details, created_at) VALUES (?, ?, ?, ?)",
            (
                1,
                "login" if i % 2 else "request_edit",
                details(i),
                f"2026-03-01T00:{i // 60:02d}:{i % 60:02d}Z",
            ),
        )
    db.execute("COMMIT")
    yield db
    db.close()


def expected_ids(db, q: str, action: str = "") -> list[int]:
    """The plain substring filter, in Python: newest first."""
    rows = db.execute("SELECT id, action, details FROM audit_log ORDER BY id DESC").fetchall()
    return [
        row["id"]
        for row in rows
        if q.lower() in (row["details"] or "").lower() and (not action or row["action"] == action)
    ]


def older_pages(db, filters: AuditFilters, per_page: int) -> list[list[int]]:
    pages, before = [], None
    for _ in range(ROWS + 2):
        page = audit_queries.search(db, filters, before=before, per_page=per_page)
        pages.append([row["id"] for row in page.items])
        assert page.has_newer == (before is not None and bool(sum(pages[:-1], [])))
        if not page.has_older:
            return pages
        before = page.older_cursor
    raise AssertionError("the pages never end")


@pytest.mark.parametrize("q", TEXTS)
@pytest.mark.parametrize("per_page", [7, 50])
def test_every_page_equals_the_substring_filter(search_db, q, per_page):
    expected = expected_ids(search_db, q)
    pages = older_pages(search_db, AuditFilters(q=q), per_page)
    assert sum(pages, []) == expected
    assert all(len(page) == per_page for page in pages[:-1])


@pytest.mark.parametrize("q", TEXTS)
def test_newer_pages_walk_back_to_the_newest(search_db, q):
    """``after=`` pages (oldest first inside, shown newest first) meet the same rows."""
    expected = expected_ids(search_db, q)
    shown, after = [], 0
    while True:
        page = audit_queries.search(search_db, AuditFilters(q=q), after=after, per_page=9)
        ids = [row["id"] for row in page.items]
        if after and ids and ids[-1] <= after:  # nothing newer: the newest page again
            break
        shown = ids + shown
        if not page.has_newer:
            break
        after = ids[0]
    assert shown == expected


@pytest.mark.parametrize("q", ["rare-old", "vintage", "event"])
def test_other_filters_apply_on_every_branch(search_db, q):
    filters = AuditFilters(q=q, action="login")
    assert sum(older_pages(search_db, filters, 11), []) == expected_ids(search_db, q, "login")


@pytest.mark.parametrize("q", TEXTS)
def test_the_csv_export_holds_the_same_rows(search_db, q):
    text = "".join(audit_queries.iter_csv(search_db, AuditFilters(q=q), batch=30))
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))[1:]
    assert [int(row[0]) for row in rows] == expected_ids(search_db, q)


# --- plans (PostgreSQL) ----------------------------------------------------------------

BIG = 50_000  # a log the planner reads through an index rather than whole


@pytest.fixture
def big_db(database_config):
    db = connect(database_config["DATABASE"])
    if dialect(db) != "postgresql":
        db.close()
        pytest.skip("PostgreSQL's plans")
    db.execute(
        "INSERT INTO audit_log (action, details, created_at) SELECT 'login', "
        '\'{"note": "event \' || n || \'", "field": "image_name"}\', \'2026-03-01T00:00:00Z\' '
        "FROM generate_series(1, ?) AS n",
        (BIG,),
    )
    db.execute("ANALYZE audit_log")
    yield db
    db.close()


def plan(db, sql: str, params, *, generic: bool = False) -> str:
    """EXPLAIN of ``sql``; ``generic``: the generic plan a prepared statement may settle
    on after a few runs (every parameter a guess)."""
    if not generic:
        return "\n".join(row[0] for row in db.execute("EXPLAIN " + sql, params))
    db.execute("SET plan_cache_mode = force_generic_plan")
    try:
        numbered = sql
        for n in range(1, len(params) + 1):
            numbered = numbered.replace("?", f"${n}", 1)
        db.execute(f"PREPARE probe AS {numbered}")
        literals = ", ".join("'" + str(p).replace("'", "''") + "'" for p in params)
        return "\n".join(row[0] for row in db.execute(f"EXPLAIN EXECUTE probe({literals})"))
    finally:
        db.execute("DEALLOCATE ALL")
        db.execute("RESET plan_cache_mode")


@pytest.mark.parametrize("generic", [False, True])
def test_the_lookup_of_few_matches_reads_the_trigram_index(big_db, generic):
    sql, params = text_search.matching_sql(big_db, "audit_fts", "event 1234")
    assert "idx_audit_details_trgm" in plan(big_db, sql, params, generic=generic)
    assert text_search.matching_ids(big_db, "audit_fts", "event 1234") == [1234, *range(12340, 12350)]


def test_a_walk_reads_the_primary_key_never_the_trigram_index(big_db):
    """The walk near the cursor is bounded by the primary key, whatever the guess."""
    statements = []
    original = big_db.execute

    def execute(sql, params=()):
        statements.append((sql, list(params)))
        return original(sql, params)

    big_db.execute = execute
    page = audit_queries.search(big_db, AuditFilters(q="event 1234"), per_page=50)
    big_db.execute = original
    assert [row["id"] for row in page.items] == [*range(12349, 12339, -1), 1234]
    walks = [(sql, params) for sql, params in statements if ") IS TRUE" in sql]
    assert walks, statements
    for sql, params in walks:
        for generic in (False, True):
            shown = plan(big_db, sql, params, generic=generic)
            assert "audit_log_pkey" in shown and "idx_audit_details_trgm" not in shown, shown
    # The few matches beyond the walk came from the index lookup, read by id.
    assert any("= ANY(" in sql for sql, _ in statements)


# --- the request list ----------------------------------------------------------------


@pytest.fixture
def request_db(database_config, monkeypatch):
    """400 requests named ``service-<n>``; 50 "few" matches on PostgreSQL."""
    db = connect(database_config["DATABASE"])
    monkeypatch.setattr(text_search, "SELECTIVE_MATCHES_POSTGRES", 50)
    root = db.execute("SELECT id FROM users ORDER BY id LIMIT 1").fetchone()[0]
    db.execute("BEGIN")
    for n in range(400):
        db.execute(
            "INSERT INTO image_requests (image_name, repo_url, repo_branch, update_mode, base_image, ram_mb, "
            "vcpu, version_tag, owner_id, status, created_by, created_at, updated_at) "
            "VALUES (?, ?, 'main', 'static', 'python', 256, 1, '1.0', ?, 'draft', ?, ?, ?)",
            (
                f"service-{n}",
                f"https://git.example.com/team{n % 7}/Service{n}.git",
                root,
                root,
                "2026-03-01T00:00:00Z",
                f"2026-03-01T{n // 60:02d}:{n % 60:02d}:00Z",
            ),
        )
    db.execute("COMMIT")
    yield db, SimpleNamespace(id=root, username="root", role="admin", is_authenticated=True)
    db.close()


@pytest.mark.parametrize("q", ["nothing-here", "service-12", "service-1", "service", "TEAM3", "se"])
def test_the_request_list_equals_the_substring_filter(request_db, q):
    """Few matches (read by id) and common text (walked) both give the plain filter."""
    db, admin = request_db
    sql, params = request_domain.list_requests_query(admin, q=q, db=db)
    rows = db.execute("SELECT id, image_name, repo_url FROM image_requests ORDER BY updated_at DESC, id DESC")
    expected = [
        r["id"] for r in rows if q.lower() in r["image_name"].lower() or q.lower() in r["repo_url"].lower()
    ]
    assert [row["id"] for row in db.execute(sql, params)] == expected
    few = text_search.matching_ids(db, "request_fts", q)
    assert (few is not None) == (
        text_search.indexable(q)
        and len(expected) < (50 if dialect(db) == "postgresql" else text_search.SELECTIVE_MATCHES)
    )


def test_common_request_text_is_walked_never_guessed(request_db):
    db, admin = request_db
    if dialect(db) != "postgresql":
        pytest.skip("PostgreSQL's plans")
    db.execute("ANALYZE image_requests")
    sql, params = request_domain.list_requests_query(admin, q="service", db=db)
    assert ") IS TRUE" in sql
    for generic in (False, True):
        shown = plan(db, sql + " LIMIT 21", params, generic=generic)
        assert "_trgm" not in shown, shown
