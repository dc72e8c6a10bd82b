"""Users: validation, creation, authentication, password changes, and the admin's
actions on other users (block, unblock, role change, password reset)."""

from __future__ import annotations

import re
import secrets
import sqlite3

from werkzeug.security import check_password_hash, generate_password_hash

from .. import audit, permissions
from .. import db as db_module
from ..db import transaction
from ..timeutil import utcnow_iso
from . import N_, Refused, ValidationError, password_policy, without_nul

USERNAME_RE = re.compile(r"^[a-z0-9._-]{3,32}$")
ROLES = permissions.ROLES


# Checked against when the username does not exist, so a failed login costs the
# same time whether or not the user is real (no enumeration by timing). Made on the
# first sign-in, known user or not, rather than at import: hashing takes ~170 ms
# that every start-up would otherwise pay.
_DUMMY_HASH: str | None = None


def _dummy_hash() -> str:
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = generate_password_hash("samosval-dummy-password")
    return _DUMMY_HASH


def get_user(db: sqlite3.Connection, user_id: int):
    return db.execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchone()


def get_user_by_username(db: sqlite3.Connection, username: str):
    return db.execute(
        "SELECT * FROM users WHERE username = ?", ((username or "").strip().lower(),)
    ).fetchone()


def validate_username(username: str) -> str | None:
    if not USERNAME_RE.match(username or ""):
        return N_("3–32 characters: lowercase letters, digits, dot, underscore, hyphen.")
    return None


def validate_password(password: str, username: str | None = None) -> str | None:
    """The password policy (``password_policy``): the failed rule's message, or None."""
    return password_policy.check(password, username)


def create_user(
    db: sqlite3.Connection,
    username: str,
    password: str,
    role: str,
    *,
    now: float,
    actor_id: int | None = None,
    must_change_password: bool = False,
) -> int:
    username = (username or "").strip().lower()
    errors = {}
    if message := validate_username(username):
        errors["username"] = message
    elif get_user_by_username(db, username):
        errors["username"] = N_("This username is taken.")
    if message := validate_password(password, username):
        errors["password"] = message
    if role not in ROLES:
        errors["role"] = N_("Choose admin, operator or developer.")
    if errors:
        raise ValidationError(errors)
    try:
        with transaction(db):
            user_id = db.execute(
                "INSERT INTO users (username, password_hash, role, is_active, created_at, must_change_password) "
                "VALUES (?, ?, ?, 1, ?, ?)",
                (
                    username,
                    generate_password_hash(password),
                    role,
                    utcnow_iso(now),
                    int(must_change_password),
                ),
            ).lastrowid
            audit.record(
                db,
                "user_create",
                user_id=actor_id,
                target_type="user",
                target_id=user_id,
                details={"username": username, "role": role},
                now=now,
            )
    except db_module.IntegrityError:
        # Two admins creating the same login at once: the second one loses cleanly.
        raise ValidationError({"username": N_("This username is taken.")}) from None
    return user_id


def authenticate(db: sqlite3.Connection, username: str, password: str, *, now: float):
    """Return the user row if the credentials are right and the user is active.

    Every failure looks the same to the caller (no hint which part was wrong) and
    is audited with the attempted username.
    """
    dummy = _dummy_hash()
    row = get_user_by_username(db, username)
    valid = check_password_hash(row["password_hash"] if row else dummy, password or "")
    if row is None or not valid or not row["is_active"]:
        reason = "unknown user" if row is None else ("blocked" if valid else "bad password")
        with transaction(db):
            audit.record(
                db,
                "login_failed",
                user_id=row["id"] if row else None,
                target_type="user",
                target_id=row["id"] if row else None,
                details={"username": (username or "")[:64], "reason": reason},
                now=now,
            )
        return None
    with transaction(db):
        db.execute("UPDATE users SET last_login_at = ? WHERE id = ?", (utcnow_iso(now), row["id"]))
        audit.record(db, "login", user_id=row["id"], target_type="user", target_id=row["id"], now=now)
    return get_user(db, row["id"])


def change_own_password(
    db: sqlite3.Connection, user_id: int, current: str, new: str, confirm: str, *, now: float
) -> None:
    row = get_user(db, user_id)
    errors = {}
    if not check_password_hash(row["password_hash"], current or ""):
        errors["current_password"] = N_("The current password is wrong.")
        with transaction(db):
            audit.record(
                db, "password_change_failed", user_id=user_id, target_type="user", target_id=user_id, now=now
            )
    if message := validate_password(new, row["username"]):
        errors["new_password"] = message
    elif new == current or row["username"] == "root" and new == "root":
        errors["new_password"] = N_("Choose a password different from the current one.")
    if new != confirm:
        errors["confirm_password"] = N_("The passwords do not match.")
    if errors:
        raise ValidationError(errors)
    with transaction(db):
        # Bumping session_version signs out every other session of this user.
        db.execute(
            "UPDATE users SET password_hash = ?, must_change_password = 0, "
            "session_version = session_version + 1 WHERE id = ?",
            (generate_password_hash(new), user_id),
        )
        audit.record(db, "password_change", user_id=user_id, target_type="user", target_id=user_id, now=now)


def set_locale(db: sqlite3.Connection, user_id: int, locale: str) -> None:
    with transaction(db):
        db.execute("UPDATE users SET locale = ? WHERE id = ?", (locale, user_id))


def root_has_default_password(db: sqlite3.Connection) -> bool:
    row = db.execute("SELECT must_change_password FROM users WHERE username = 'root'").fetchone()
    return bool(row and row["must_change_password"])


# --- administration ------------------------------------------------------------
# Who may block, demote or reset whom is ``permissions``; these commands ask it
# themselves, so no caller (route, CLI, JSON, a future API) can bypass it.

