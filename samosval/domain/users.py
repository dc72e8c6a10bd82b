"""Users: validation, creation, authentication and password changes."""
from __future__ import annotations

import re
import sqlite3

from werkzeug.security import check_password_hash, generate_password_hash

from .. import audit
from . import N_, ValidationError
from ..db import transaction
from ..timeutil import utcnow_iso

USERNAME_RE = re.compile(r"^[a-z0-9._-]{3,32}$")
ROLES = ("admin", "operator", "developer")
MIN_PASSWORD_LENGTH = 8
# Checked against when the username does not exist, so a failed login costs the
# same time whether or not the user is real (no enumeration by timing).
_DUMMY_HASH = generate_password_hash("samosval-dummy-password")


def get_user(db: sqlite3.Connection, user_id: int):
    return db.execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchone()


def get_user_by_username(db: sqlite3.Connection, username: str):
    return db.execute("SELECT * FROM users WHERE username = ?",
                      ((username or "").strip().lower(),)).fetchone()


def validate_username(username: str) -> str | None:
    if not USERNAME_RE.match(username or ""):
        return N_("3–32 characters: lowercase letters, digits, dot, underscore, hyphen.")
    return None


def validate_password(password: str) -> str | None:
    if len(password or "") < MIN_PASSWORD_LENGTH:
        return N_("At least 8 characters.")
    if len(password) > 256:
        return N_("At most 256 characters.")
    return None


def create_user(db: sqlite3.Connection, username: str, password: str, role: str, *,
                actor_id: int | None = None, must_change_password: bool = False) -> int:
    username = (username or "").strip().lower()
    errors = {}
    if (message := validate_username(username)):
        errors["username"] = message
    elif get_user_by_username(db, username):
        errors["username"] = N_("This username is taken.")
    if (message := validate_password(password)):
        errors["password"] = message
    if role not in ROLES:
        errors["role"] = N_("Choose admin, operator or developer.")
    if errors:
        raise ValidationError(errors)
    with transaction(db):
        user_id = db.execute(
            "INSERT INTO users (username, password_hash, role, is_active, created_at, must_change_password) "
            "VALUES (?, ?, ?, 1, ?, ?)",
            (username, generate_password_hash(password), role, utcnow_iso(), int(must_change_password)),
        ).lastrowid
        audit.record(db, "user_create", user_id=actor_id, target_type="user", target_id=user_id,
                     details={"username": username, "role": role})
    return user_id


def authenticate(db: sqlite3.Connection, username: str, password: str):
    """Return the user row if the credentials are right and the user is active.

    Every failure looks the same to the caller (no hint which part was wrong) and
    is audited with the attempted username.
    """
    row = get_user_by_username(db, username)
    valid = check_password_hash(row["password_hash"] if row else _DUMMY_HASH, password or "")
    if row is None or not valid or not row["is_active"]:
        reason = "unknown user" if row is None else ("blocked" if valid else "bad password")
        with transaction(db):
            audit.record(db, "login_failed", user_id=row["id"] if row else None,
                         target_type="user", target_id=row["id"] if row else None,
                         details={"username": (username or "")[:64], "reason": reason})
        return None
    with transaction(db):
        db.execute("UPDATE users SET last_login_at = ? WHERE id = ?", (utcnow_iso(), row["id"]))
        audit.record(db, "login", user_id=row["id"], target_type="user", target_id=row["id"])
    return get_user(db, row["id"])


def change_own_password(db: sqlite3.Connection, user_id: int, current: str, new: str, confirm: str) -> None:
    row = get_user(db, user_id)
    errors = {}
    if not check_password_hash(row["password_hash"], current or ""):
        errors["current_password"] = N_("The current password is wrong.")
    if (message := validate_password(new)):
        errors["new_password"] = message
    elif new == current:
        errors["new_password"] = N_("Choose a password different from the current one.")
    elif row["username"] == "root" and new == "root":
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
        audit.record(db, "password_change", user_id=user_id, target_type="user", target_id=user_id)


def set_locale(db: sqlite3.Connection, user_id: int, locale: str) -> None:
    with transaction(db):
        db.execute("UPDATE users SET locale = ? WHERE id = ?", (locale, user_id))


def root_has_default_password(db: sqlite3.Connection) -> bool:
    row = db.execute("SELECT must_change_password FROM users WHERE username = 'root'").fetchone()
    return bool(row and row["must_change_password"])
