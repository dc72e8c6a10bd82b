"""Searching the audit log: filters, keyset pagination (newest first) and CSV export.

Pages are cut by id (``before=<id>`` for older, ``after=<id>`` for newer), never by
OFFSET, so page 2,000 of a 100,000-row log costs what page 1 costs: SQLite seeks
into the rowid or into ``idx_audit_user`` / ``idx_audit_action`` (both end in
``id``) and reads one page of rows. Ids grow with time, so "by id" is "newest first".
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from urllib.parse import urlencode

from .. import audit
from ..db import filter_only, fts5_search, id_in, ilike, unindexed
from . import MAX_ID, N_, parse_id, text_search
from .users import like_escape

PER_PAGE = 50
MAX_TEXT = 200
CSV_BATCH = 1000
CSV_COLUMNS = ("id", "time", "user", "action", "target_type", "target_id", "details", "ip")
# Spreadsheets run a cell starting with one of these as a formula (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

# Target types that have a page of their own, and the table that says whether the
# target still exists.
TARGET_TABLES = {
    "request": "image_requests",
    "build": "builds",
    "image": "images",
    "deployment": "deployments",
    "user": "users",
    "alert": "alerts",
}


@dataclass(frozen=True)
class AuditFilters:
    user: str = ""
    action: str = ""
    q: str = ""
    date_from: str = ""
    date_to: str = ""
    target_type: str = ""
    target_id: int | None = None

    def query_args(self) -> dict:
        """The filters as URL query parameters (the names the form uses)."""
        names = {"date_from": "from", "date_to": "to"}
        return {names.get(key, key): value for key, value in asdict(self).items() if value not in (None, "")}

    @property
    def active(self) -> bool:
        return bool(self.query_args())


@dataclass
class AuditPage:
    items: list
    has_older: bool
    has_newer: bool
    filters: AuditFilters
    older_from: int | None = None  # where the older page starts when it is not the last row

    @property
    def older_cursor(self) -> int | None:
        if self.has_older and self.older_from is not None:
            return self.older_from
        return self.items[-1]["id"] if self.items and self.has_older else None

    @property
    def newer_cursor(self) -> int | None:
        return self.items[0]["id"] if self.items and self.has_newer else None


def parse_cursor(raw) -> int | None:
    """A page cursor from the query string; anything odd counts as "no cursor"."""
    return parse_id(raw)


def _parse_date(raw: str) -> date | None:
    try:
        return date.fromisoformat(raw)
    except ValueError:
        return None


def parse_filters(args) -> tuple[AuditFilters, dict[str, str]]:
    """Read the filters from a mapping of query parameters. Returns the filters and
    a dict of field errors (English source text); the caller shows them and must not
    run the search when there are any."""
    errors: dict[str, str] = {}
    get = lambda name: (args.get(name) or "").strip()  # noqa: E731
    user = get("user").lower()[:64]
    action = get("action")
    if action and action not in audit.ACTIONS:
        errors["action"] = N_("Unknown action.")
    q = get("q")
    if len(q) > MAX_TEXT:
        errors["q"] = N_("At most 200 characters.")
    date_from, date_to = get("from"), get("to")
    start = end = None
    if date_from and (start := _parse_date(date_from)) is None:
        errors["from"] = N_("Use the YYYY-MM-DD format.")
    if date_to and (end := _parse_date(date_to)) is None:
        errors["to"] = N_("Use the YYYY-MM-DD format.")
    if start and end and end < start:
        errors["to"] = N_("The end date is before the start date.")
    target_type = get("target_type")
    if target_type and target_type not in audit.TARGET_TYPES:
        errors["target_type"] = N_("Unknown target type.")
    target_id = None
    if get("target_id"):
        target_id = parse_cursor(get("target_id"))
        if target_id is None:
            errors["target_id"] = N_("Enter a positive whole number.")
    filters = AuditFilters(
        user=user,
        action=action,
        q=q,
        date_from=start.isoformat() if start else date_from,
        date_to=end.isoformat() if end else date_to,
        target_type=target_type,
        target_id=target_id,
    )
    return filters, errors


# PostgreSQL reads the ids its trigram index found in batches of this many, nearest
# to the cursor first: a page rarely needs more than the first batch.
ID_BATCH = 1_000

# Text shorter than a trigram cannot use the search index: such a search reads at
# most this many ids per page (older pages continue below the window).
SHORT_TEXT_WINDOW = 20_000


@dataclass(frozen=True)
class IdRange:
    """The ids a page may read: ``low <= id <= high`` (both inclusive)."""

    low: int = 1
    high: int = MAX_ID

    @property
    def empty(self) -> bool:
        return self.low > self.high


def text_source(q: str, db=None) -> tuple[str, str, list[str], list]:
    """How the details text filter runs, as ``(from, key, clauses, params)``: the FROM
    item (audit rows as ``a``), the id column to seek and order by, and WHERE clauses.

    Text of three characters or more goes through the FTS5 trigram table
    ``audit_fts`` (see :mod:`.text_search`), walked newest first; every candidate is
    re-checked with the literal, escaped LIKE, so results equal a plain LIKE over the
    table. Shorter text walks the rowid with the LIKE alone (see
    :data:`SHORT_TEXT_WINDOW`). On PostgreSQL this is the plain ILIKE (what tests
    compare with); pages read through :func:`_postgres_rows` instead."""
    like = [f"a.details {ilike(db)} ? ESCAPE '\\'"], ["%" + like_escape(q) + "%"]
    if not text_search.indexable(q) or not fts5_search(db):
        return "audit_log a", "a.id", *like
    # CROSS JOIN keeps the index as the outer loop: it yields ids newest first.
    return (
        "audit_fts f CROSS JOIN audit_log a ON a.id = f.rowid",
        "f.rowid",
        ["f.audit_fts MATCH ?", *like[0]],
        [text_search.phrase(q), *like[1]],
    )


def where_clause(filters: AuditFilters, db=None) -> tuple[str, list]:
    """The WHERE fragment (over ``audit_log AS a``) for validated filters, the text
    filter aside (see :func:`text_source`)."""
    clauses, params = [], []
    if filters.user:
        # A scalar subquery runs once, and ``user_id = <value>`` seeks idx_audit_user.
        clauses.append("a.user_id = (SELECT id FROM users WHERE username = ?)")
        params.append(filters.user)
    if filters.action:
        clauses.append("a.action = ?")
        params.append(filters.action)
    if filters.target_type:
        if filters.target_id is not None:
            clauses.append("a.target_type = ? AND a.target_id = ?")
            params += [filters.target_type, filters.target_id]
        else:
            # Unary plus: walk the rowid newest first and filter, instead of reading
            # every row of a common type through idx_audit_target and sorting them.
            clauses.append(f"{unindexed(db, 'a.target_type')} = ?")
            params.append(filters.target_type)
    # Dates are exact here (unary plus: a filter, not an index choice); the page is
    # limited to their ids by :func:`date_ids`, found through idx_audit_created.
    start, end = _date_limits(filters)
    if start:
        clauses.append(f"{unindexed(db, 'a.created_at')} >= ?")
        params.append(start)
    if end:
        clauses.append(f"{unindexed(db, 'a.created_at')} < ?")
        params.append(end)
    return (" AND ".join(clauses) or "1 = 1"), params


def _date_limits(filters: AuditFilters) -> tuple[str | None, str | None]:
    start = f"{filters.date_from}T00:00:00Z" if filters.date_from else None
    end = None
    if filters.date_to:
        end = f"{(date.fromisoformat(filters.date_to) + timedelta(days=1)).isoformat()}T00:00:00Z"
    return start, end


def date_ids(db: sqlite3.Connection, filters: AuditFilters) -> IdRange:
    """The ids of the rows in the date range: two seeks in idx_audit_created (the
    first and the last row of the range). Audit rows are appended with the time they
    are written, so ids grow with ``created_at`` and the rows of a range lie between
    those two ids; the page still checks each row's date."""
    start, end = _date_limits(filters)
    low, high = 1, MAX_ID
    if start:
        row = db.execute(
            "SELECT id FROM audit_log WHERE created_at >= ? ORDER BY created_at, id LIMIT 1", (start,)
        ).fetchone()
        low = row[0] if row else MAX_ID
    if end:
        row = db.execute(
            "SELECT id FROM audit_log WHERE created_at < ? ORDER BY created_at DESC, id DESC LIMIT 1", (end,)
        ).fetchone()
        high = row[0] if row else 0
    return IdRange(low, high)