PROTECTED_USERNAME = permissions.PROTECTED_USERNAME
TEMP_PASSWORD_BYTES = 9  # token_urlsafe(9) gives 12 characters


def list_users(
    db: sqlite3.Connection, *, role: str | None = None, q: str | None = None, limit: int = 500
) -> list:
    """Users for the admin table, by username, optionally filtered by role and by a
    piece of the username."""
    clauses, params = [], []
    if role in ROLES:
        clauses.append("role = ?")
        params.append(role)
    q = (q or "").strip().lower()
    if q:
        clauses.append("username LIKE ? ESCAPE '\\'")
        params.append("%" + like_escape(q) + "%")
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    return db.execute(
        "SELECT id, username, role, is_active, created_at, last_login_at, must_change_password "
        f"FROM users {where} ORDER BY username LIMIT ?",
        [*params, limit],
    ).fetchall()


def users_sql(role: str = "") -> tuple[str, list]:
    """Every user (optionally of one role), newest first, for cursor pages (the API)."""
    where, params = ("WHERE role = ?", [role]) if role in ROLES else ("", [])
    return (
        f"SELECT id, username, role, is_active, created_at, last_login_at FROM users {where} ORDER BY id DESC"
    ), params


def list_usernames(db: sqlite3.Connection, limit: int = 500) -> list[str]:
    """Logins for filter suggestions (the audit page's datalist)."""
    return [row[0] for row in db.execute("SELECT username FROM users ORDER BY username LIMIT ?", (limit,))]


def like_escape(text: str) -> str:
    """Make ``%`` and ``_`` in user input match literally in ``LIKE ... ESCAPE '\\'``.
    SQLite's LIKE stops reading a pattern at a NUL, so ``%<NUL>%`` would match every
    row; stored searchable text never holds control characters, so NUL becomes one
    that matches nothing."""
    return without_nul(text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_"))


def _target_or_refuse(db: sqlite3.Connection, user_id: int):
    row = get_user(db, user_id)
    if row is None:
        raise Refused("not_found", N_("This user does not exist."))
    return row


def _refuse_if(refusal: str | None) -> None:
    if refusal is not None:
        raise Refused("forbidden", refusal)


def block_user(db: sqlite3.Connection, user_id: int, *, actor, now: float) -> sqlite3.Row:
    """Deactivate a user and sign out all their sessions (the session version is part
    of the login cookie, see auth.py). The caller also ends their live streams."""
    row = _target_or_refuse(db, user_id)
    _refuse_if(permissions.block_refusal(actor, row))
    if not row["is_active"]:
        raise Refused("conflict", N_("This user is already blocked."))
    with transaction(db):
        db.execute(
            "UPDATE users SET is_active = 0, session_version = session_version + 1 WHERE id = ?", (user_id,)
        )
        audit.record(
            db,
            "user_block",
            user_id=actor.id,
            target_type="user",
            target_id=user_id,
            details={"username": row["username"]},
            now=now,
        )
    return get_user(db, user_id)


def unblock_user(db: sqlite3.Connection, user_id: int, *, actor, now: float) -> sqlite3.Row:
    row = _target_or_refuse(db, user_id)
    _refuse_if(permissions.block_refusal(actor, row))
    if row["is_active"]:
        raise Refused("conflict", N_("This user is not blocked."))
    with transaction(db):
        db.execute("UPDATE users SET is_active = 1 WHERE id = ?", (user_id,))
        audit.record(
            db,
            "user_unblock",
            user_id=actor.id,
            target_type="user",
            target_id=user_id,
            details={"username": row["username"]},
            now=now,
        )
    return get_user(db, user_id)


def change_role(db: sqlite3.Connection, user_id: int, role: str, *, actor, now: float) -> bool:
    """Give a user another role. Returns False when the role is already theirs
    (nothing written). Their sessions end so the new rights apply from a fresh login."""
    row = _target_or_refuse(db, user_id)
    _refuse_if(permissions.role_change_refusal(actor, row))
    if role not in ROLES:
        raise ValidationError(
            {"role": N_("Choose admin, operator or developer.")},
            message=N_("Choose admin, operator or developer."),
        )
    if row["role"] == role:
        return False
    with transaction(db):
        db.execute(
            "UPDATE users SET role = ?, session_version = session_version + 1 WHERE id = ?", (role, user_id)
        )
        audit.record(
            db,
            "user_role_change",
            user_id=actor.id,
            target_type="user",
            target_id=user_id,
            details={"username": row["username"], "old": row["role"], "new": role},
            now=now,
        )
    return True


def generate_temporary_password() -> str:
    return secrets.token_urlsafe(TEMP_PASSWORD_BYTES)


def reset_password(
    db: sqlite3.Connection, user_id: int, *, actor, now: float, password: str | None = None
) -> str:
    """Set a temporary password (generated unless given), ask the user to change it at
    next login, and sign out their sessions. Returns the password so the admin can
    pass it on; it is never stored in clear or audited."""
    row = _target_or_refuse(db, user_id)
    _refuse_if(permissions.password_reset_refusal(actor, row))
    password = password if password is not None else generate_temporary_password()
    if message := validate_password(password, row["username"]):
        raise ValidationError({"password": message})
    with transaction(db):
        db.execute(
            "UPDATE users SET password_hash = ?, must_change_password = 1, "
            "session_version = session_version + 1 WHERE id = ?",
            (generate_password_hash(password), user_id),
        )
        audit.record(
            db,
            "user_password_reset",
            user_id=actor.id,
            target_type="user",
            target_id=user_id,
            details={"username": row["username"]},
            now=now,
        )
    return password
