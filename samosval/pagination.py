"""Bounded offset pagination without COUNT(*): fetch one row more than a page to
know whether another page exists. Deep pages are capped so a crafted ``page=``
never makes SQLite walk a whole large table."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

MAX_PAGE = 1000


@dataclass
class Page:
    items: list
    number: int
    per_page: int
    has_next: bool
    args: dict = field(default_factory=dict)

    @property
    def has_prev(self) -> bool:
        return self.number > 1

    def args_for(self, number: int) -> dict:
        """Query arguments for another page, keeping the current filters."""
        return {**{k: v for k, v in self.args.items() if v not in (None, "")}, "page": number}


def page_number(raw) -> int:
    try:
        number = int(raw)
    except (TypeError, ValueError):
        return 1
    return min(max(number, 1), MAX_PAGE)


def paginate(
    db: sqlite3.Connection, sql: str, params, number: int, per_page: int, args: dict | None = None
) -> Page:
    """``sql`` must be a complete SELECT with its ORDER BY and no LIMIT."""
    rows = db.execute(f"{sql} LIMIT ? OFFSET ?", [*params, per_page + 1, (number - 1) * per_page]).fetchall()
    return Page(
        items=rows[:per_page],
        number=number,
        per_page=per_page,
        has_next=len(rows) > per_page,
        args=dict(args or {}),
    )