SELECT_COLUMNS = (
    "a.id, a.created_at, a.user_id, u.username, a.action, a.target_type, a.target_id, a.details, a.ip"
)


def _query(
    filters: AuditFilters,
    columns: str,
    ids: IdRange,
    *,
    older: bool,
    cursor: int,
    limit: int,
    db=None,
    text: tuple | None = None,
) -> tuple[str, list]:
    """Rows matching ``filters`` older (id < cursor, newest first) or newer (id >
    cursor, oldest first) than ``cursor``, within ``ids``. ``text`` replaces
    :func:`text_source`'s spelling of the text filter."""
    if text is None:
        text = text_source(filters.q, db) if filters.q else ("audit_log a", "a.id", [], [])
    source, key, clauses, params = text
    where, where_params = where_clause(filters, db)
    # The cursor folds into one id range: SQLite seeks with a single pair of bounds.
    if older:
        low, high, order = ids.low, min(ids.high, cursor - 1), "DESC"
    else:
        low, high, order = max(ids.low, cursor + 1), ids.high, "ASC"
    joins = " LEFT JOIN users u ON u.id = a.user_id" if "u." in columns else ""
    sql = (
        f"SELECT {columns} FROM {source}{joins} WHERE {' AND '.join([*clauses, where])} "
        f"AND {key} BETWEEN ? AND ? ORDER BY {key} {order} LIMIT ?"
    )
    return sql, [*params, *where_params, low, high, limit]


