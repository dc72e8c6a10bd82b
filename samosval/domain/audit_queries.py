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
from . import N_
from .users import like_escape

PER_PAGE = 50
MAX_ID = 2 ** 63 - 1
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
        return {names.get(key, key): value for key, value in asdict(self).items()
                if value not in (None, "")}

    @property
    def active(self) -> bool:
        return bool(self.query_args())


@dataclass
class AuditPage:
    items: list
    has_older: bool
    has_newer: bool
    filters: AuditFilters

    @property
    def older_cursor(self) -> int | None:
        return self.items[-1]["id"] if self.items and self.has_older else None

    @property
    def newer_cursor(self) -> int | None:
        return self.items[0]["id"] if self.items and self.has_newer else None


def parse_cursor(raw) -> int | None:
    """A page cursor from the query string; anything odd counts as "no cursor"."""
    try:
        value = int(str(raw).strip())
    except (TypeError, ValueError):
        return None
    return value if 0 < value <= MAX_ID else None


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
    filters = AuditFilters(user=user, action=action, q=q,
                           date_from=start.isoformat() if start else date_from,
                           date_to=end.isoformat() if end else date_to,
                           target_type=target_type, target_id=target_id)
    return filters, errors


def where_clause(filters: AuditFilters) -> tuple[str, list]:
    """The WHERE fragment (over ``audit_log AS a``) for validated filters."""
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
            clauses.append("+a.target_type = ?")
            params.append(filters.target_type)
    if filters.q:
        clauses.append("a.details LIKE ? ESCAPE '\\'")
        params.append("%" + like_escape(filters.q) + "%")
    # Dates filter the rows read in id order (again unary plus): a wide range through
    # idx_audit_created would mean sorting all of it to find the newest 50.
    if filters.date_from:
        clauses.append("+a.created_at >= ?")
        params.append(f"{filters.date_from}T00:00:00Z")
    if filters.date_to:
        next_day = date.fromisoformat(filters.date_to) + timedelta(days=1)
        clauses.append("+a.created_at < ?")
        params.append(f"{next_day.isoformat()}T00:00:00Z")
    return (" AND ".join(clauses) or "1 = 1"), params


SELECT_COLUMNS = ("a.id, a.created_at, a.user_id, u.username, a.action, a.target_type, "
                  "a.target_id, a.details, a.ip")


def search_sql(filters: AuditFilters, *, before: int | None = None, after: int | None = None,
               limit: int = PER_PAGE + 1) -> tuple[str, list]:
    """The page query. Exposed so tests can EXPLAIN exactly what the page runs."""
    where, params = where_clause(filters)
    if after is not None:
        keyset, order, cursor = "a.id > ?", "ASC", after
    else:
        # The first page is "before infinity": the same seek as every other page.
        keyset, order, cursor = "a.id < ?", "DESC", before if before is not None else MAX_ID
    sql = (f"SELECT {SELECT_COLUMNS} FROM audit_log a LEFT JOIN users u ON u.id = a.user_id "
           f"WHERE {where} AND {keyset} ORDER BY a.id {order} LIMIT ?")
    return sql, [*params, cursor, limit]


def _any_beyond(db: sqlite3.Connection, filters: AuditFilters, cursor: int, *, older: bool) -> bool:
    """Is there a matching row older (id < cursor) or newer (id > cursor)?"""
    where, params = where_clause(filters)
    keyset, order = ("a.id < ?", "DESC") if older else ("a.id > ?", "ASC")
    return db.execute(f"SELECT 1 FROM audit_log a WHERE {where} AND {keyset} "
                      f"ORDER BY a.id {order} LIMIT 1", [*params, cursor]).fetchone() is not None


def search(db: sqlite3.Connection, filters: AuditFilters, *, before: int | None = None,
           after: int | None = None, per_page: int = PER_PAGE) -> AuditPage:
    """One page of matching rows, newest first. ``before`` gives the page older than
    that id, ``after`` the page newer than it; neither gives the newest page."""
    if after is not None:
        sql, params = search_sql(filters, after=after, limit=per_page + 1)
        rows = db.execute(sql, params).fetchall()
        has_newer = len(rows) > per_page
        items = list(reversed(rows[:per_page]))
        has_older = bool(items) and _any_beyond(db, filters, items[-1]["id"], older=True)
        if not items:  # nothing newer than the cursor: show the newest page instead
            return search(db, filters, per_page=per_page)
        return AuditPage(items, has_older, has_newer, filters)
    sql, params = search_sql(filters, before=before, limit=per_page + 1)
    rows = db.execute(sql, params).fetchall()
    items = rows[:per_page]
    has_older = len(rows) > per_page
    has_newer = before is not None and _any_beyond(
        db, filters, items[0]["id"] if items else before - 1, older=False)
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
        for row in db.execute(f"SELECT id, {label} AS label FROM {table} WHERE id IN ({marks})",
                              sorted(ids)):
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
    before = None
    while True:
        sql, params = search_sql(filters, before=before, limit=batch)
        rows = db.execute(sql, params).fetchall()
        for row in rows:
            writer.writerow([row["id"], row["created_at"], csv_safe(row["username"]),
                             row["action"], row["target_type"] or "",
                             "" if row["target_id"] is None else row["target_id"],
                             csv_safe(row["details"]), csv_safe(row["ip"])])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        if len(rows) < batch:
            return
        before = rows[-1]["id"]
