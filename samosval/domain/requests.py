"""Image requests: lookups, validation, status flow, Dockerfile generation.

The functions here take a connection, the acting user (anything with ``id``,
``username``, ``role`` and ``is_authenticated``) and plain values. Routes, JSON
endpoints and tests call the same ones; permission questions go to ``access``.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3

from .. import audit, permissions
from ..db import filter_only, fts5_search, id_in, ilike, transaction
from ..timeutil import utcnow_iso
from . import N_, Refused, ValidationError, text_search
from .repos import is_valid_branch_name, normalize_repo_url, split_logins
from .users import like_escape

REQUEST_STATUSES = ("draft", "submitted", "in_review", "approved", "rejected")
UPDATE_MODES = ("continuous", "static")

# Form fields, named as the spec's columns (``owner`` takes a login, stored as owner_id).
FORM_FIELDS = (
    "image_name",
    "repo_url",
    "repo_branch",
    "update_mode",
    "target_commit",
    "base_image",
    "run_commands",
    "entrypoint",
    "ram_mb",
    "vcpu",
    "version_tag",
    "collaborators",
    "owner",
)

# Every move the flow allows, whoever makes it. Staff may make any of them;
# the creator or owner only draft → submitted and rejected → draft (see may_transition).
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "draft": ("submitted",),
    "submitted": ("in_review", "approved", "rejected", "draft"),
    "in_review": ("approved", "rejected", "submitted", "draft"),
    "approved": ("draft",),  # an approved request is built next; rework goes back to draft
    "rejected": ("in_review", "draft"),
}

# Deployments in these states run (or will run again) an image of the request,
# so a new base image means they need a restart.
RESTARTABLE_DEPLOYMENT_STATUSES = ("running", "deploying", "stopped", "failed")

RAM_MB_MAX = 65536
VCPU_MAX = 64
MAX_RUN_LINES = 100

IMAGE_NAME_RE = re.compile(r"^[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*$")
COMMIT_RE = re.compile(r"^[0-9a-fA-F]{7,40}$")
BASE_IMAGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]*$")
VERSION_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")
HTTP_SSH_URL_RE = re.compile(r"^(?:https?|ssh)://", re.IGNORECASE)
SCP_URL_RE = re.compile(r"^[\w.+-]+@[\w.-]+:(?!//)\S+$")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")

LIMITS = {
    "image_name": 128,
    "repo_url": 500,
    "repo_branch": 200,
    "base_image": 200,
    "entrypoint": 500,
    "version_tag": 128,
    "run_commands": 10000,
    "collaborators": 2000,
    "owner": 64,
    "target_commit": 40,
}

# Columns compared on edit, and those whose old/new values go into the audit row
# (run_commands can be long: only its name is recorded).
EDITABLE_COLUMNS = (
    "image_name",
    "repo_url",
    "repo_branch",
    "update_mode",
    "target_commit",
    "base_image",
    "run_commands",
    "entrypoint",
    "ram_mb",
    "vcpu",
    "version_tag",
    "collaborators",
    "owner_id",
)
AUDITED_VALUES = tuple(c for c in EDITABLE_COLUMNS if c != "run_commands")

HISTORY_ACTIONS = ("request_create", "request_submit", "request_status")


# --- lookups -------------------------------------------------------------------


def get_request(db: sqlite3.Connection, request_id: int):
    return db.execute(
        "SELECT r.*, o.username AS owner_username, c.username AS creator_username "
        "FROM image_requests r JOIN users o ON o.id = r.owner_id "
        "JOIN users c ON c.id = r.created_by WHERE r.id = ?",
        (request_id,),
    ).fetchone()


def list_requests_query(
    user,
    *,
    status: str | None = None,
    owner: str | None = None,
    q: str | None = None,
    mine: bool = False,
    db: sqlite3.Connection | None = None,
) -> tuple[str, list]:
    """The list page's SELECT (newest first, no LIMIT) limited to what ``user`` sees.
    With ``db``, text that few requests hold is looked up in the trigram index first
    (see :mod:`.text_search`); common text, like short text, is checked row by row
    while walking the page's order, which meets a page of matches soon (on PostgreSQL
    spelled so that its planner cannot pick the trigram index by a guess)."""
    where, params = permissions.visible_requests_sql(user, "r")
    clauses = [where]
    if status in REQUEST_STATUSES:
        clauses.append("r.status = ?")
        params.append(status)
    if owner:
        clauses.append("o.username = ?")
        params.append(owner.strip().lower())
    if q:
        text = q.strip()
        ids = text_search.matching_ids(db, "request_fts", text) if db is not None else None
        if ids is not None:
            clause, id_params = id_in(db, "r.id", ids)
            clauses.append(clause)
            params += id_params
        pattern = "%" + _escape_like(text) + "%"
        like = ilike(db)
        match = f"(r.image_name {like} ? ESCAPE '\\' OR r.repo_url {like} ? ESCAPE '\\')"
        # Common text on PostgreSQL: checked row by row, never looked up again by a guess.
        clauses.append(match if ids is not None or fts5_search(db) else filter_only(db, match))
        params += [pattern, pattern]
    if mine:
        clauses.append("(r.created_by = ? OR r.owner_id = ?)")
        params += [user.id, user.id]
    sql = (
        "SELECT r.id, r.image_name, r.version_tag, r.status, r.repo_url, r.updated_at, "
        "o.username AS owner_username FROM image_requests r JOIN users o ON o.id = r.owner_id "
        f"WHERE {' AND '.join(clauses)} ORDER BY r.updated_at DESC, r.id DESC"
    )
    return sql, params


def _escape_like(text: str) -> str:
    return like_escape(text)


def search_logins(db: sqlite3.Connection, prefix: str, roles=None, limit: int = 20) -> list[str]:
    """Active users of ``roles`` (all when None) whose login starts with ``prefix``
    (for the datalists)."""
    sql = "SELECT username FROM users WHERE is_active = 1 AND username LIKE ? ESCAPE '\\'"
    params: list = [_escape_like((prefix or "").strip().lower()) + "%"]
    if roles is not None:
        roles = tuple(roles)
        sql += f" AND role IN ({', '.join('?' * len(roles))})" if roles else " AND 0 = 1"
        params.extend(roles)
    sql += " ORDER BY username LIMIT ?"
    params.append(limit)
    return [row["username"] for row in db.execute(sql, params)]


def status_history(db: sqlite3.Connection, request_id: int) -> list[dict]:
    """Creation and every status change of a request, oldest first, from the audit log."""
    rows = db.execute(
        "SELECT a.action, a.details, a.created_at, u.username FROM audit_log a "
        "LEFT JOIN users u ON u.id = a.user_id WHERE a.target_type = 'request' "
        f"AND a.target_id = ? AND a.action IN ({', '.join('?' * len(HISTORY_ACTIONS))}) "
        "ORDER BY a.id",
        (request_id, *HISTORY_ACTIONS),
    ).fetchall()
    history = []
    for row in rows:
        try:
            details = json.loads(row["details"] or "{}")
        except ValueError:
            details = {}
        if not isinstance(details, dict):
            details = {}
        history.append(
            {
                "action": row["action"],
                "created_at": row["created_at"],
                "username": row["username"],
                "old": details.get("old"),
                "new": details.get("new") or details.get("status"),
            }
        )
    return history


# --- validation ------------------------------------------------------------------


def form_values(form) -> dict[str, str]:
    """The submitted fields as stripped strings (what the form shows back on error)."""
    values = {}
    for name in FORM_FIELDS:
        raw = form.get(name)
        raw = "" if raw is None else str(raw)
        # Multi-line text keeps its inner layout; single-line fields lose outer blanks.
        values[name] = raw.replace("\r\n", "\n").strip("\n ") if name == "run_commands" else raw.strip()
    return values


def values_from_row(req) -> dict[str, str]:
    """A stored request as form values (for the edit form)."""
    values = {
        name: "" if req[name] is None else str(req[name])
        for name in FORM_FIELDS
        if name not in ("owner", "vcpu")
    }
    values["vcpu"] = f"{req['vcpu']:g}"
    values["owner"] = req["owner_username"]
    return values


def validate(db: sqlite3.Connection, values: dict[str, str]) -> tuple[dict, dict]:
    """Check the form values; return the cleaned columns or raise ValidationError.

    Also returns ``extra``: unknown collaborator logins, which the form lists next
    to its message (they are user input, so they never go into a translated string).
    """
    errors: dict[str, str] = {}
    extra: dict = {}
    clean: dict = {}

    for name, limit in LIMITS.items():
        if len(values.get(name, "")) > limit:
            errors[name] = N_("Too long.")
    for name in FORM_FIELDS:
        if name != "run_commands" and CONTROL_RE.search(values.get(name, "")):
            errors.setdefault(name, N_("Must be a single line without control characters."))

    image_name = values.get("image_name", "")
    if not image_name:
        errors["image_name"] = N_("Required.")
    elif not IMAGE_NAME_RE.match(image_name):
        errors.setdefault(
            "image_name", N_("Lowercase letters, digits, and . _ - / between them (a Docker image name).")
        )
    clean["image_name"] = image_name

    repo_url = values.get("repo_url", "")
    if not repo_url:
        errors["repo_url"] = N_("Required.")
    elif not (
        (HTTP_SSH_URL_RE.match(repo_url) or SCP_URL_RE.match(repo_url)) and normalize_repo_url(repo_url)
    ):
        errors.setdefault("repo_url", N_("Enter an http(s)://, ssh:// or git@host:path repository URL."))
    clean["repo_url"] = repo_url

    branch = values.get("repo_branch", "") or "main"
    if not is_valid_branch_name(branch):
        errors.setdefault("repo_branch", N_("Not a valid branch name."))
    clean["repo_branch"] = branch

    mode = values.get("update_mode", "")
    if mode not in UPDATE_MODES:
        errors["update_mode"] = N_("Choose continuous or static.")
    clean["update_mode"] = mode

    commit = values.get("target_commit", "")
    if mode == "static" and not commit:
        errors["target_commit"] = N_("Required for the static update mode.")
    elif commit and not COMMIT_RE.match(commit):
        errors.setdefault("target_commit", N_("A commit hash: 7 to 40 hexadecimal characters."))
    clean["target_commit"] = commit.lower() or None

    base_image = values.get("base_image", "")
    if not base_image:
        errors["base_image"] = N_("Required.")
    elif not BASE_IMAGE_RE.match(base_image):
        errors.setdefault("base_image", N_("An image reference such as python:3.12-slim."))
    clean["base_image"] = base_image

    lines = [line.strip() for line in values.get("run_commands", "").split("\n") if line.strip()]
    if len(lines) > MAX_RUN_LINES:
        errors.setdefault("run_commands", N_("At most 100 commands."))
    elif any(CONTROL_RE.search(line.replace("\t", " ")) for line in lines):
        errors.setdefault("run_commands", N_("Must be a single line without control characters."))
    clean["run_commands"] = "\n".join(lines) or None

    clean["entrypoint"] = values.get("entrypoint", "") or None

    ram = values.get("ram_mb", "")
    try:
        ram_mb = int(ram)
    except ValueError:
        errors["ram_mb"] = N_("A whole number of megabytes.") if ram else N_("Required.")
    else:
        if not 0 < ram_mb <= RAM_MB_MAX:
            errors["ram_mb"] = N_("From 1 to 65536 MB.")
        clean["ram_mb"] = ram_mb

    cpu = values.get("vcpu", "")
    try:
        vcpu = float(cpu)
    except ValueError:
        errors["vcpu"] = N_("A number, for example 0.5 or 2.") if cpu else N_("Required.")
    else:
        if not math.isfinite(vcpu) or not 0 < vcpu <= VCPU_MAX:
            errors["vcpu"] = N_("More than 0 and at most 64.")
        clean["vcpu"] = vcpu

    version = values.get("version_tag", "")
    if not version:
        errors["version_tag"] = N_("Required.")
    elif not VERSION_TAG_RE.match(version):
        errors.setdefault(
            "version_tag", N_("Letters, digits and . _ + - with no spaces (it becomes the image tag).")
        )
    clean["version_tag"] = version

    logins = split_logins(values.get("collaborators", ""))
    if "collaborators" not in errors and logins:
        marks = ", ".join("?" * len(logins))
        known = {
            row["username"]
            for row in db.execute(f"SELECT username FROM users WHERE username IN ({marks})", logins)
        }
        unknown = [login for login in logins if login not in known]
        if unknown:
            errors["collaborators"] = N_("These logins do not exist:")
            extra["unknown_collaborators"] = unknown
    clean["collaborators"] = ", ".join(logins) or None

    owner_login = values.get("owner", "").lower()
    if not owner_login:
        errors["owner"] = N_("Choose the owner (a developer).")
    elif "owner" not in errors:
        row = db.execute(
            "SELECT id, role, is_active FROM users WHERE username = ?", (owner_login,)
        ).fetchone()
        if row is None or not row["is_active"]:
            errors["owner"] = N_("No active user with this login.")
        elif row["role"] != "developer":
            errors["owner"] = N_("The owner must be a developer.")
        else:
            clean["owner_id"] = row["id"]

    if errors:
        raise ValidationError(errors, extra=extra)
    clean["repo_key"] = normalize_repo_url(repo_url)
    clean["dockerfile_content"] = generate_dockerfile(
        clean["base_image"], clean["run_commands"], clean["entrypoint"]
    )
    return clean, extra


# --- Dockerfile ---------------------------------------------------------------------


def generate_dockerfile(base_image: str, run_commands: str | None, entrypoint: str | None) -> str:
    """The Dockerfile the simulated build uses: FROM, the sources, one RUN per
    command line, and the start command (shell form, as the user typed it)."""
    lines = [f"FROM {base_image}", "WORKDIR /app", "COPY . /app"]
    lines += [f"RUN {line.strip()}" for line in (run_commands or "").splitlines() if line.strip()]
    if entrypoint and entrypoint.strip():
        lines.append(f"ENTRYPOINT {entrypoint.strip()}")
    return "\n".join(lines) + "\n"


# --- writes --------------------------------------------------------------------------


def _sync_collaborators(db: sqlite3.Connection, request_id: int, collaborators: str | None) -> None:
    db.execute("DELETE FROM request_collaborators WHERE request_id = ?", (request_id,))
    db.executemany(
        "INSERT INTO request_collaborators (request_id, username) VALUES (?, ?)",
        [(request_id, login) for login in split_logins(collaborators)],
    )


def create_request(db: sqlite3.Connection, user, values: dict[str, str], *, now: float) -> int:
    """Validate and save a new draft; returns its id."""
    with transaction(db):
        clean, _extra = validate(db, values)
        stamp = utcnow_iso(now)
        columns = [*EDITABLE_COLUMNS, "repo_key", "dockerfile_content"]
        request_id = db.execute(
            f"INSERT INTO image_requests ({', '.join(columns)}, status, created_by, created_at, "
            f"updated_at) VALUES ({', '.join('?' * len(columns))}, 'draft', ?, ?, ?)",
            [*(clean[c] for c in columns), user.id, stamp, stamp],
        ).lastrowid
        _sync_collaborators(db, request_id, clean["collaborators"])
        audit.record(
            db,
            "request_create",
            user_id=user.id,
            target_type="request",
            target_id=request_id,
            details={"status": "draft", "image": f"{clean['image_name']}:{clean['version_tag']}"},
            now=now,
        )
    return request_id


def update_request(
    db: sqlite3.Connection, user, request_id: int, values: dict[str, str], *, now: float
) -> list[str]:
    """Validate and save an edit; returns the names of the changed fields.

    A changed base image marks the deployments of this request's images as
    needing a restart, in the same transaction.
    """
    with transaction(db):
        old = get_request(db, request_id)
        if old is None or not permissions.can_edit_request(user, old):
            raise Refused("conflict", N_("This request can no longer be edited."))
        clean, _extra = validate(db, values)
        changed = [c for c in EDITABLE_COLUMNS if old[c] != clean[c]]
        if not changed:
            if (
                old["dockerfile_content"] != clean["dockerfile_content"]
                or old["repo_key"] != clean["repo_key"]
            ):
                db.execute(
                    "UPDATE image_requests SET dockerfile_content = ?, repo_key = ? WHERE id = ?",
                    (clean["dockerfile_content"], clean["repo_key"], request_id),
                )
            return []
        columns = [*EDITABLE_COLUMNS, "repo_key", "dockerfile_content"]
        db.execute(
            f"UPDATE image_requests SET {', '.join(f'{c} = ?' for c in columns)}, updated_at = ? "
            "WHERE id = ?",
            [*(clean[c] for c in columns), utcnow_iso(now), request_id],
        )
        _sync_collaborators(db, request_id, clean["collaborators"])
        details: dict = {"fields": ["owner" if c == "owner_id" else c for c in changed], "changes": {}}
        for column in changed:
            if column in AUDITED_VALUES:
                before, after = old[column], clean[column]
                if column == "owner_id":
                    column, before, after = "owner", old["owner_username"], values["owner"].lower()
                details["changes"][column] = {"old": before, "new": after}
        if "base_image" in changed:
            marked = db.execute(
                "UPDATE deployments SET needs_restart = 1 WHERE image_id IN "
                "(SELECT id FROM images WHERE request_id = ?) AND status IN "
                f"({', '.join('?' * len(RESTARTABLE_DEPLOYMENT_STATUSES))})",
                (request_id, *RESTARTABLE_DEPLOYMENT_STATUSES),
            ).rowcount
            details["needs_restart_marked"] = marked
        audit.record(
            db,
            "request_edit",
            user_id=user.id,
            target_type="request",
            target_id=request_id,
            details=details,
            now=now,
        )
    return details["fields"]


def may_transition(user, req, new_status: str) -> bool:
    """Whether ``user`` may make this move (assuming the flow allows it)."""
    if permissions.can_review_request(user, req):
        return True
    if req["status"] == "draft" and new_status == "submitted":
        return permissions.can_submit_request(user, req)
    if req["status"] == "rejected" and new_status == "draft":
        return permissions.can_rework_request(user, req)
    return False


def next_statuses(user, req) -> list[str]:
    """The statuses ``user`` may move this request to now (for the detail page)."""
    return [s for s in TRANSITIONS.get(req["status"], ()) if may_transition(user, req, s)]


def change_status(db: sqlite3.Connection, user, request_id: int, new_status: str, *, now: float) -> str:
    """Move a request to ``new_status``; returns the old status.

    Refusals raise Refused: a conflict when the flow does not allow the move,
    forbidden when this user may not make it. Nothing is written then.
    """
    if new_status not in REQUEST_STATUSES:
        raise Refused("invalid", N_("Unknown status."))
    with transaction(db):
        req = get_request(db, request_id)
        if req is None:
            raise Refused("not_found", N_("Unknown request."))
        old = req["status"]
        if new_status == old:
            raise Refused("conflict", N_("The request already has this status."))
        if new_status not in TRANSITIONS.get(old, ()):
            raise Refused("conflict", N_("The status flow does not allow this change."))
        if not may_transition(user, req, new_status):
            raise Refused("forbidden", N_("You may not make this status change."))
        db.execute(
            "UPDATE image_requests SET status = ?, updated_at = ? WHERE id = ?",
            (new_status, utcnow_iso(now), request_id),
        )
        action = "request_submit" if (old, new_status) == ("draft", "submitted") else "request_status"
        audit.record(
            db,
            action,
            user_id=user.id,
            target_type="request",
            target_id=request_id,
            details={"old": old, "new": new_status},
            now=now,
        )
    return old


def submit_request(db: sqlite3.Connection, user, request_id: int, *, now: float) -> None:
    """draft → submitted (the developer hands the request to the operators)."""
    req = get_request(db, request_id)
    if req is not None and req["status"] != "draft":
        raise Refused("conflict", N_("Only a draft can be submitted."))
    change_status(db, user, request_id, "submitted", now=now)