def search_sql(
    filters: AuditFilters,
    *,
    before: int | None = None,
    after: int | None = None,
    limit: int = PER_PAGE + 1,
    ids: IdRange = IdRange(),
    db=None,
) -> tuple[str, list]:
    """The page query, spelled for ``db``'s database (SQLite without it). Exposed so
    tests can EXPLAIN exactly what the page runs."""
    if after is not None:
        return _query(filters, SELECT_COLUMNS, ids, older=False, cursor=after, limit=limit, db=db)
    # The first page is "before infinity": the same seek as every other page.
    return _query(
        filters,
        SELECT_COLUMNS,
        ids,
        older=True,
        cursor=before if before is not None else MAX_ID,
        limit=limit,
        db=db,
    )


def _rows(
    db: sqlite3.Connection,
    filters: AuditFilters,
    columns: str,
    ids: IdRange,
    *,
    older: bool,
    cursor: int,
    limit: int,
) -> list:
    """Run :func:`_query`: at most ``limit`` matching rows next to ``cursor``."""
    if filters.q and text_search.indexable(filters.q) and not fts5_search(db):
        return _postgres_rows(db, filters, columns, ids, older=older, cursor=cursor, limit=limit)
    sql, params = _query(filters, columns, ids, older=older, cursor=cursor, limit=limit, db=db)
    return db.execute(sql, params).fetchall()


def _postgres_rows(db, filters: AuditFilters, columns: str, ids: IdRange, *, older, cursor, limit) -> list:
    """:func:`_rows` for indexable text on PostgreSQL, in the order
    :data:`.text_search.RECENT_IDS` describes: walk the ids next to the cursor, then
    read the matching ids beyond them through idx_audit_details_trgm, or, when the
    text is common there too, walk on. Every walk covers a bounded range of ids (the
    planner, whatever it guesses for the text, reads such a range through the primary
    key), and finds ids only; one last query reads the rows of the ids found."""
    if older:
        newest = db.execute("SELECT MAX(id) FROM audit_log").fetchone()[0] or 0
        span = IdRange(ids.low, min(ids.high, cursor - 1, newest))
    else:
        span = IdRange(max(ids.low, cursor + 1), ids.high)
    pattern = "%" + like_escape(filters.q) + "%"
    walk = ("audit_log a", "a.id", [filter_only(db, f"a.details {ilike(db)} ? ESCAPE '\\'")], [pattern])

    def matching(part: IdRange, text: tuple, count: int) -> list[int]:
        # The part's bounds as the cursor: _query folds them back into the same range.
        edge = part.high + 1 if older else part.low - 1
        sql, params = _query(filters, "a.id", part, older=older, cursor=edge, limit=count, db=db, text=text)
        return [row[0] for row in db.execute(sql, params)]

    def by_id(found: list[int]) -> tuple:
        clause, params = id_in(db, "a.id", found)
        return ("audit_log a", "a.id", [clause, f"a.details {ilike(db)} ? ESCAPE '\\'"], [*params, pattern])

    found: list[int] = []
    size, probed = text_search.RECENT_IDS, False
    while not span.empty and len(found) < limit:
        if older:
            part, span = (
                IdRange(max(span.low, span.high - size + 1), span.high),
                IdRange(span.low, span.high - size),
            )
        else:
            part, span = (
                IdRange(span.low, min(span.high, span.low + size - 1)),
                IdRange(span.low + size, span.high),
            )
        found += matching(part, walk, limit - len(found))
        if len(found) >= limit or span.empty or probed:
            size *= 2
            continue
        probed = True
        few = text_search.matching_ids(db, "audit_fts", filters.q, text_search.SELECTIVE_MATCHES)
        if few is not None:  # few beyond: read them by id (and check each again, as everywhere)
            nearest = sorted((i for i in few if span.low <= i <= span.high), reverse=older)
            for start in range(0, len(nearest), ID_BATCH):
                batch = nearest[start : start + ID_BATCH]
                part = IdRange(min(batch), max(batch))
                found += matching(part, by_id(batch), limit - len(found))
                if len(found) >= limit:
                    break
            break
    if not found:
        return []
    sql, params = _query(
        filters, columns, ids, older=older, cursor=cursor, limit=limit, db=db, text=by_id(found)
    )
    return db.execute(sql, params).fetchall()


