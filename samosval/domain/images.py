"""Images: the result of a successful build.

Rebuilding the same version gives a second image with the same ``image_tag``;
each carries its own digest and build number, and the newest one of a tag is
the one with the highest id.
"""

from __future__ import annotations

import sqlite3

from .. import permissions
from ..db import ilike
from ..timeutil import utcnow_iso
from .users import like_escape


def get_image(db: sqlite3.Connection, image_id: int):
    """An image with the visibility columns of its request joined in."""
    return db.execute(
        "SELECT i.*, r.owner_id, r.created_by, r.collaborators, r.update_mode, "
        "r.repo_url, r.repo_branch, r.status AS request_status "
        "FROM images i JOIN image_requests r ON r.id = i.request_id WHERE i.id = ?",
        (image_id,),
    ).fetchone()


def create_image(db: sqlite3.Connection, build, *, digest: str, now: float) -> int:
    """Insert the image of a successful ``build`` (call inside the build's transaction).
    ``build_number`` is the build's ordinal among its request's builds."""
    name, version = build["image_name"], build["version_tag"]
    number = db.execute(
        "SELECT COUNT(*) FROM builds WHERE request_id = ? AND id <= ?", (build["request_id"], build["id"])
    ).fetchone()[0]
    return db.execute(
        "INSERT INTO images (request_id, name, version, image_tag, created_at, digest, build_number) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (build["request_id"], name, version, f"{name}:{version}", utcnow_iso(now), digest, number),
    ).lastrowid


def newest_visible_sql(user, tag_sql: str) -> tuple[str, list]:
    """A subquery: the id of the newest image of the tag ``tag_sql`` names, among the
    images ``user`` may see. A newer build by another team (same name and version) is
    not theirs to know of, nor to follow: pages and lists mark "newest" by this."""
    where, params = permissions.visible_requests_sql(user, "newest_r")
    return (
        "(SELECT MAX(newest_i.id) FROM images newest_i JOIN image_requests newest_r "
        f"ON newest_r.id = newest_i.request_id WHERE newest_i.image_tag = {tag_sql} AND {where})",
        params,
    )


def newest_image_id(db: sqlite3.Connection, image_tag: str, user) -> int | None:
    newest, params = newest_visible_sql(user, "?")
    return db.execute(f"SELECT {newest}", [image_tag, *params]).fetchone()[0]


def build_of_image(db: sqlite3.Connection, image_id: int):
    return db.execute(
        "SELECT id, status, commit_sha FROM builds WHERE image_id = ? ORDER BY id DESC LIMIT 1", (image_id,)
    ).fetchone()


def images_of_request(db: sqlite3.Connection, request_id: int, user, limit: int = 20):
    newest, params = newest_visible_sql(user, "i.image_tag")
    return db.execute(
        f"SELECT i.*, i.id = {newest} AS is_newest, "
        "(SELECT COUNT(*) FROM deployments d WHERE d.image_id = i.id) AS deployment_count "
        "FROM images i WHERE i.request_id = ? ORDER BY i.id DESC LIMIT ?",
        [*params, request_id, limit],
    ).fetchall()


def deployments_of_image(db: sqlite3.Connection, image_id: int):
    return db.execute(
        "SELECT id, name, environment, status, replicas, ports, stopped_by_operator, needs_restart, "
        "updated_at FROM deployments WHERE image_id = ? ORDER BY id DESC",
        (image_id,),
    ).fetchall()


def list_images_sql(user, q: str = "", db=None) -> tuple[str, list]:
    """The images ``user`` may see, newest first, each row knowing the newest image of
    its tag that the user may see (as the detail page does). Per-row subqueries
    through idx_images_tag, not a window over every image: only the page's rows are
    computed (a window read all 2,000 images per page view). ``db`` only picks the
    database's spelling of the tag search."""
    newest, params = newest_visible_sql(user, "i.image_tag")
    where, where_params = permissions.visible_requests_sql(user, "r")
    sql = (
        f"SELECT i.*, r.image_name, {newest} AS newest_id, "
        "(SELECT COUNT(*) FROM deployments d WHERE d.image_id = i.id) AS deployment_count "
        f"FROM images i JOIN image_requests r ON r.id = i.request_id WHERE {where}"
    )
    params = [*params, *where_params]
    if q:
        sql += f" AND i.image_tag {ilike(db)} ? ESCAPE '\\'"
        params.append("%" + like_escape(q) + "%")
    return f"{sql} ORDER BY i.id DESC", params
