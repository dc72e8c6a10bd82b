"""Images: the result of a successful build."""
from __future__ import annotations

import sqlite3


def get_image(db: sqlite3.Connection, image_id: int):
    """An image with the visibility columns of its request joined in."""
    return db.execute(
        "SELECT i.*, r.owner_id, r.created_by, r.collaborators, r.update_mode, "
        "r.repo_url, r.repo_branch, r.status AS request_status "
        "FROM images i JOIN image_requests r ON r.id = i.request_id WHERE i.id = ?",
        (image_id,),
    ).fetchone()