def _short_text(filters: AuditFilters) -> bool:
    return bool(filters.q) and not text_search.indexable(filters.q)


def _window(
    db: sqlite3.Connection, filters: AuditFilters, ids: IdRange, cursor: int, *, older: bool
) -> IdRange:
    """``ids``, cut to SHORT_TEXT_WINDOW ids next to ``cursor`` for a short text."""
    if not _short_text(filters):
        return ids
    if older:
        if cursor >= ids.high:  # the first page: the window ends at the newest row
            newest = db.execute("SELECT MAX(id) FROM audit_log").fetchone()[0] or 0
            cursor = min(cursor, ids.high + 1, newest + 1)
        return IdRange(max(ids.low, cursor - SHORT_TEXT_WINDOW), ids.high)
    return IdRange(ids.low, min(ids.high, cursor + SHORT_TEXT_WINDOW))


def _any_beyond(
    db: sqlite3.Connection, filters: AuditFilters, ids: IdRange, cursor: int, *, older: bool
) -> bool:
    """Is there a matching row older (id < cursor) or newer (id > cursor)? For a
    short text, "maybe" (ids beyond the window) counts as yes."""
    window = _window(db, filters, ids, cursor, older=older)
    if _rows(db, filters, "1", window, older=older, cursor=cursor, limit=1):
        return True
    beyond = window.low > ids.low if older else window.high < ids.high
    return beyond and _rows_beyond(db, window, older=older)


def _rows_beyond(db: sqlite3.Connection, window: IdRange, *, older: bool) -> bool:
    if older:
        return (
            db.execute("SELECT 1 FROM audit_log WHERE id < ? LIMIT 1", (window.low,)).fetchone() is not None
        )
    return db.execute("SELECT 1 FROM audit_log WHERE id > ? LIMIT 1", (window.high,)).fetchone() is not None


def search(
    db: sqlite3.Connection,
    filters: AuditFilters,
    *,
    before: int | None = None,
    after: int | None = None,
    per_page: int = PER_PAGE,
) -> AuditPage:
    """One page of matching rows, newest first. ``before`` gives the page older than
    that id, ``after`` the page newer than it; neither gives the newest page."""
    ids = date_ids(db, filters) if filters.date_from or filters.date_to else IdRange()
    if after is not None:
        window = _window(db, filters, ids, after, older=False)
        rows = _rows(db, filters, SELECT_COLUMNS, window, older=False, cursor=after, limit=per_page + 1)
        items = list(reversed(rows[:per_page]))
        if not items:  # nothing newer than the cursor: show the newest page instead
            return search(db, filters, per_page=per_page)
        has_newer = len(rows) > per_page or (
            _short_text(filters) and _any_beyond(db, filters, ids, items[0]["id"], older=False)
        )
        has_older = _any_beyond(db, filters, ids, items[-1]["id"], older=True)
        return AuditPage(items, has_older, has_newer, filters)
    cursor = before if before is not None else MAX_ID
    window = _window(db, filters, ids, cursor, older=True)
    rows = _rows(db, filters, SELECT_COLUMNS, window, older=True, cursor=cursor, limit=per_page + 1)
    items = rows[:per_page]
    if len(rows) > per_page:
        has_older = True
    elif window.low > ids.low and _rows_beyond(db, window, older=True):
        # A short text read one window: the next page goes on below it.
        return AuditPage(
            items,
            True,
            before is not None
            and _any_beyond(db, filters, ids, items[0]["id"] if items else cursor - 1, older=False),
            filters,
            older_from=window.low,
        )
    else:
        has_older = False
    has_newer = before is not None and _any_beyond(
        db, filters, ids, items[0]["id"] if items else before - 1, older=False
    )
    return AuditPage(items, has_older, has_newer, filters)


