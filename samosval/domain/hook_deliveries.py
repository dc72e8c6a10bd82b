"""The deliveries page: every call of the commit hook, newest first."""

from __future__ import annotations

import json

from .hook_parsing import SOURCES

OUTCOMES = ("processed", "no_match", "duplicate", "ignored", "pong", "refused", "invalid")


def list_deliveries_sql(outcome: str | None = None, source: str | None = None) -> tuple[str, list]:
    where, params = [], []
    if outcome in OUTCOMES:
        where.append("d.outcome = ?")
        params.append(outcome)
    if source in SOURCES:
        where.append("d.source = ?")
        params.append(source)
    sql = (
        "SELECT d.*, u.username, t.name AS token_name, t.token_prefix "
        "FROM webhook_deliveries d LEFT JOIN users u ON u.id = d.user_id "
        "LEFT JOIN webhook_tokens t ON t.id = d.token_id "
        + (("WHERE " + " AND ".join(where) + " ") if where else "")
        + "ORDER BY d.id DESC"
    )
    return sql, params


def id_list(value: str | None) -> list[int]:
    try:
        ids = json.loads(value or "[]")
    except ValueError:
        return []
    return [i for i in ids if isinstance(i, int)] if isinstance(ids, list) else []
