"""Protected environments (issue 20): where every rollout waits for a second person.

None is protected on a fresh install; an admin opts in (audited). Demo mode
protects ``prod``.
"""

from __future__ import annotations

import sqlite3

from .. import audit, permissions
from ..db import transaction
from ..timeutil import utcnow_iso
from . import N_, Refused

ENVIRONMENTS = ("dev", "staging", "prod")


def protected_environments(db: sqlite3.Connection) -> set[str]:
    return {row[0] for row in db.execute("SELECT environment FROM protected_environments")}


def is_protected(db: sqlite3.Connection, environment: str) -> bool:
    return (
        db.execute("SELECT 1 FROM protected_environments WHERE environment = ?", (environment,)).fetchone()
        is not None
    )


def environment_rows(db: sqlite3.Connection) -> list[dict]:
    """Every environment with whether, since when and by whom it is protected."""
    found = {
        row["environment"]: row
        for row in db.execute(
            "SELECT p.environment, p.protected_at, u.username FROM protected_environments p "
            "LEFT JOIN users u ON u.id = p.protected_by"
        )
    }
    return [
        {
            "environment": env,
            "protected": env in found,
            "protected_at": found[env]["protected_at"] if env in found else None,
            "protected_by": found[env]["username"] if env in found else None,
        }
        for env in ENVIRONMENTS
    ]


def set_protected(db: sqlite3.Connection, user, environment: str, protected: bool, now: float) -> bool:
    """Protect or unprotect ``environment`` (admins). Returns whether anything changed;
    only a change is audited."""
    if not permissions.can_manage_environments(user):
        raise Refused("forbidden", permissions.FORBIDDEN)
    if environment not in ENVIRONMENTS:
        raise Refused("invalid", N_("Choose dev, staging or prod."))
    with transaction(db):
        if protected:
            changed = db.execute(
                "INSERT INTO protected_environments (environment, protected_at, protected_by) "
                "VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                (environment, utcnow_iso(now), user.id),
            ).rowcount
        else:
            changed = db.execute(
                "DELETE FROM protected_environments WHERE environment = ?", (environment,)
            ).rowcount
        if changed:
            audit.record(
                db,
                "environment_protect" if protected else "environment_unprotect",
                user_id=user.id,
                details={"environment": environment},
                now=now,
            )
    return bool(changed)