def existing_targets(db: sqlite3.Connection, pairs) -> dict[tuple[str, int], str | None]:
    """Which of the ``(target_type, target_id)`` pairs still exist: one query per
    target type, whatever the number of rows. Maps each existing pair to a label
    (the username for users, else None)."""
    wanted: dict[str, set[int]] = {}
    for target_type, target_id in pairs:
        if target_type in TARGET_TABLES and target_id is not None:
            wanted.setdefault(target_type, set()).add(int(target_id))
    found: dict[tuple[str, int], str | None] = {}
    for target_type, ids in wanted.items():
        table = TARGET_TABLES[target_type]  # from the fixed map above, never from input
        label = "username" if target_type == "user" else "NULL"
        marks = ", ".join("?" * len(ids))
        for row in db.execute(f"SELECT id, {label} AS label FROM {table} WHERE id IN ({marks})", sorted(ids)):
            found[(target_type, row["id"])] = row["label"]
    return found


def target_path(target_type: str | None, target_id: int | None, label: str | None = None) -> str | None:
    """The page of a target (the spec's URLs), or None when it has none."""
    if target_id is None:
        return None
    if target_type == "user":
        return "/admin/users?" + urlencode({"q": label}) if label else "/admin/users"
    if target_type == "alert":
        return "/alerts"
    if target_type in ("request", "build", "image", "deployment"):
        return f"/{target_type}s/{int(target_id)}"
    return None


class TargetLinks(dict):
    """``(target_type, target_id) -> path``; ``names`` maps the same pairs to a name
    to show instead of the id (a user's login)."""

    def __init__(self):
        super().__init__()
        self.names: dict[tuple[str, int], str] = {}


def target_links(db: sqlite3.Connection, rows) -> TargetLinks:
    """Links to the targets of ``rows`` (audit rows or alerts: ``target_type`` and
    ``target_id``) that still exist, one query per type."""
    found = existing_targets(db, [(r["target_type"], r["target_id"]) for r in rows])
    links = TargetLinks()
    for (target_type, target_id), label in found.items():
        path = target_path(target_type, target_id, label)
        if path:
            links[(target_type, target_id)] = path
        if label:
            links.names[(target_type, target_id)] = label
    return links


def format_details(details: str | None) -> str:
    """Details are stored as JSON objects; show them as ``key: value`` pairs."""
    if not details:
        return ""
    try:
        value = json.loads(details)
    except ValueError:
        return details
    if isinstance(value, dict):
        return ", ".join(f"{key}: {_plain(item)}" for key, item in value.items())
    return _plain(value)


def _plain(value) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return "—" if value is None else str(value)


# --- CSV ------------------------------------------------------------------------


def csv_safe(value) -> str:
    """A cell a spreadsheet will show as text, never run as a formula."""
    if value is None:
        return ""
    text = str(value)
    if text.startswith(FORMULA_PREFIXES):
        return "'" + text
    return text


def iter_csv(db: sqlite3.Connection, filters: AuditFilters, *, batch: int = CSV_BATCH):
    """The filtered log as CSV text chunks, newest first. Reads in keyset batches so
    no cursor (and no read transaction) stays open while the client downloads."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    # A BOM so spreadsheet programs read the Cyrillic in details as UTF-8.
    buffer.write("\ufeff")
    writer.writerow(CSV_COLUMNS)
    ids = date_ids(db, filters) if filters.date_from or filters.date_to else IdRange()
    before = MAX_ID
    while True:
        rows = _rows(db, filters, SELECT_COLUMNS, ids, older=True, cursor=before, limit=batch)
        for row in rows:
            writer.writerow(
                [
                    row["id"],
                    row["created_at"],
                    csv_safe(row["username"]),
                    row["action"],
                    row["target_type"] or "",
                    "" if row["target_id"] is None else row["target_id"],
                    csv_safe(row["details"]),
                    csv_safe(row["ip"]),
                ]
            )
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        if len(rows) < batch:
            return
        before = rows[-1]["id"]
