"""Image requests: lookups, validation, status flow, Dockerfile generation."""
from __future__ import annotations

import sqlite3

REQUEST_STATUSES = ("draft", "submitted", "in_review", "approved", "rejected")
UPDATE_MODES = ("continuous", "static")


def get_request(db: sqlite3.Connection, request_id: int):
    return db.execute(
        "SELECT r.*, o.username AS owner_username, c.username AS creator_username "
        "FROM image_requests r JOIN users o ON o.id = r.owner_id "
        "JOIN users c ON c.id = r.created_by WHERE r.id = ?",
        (request_id,),
    ).fetchone()
