"""Builds: lookups and the rules of a build's life."""
from __future__ import annotations

import sqlite3

BUILD_STATUSES = ("queued", "building", "success", "failed", "cancelled")
ACTIVE_BUILD_STATUSES = ("queued", "building")


def get_build(db: sqlite3.Connection, build_id: int):
    """A build with the visibility columns of its request joined in."""
    return db.execute(
        "SELECT b.*, r.owner_id, r.created_by, r.collaborators, r.image_name, "
        "r.version_tag, r.status AS request_status, u.username AS built_by_username "
        "FROM builds b JOIN image_requests r ON r.id = b.request_id "
        "JOIN users u ON u.id = b.built_by WHERE b.id = ?",
        (build_id,),
    ).fetchone()
