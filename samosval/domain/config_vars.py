"""Configuration of a deployment (issue 21): environment variables, some secret.

Every change is a new numbered *configuration version* of the deployment (the whole
set of variables) and a new release pointing at it (``releases.config_version`` is
the version's number): in a protected environment the release waits for approval
and the running configuration stays what it was until then.

A secret's value is sealed with the app's keyring (``samosval.crypto``) before it
reaches the database and is never given back: pages, JSON and logs show ``***``,
and a form offers only "replace" and "delete". The audit log records which keys
changed and who changed them, never a value.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass

from .. import audit, permissions
from ..crypto import Keyring
from ..db import transaction
from ..timeutil import utcnow_iso
from . import N_, Refused, ValidationError
from . import releases as release_domain

MASK = "***"
MAX_VALUE_BYTES = 32 * 1024
MAX_KEY_LENGTH = 128
MAX_VARIABLES = 200
KEY_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Statuses in which a new configuration may roll out (not while deleted, obviously).
CHANGE_FROM = ("running", "failed", "stopped", "deploying")

E_KEY_EMPTY = N_("Give the variable a name.")
E_KEY_INVALID = N_("Not a valid environment variable name: letters, digits and _, not starting with a digit.")
E_KEY_LONG = N_("At most 128 characters.")
E_KEY_DUPLICATE = N_("This name is used twice.")
E_VALUE_LONG = N_("A value is at most 32 KiB.")
E_VALUE_NUL = N_("A value cannot contain a NUL character.")
E_SECRET_EMPTY = N_("Type the secret's value.")
E_TOO_MANY = N_("At most 200 variables.")


@dataclass
class Row:
    """One row of the form, as the route read it.

    ``existing`` is the key of a saved secret the row stands for (its value is kept
    unless ``value`` replaces it); ``delete`` drops the row."""

    key: str = ""
    value: str = ""
    secret: bool = False
    existing: str | None = None
    delete: bool = False


# --- reading -----------------------------------------------------------------------------


def version_entries(db: sqlite3.Connection, deployment_id: int, number: int | None) -> list:
    """The variables of configuration ``number`` of the deployment, in their order."""
    if number is None:
        return []
    return db.execute(
        "SELECT e.key, e.value, e.sealed_value FROM config_entries e "
        "JOIN config_versions v ON v.id = e.version_id WHERE v.deployment_id = ? AND v.number = ? "
        "ORDER BY e.position",
        (deployment_id, number),
    ).fetchall()


def running_version(db: sqlite3.Connection, deployment_id: int) -> int | None:
    """The configuration the deployment's current release runs with."""
    row = db.execute(
        "SELECT rel.config_version FROM deployments d JOIN releases rel "
        "ON rel.id = d.current_release_id WHERE d.id = ?",
        (deployment_id,),
    ).fetchone()
    return row[0] if row else None


def pending_version(db: sqlite3.Connection, deployment_id: int) -> int | None:
    """The configuration of a release waiting for approval, if it changes it."""
    row = db.execute(
        "SELECT config_version FROM releases WHERE deployment_id = ? AND status = ? "
        "AND cause = 'config' ORDER BY number DESC LIMIT 1",
        (deployment_id, release_domain.PENDING),
    ).fetchone()
    return row[0] if row else None


def public_variables(entries) -> list[dict]:
    """What anyone who may see the deployment may see: plain values, masked secrets."""
    return [
        {
            "key": e["key"],
            "secret": e["sealed_value"] is not None,
            "value": None if e["sealed_value"] is not None else e["value"],
        }
        for e in entries
    ]


def describe(db: sqlite3.Connection, deployment_id: int) -> dict:
    """The JSON of ``GET /api/deployments/<id>/env`` and the page's section."""
    running = running_version(db, deployment_id)
    pending = pending_version(db, deployment_id)
    return {
        "deployment_id": deployment_id,
        "config_version": running,
        "variables": public_variables(version_entries(db, deployment_id, running)),
        "pending_config_version": pending,
        "pending_variables": (
            public_variables(version_entries(db, deployment_id, pending)) if pending is not None else None
        ),
    }


def key_changes(
    db: sqlite3.Connection, deployment_id: int, before: int | None, after: int | None
) -> dict[str, list[dict]]:
    """Which keys configuration ``after`` adds, changes and removes against ``before``
    (``{"added", "changed", "removed"}``, each ``[{"key", "secret"}]``): names only,
    never a value. A secret counts as changed when it was replaced (its sealed bytes
    differ: a kept secret keeps them) or when it became, or stopped being, secret."""
    if before == after:
        return {"added": [], "changed": [], "removed": []}
    old = {e["key"]: e for e in version_entries(db, deployment_id, before)}
    new = {e["key"]: e for e in version_entries(db, deployment_id, after)}

    def item(entry) -> dict:
        return {"key": entry["key"], "secret": entry["sealed_value"] is not None}

    return {
        "added": [item(e) for key, e in new.items() if key not in old],
        "changed": [
            item(e)
            for key, e in new.items()
            if key in old and (old[key]["value"], old[key]["sealed_value"]) != (e["value"], e["sealed_value"])
        ],
        "removed": [item(e) for key, e in old.items() if key not in new],
    }


def startup_lines(db: sqlite3.Connection, deployment_id: int) -> list[str]:
    """What the simulated runtime prints at start: ``env: KEY=value``, secrets as
    ``***`` (long plain values cut at 200 characters)."""
    lines = []
    for entry in version_entries(db, deployment_id, running_version(db, deployment_id)):
        if entry["sealed_value"] is not None:
            shown = MASK
        else:
            shown = entry["value"] if len(entry["value"]) <= 200 else entry["value"][:200] + "…"
        lines.append(f"env: {entry['key']}={shown}")
    return lines


# --- validation ----------------------------------------------------------------------------


def validate(rows: list[Row], saved_secrets: dict[str, str]) -> list[tuple[str, str | None, str | None]]:
    """Check the form's rows; returns ``[(key, plain value, new secret value)]``
    where a kept secret has both values None. Raises ``ValidationError`` with
    errors keyed ``rows-<i>-key`` / ``rows-<i>-value``."""
    errors: dict[str, str] = {}
    result: list[tuple[str, str | None, str | None]] = []
    seen: dict[str, int] = {}
    for index, row in enumerate(rows):
        if row.delete:
            continue
        key = (row.existing if row.existing is not None else row.key).strip()
        value = row.value
        if row.existing is None and not key and not value:
            continue  # an empty spare row
        if not key:
            errors[f"rows-{index}-key"] = E_KEY_EMPTY
        elif len(key) > MAX_KEY_LENGTH:
            errors[f"rows-{index}-key"] = E_KEY_LONG
        elif not KEY_PATTERN.match(key):
            errors[f"rows-{index}-key"] = E_KEY_INVALID
        elif key in seen:
            errors[f"rows-{index}-key"] = E_KEY_DUPLICATE
            errors.setdefault(f"rows-{seen[key]}-key", E_KEY_DUPLICATE)
        else:
            seen[key] = index
        if len(value.encode("utf-8")) > MAX_VALUE_BYTES:
            errors[f"rows-{index}-value"] = E_VALUE_LONG
        elif "\x00" in value:
            errors[f"rows-{index}-value"] = E_VALUE_NUL
        if row.existing is not None and row.existing in saved_secrets:
            result.append((key, None, value if value else None))
        elif row.secret:
            if not value:
                errors.setdefault(f"rows-{index}-value", E_SECRET_EMPTY)
            result.append((key, None, value))
        else:
            result.append((key, value, None))
    if len(result) > MAX_VARIABLES:
        errors["rows"] = E_TOO_MANY
    if errors:
        raise ValidationError(errors)
    return result


# --- writing -------------------------------------------------------------------------------


def save(
    db: sqlite3.Connection, state, deployment, user, rows: list[Row], keyring: Keyring, now: float
) -> dict:
    """Save the form as a new configuration version and propose a release with it.
    Nothing changed: nothing is written. Returns ``{"version", "release_id",
    "pending", "changed"}``."""
    if not permissions.can_change_config(user, deployment):
        raise Refused("forbidden", permissions.FORBIDDEN)
    deployment_id = deployment["id"]
    with transaction(db):
        current = db.execute("SELECT status FROM deployments WHERE id = ?", (deployment_id,)).fetchone()
        if current is None:
            raise Refused("not_found", N_("This deployment no longer exists."))
        if current["status"] not in CHANGE_FROM:
            raise Refused("conflict", N_("The configuration cannot be changed now."))
        base = version_entries(db, deployment_id, running_version(db, deployment_id))
        saved_secrets = {e["key"]: e["sealed_value"] for e in base if e["sealed_value"] is not None}
        cleaned = validate(rows, saved_secrets)
        before = {e["key"]: (e["value"], e["sealed_value"]) for e in base}
        entries, changed_keys = [], []
        for key, plain, secret in cleaned:
            if plain is None and secret is None:  # a kept secret
                sealed = saved_secrets[key]
                entries.append((key, None, sealed))
                continue
            sealed = keyring.seal(secret) if secret is not None else None
            entries.append((key, plain, sealed))
            old = before.get(key)
            if old is None or sealed is not None or old != (plain, None):
                changed_keys.append(key)
        after_keys = [key for key, _, _ in entries]
        added = [k for k in after_keys if k not in before]
        removed = [k for k in before if k not in after_keys]
        modified = [k for k in changed_keys if k in before]
        reordered = [e["key"] for e in base] != after_keys
        if not (added or removed or modified or reordered):
            return {"version": None, "release_id": None, "pending": False, "changed": False}
        number = db.execute(
            "SELECT COALESCE(MAX(number), 0) + 1 FROM config_versions WHERE deployment_id = ?",
            (deployment_id,),
        ).fetchone()[0]
        version_id = db.execute(
            "INSERT INTO config_versions (deployment_id, number, created_at, created_by) VALUES (?, ?, ?, ?)",
            (deployment_id, number, utcnow_iso(now), user.id),
        ).lastrowid
        db.executemany(
            "INSERT INTO config_entries (version_id, position, key, value, sealed_value) VALUES (?, ?, ?, ?, ?)",
            [
                (version_id, position, key, plain, sealed)
                for position, (key, plain, sealed) in enumerate(entries)
            ],
        )
        release_id, pending = release_domain.propose_in_transaction(
            db,
            deployment_id,
            requested_by=user.id,
            trigger="user",
            cause="config",
            now=now,
            config_version=number,
            keep_config=False,
            staff=permissions.stops_as_operator(user),
        )
        release = release_domain.get_release(db, release_id)
        secret_keys = sorted(k for k, _, sealed in entries if sealed is not None)
        # Keys and who, never a value.
        audit.record(
            db,
            "config_change",
            user_id=user.id,
            target_type="deployment",
            target_id=deployment_id,
            now=now,
            details={
                "name": deployment["name"],
                "version": number,
                "release": release_domain.label(release),
                "pending": pending,
                "added": added,
                "changed": modified,
                "removed": removed,
                "secret_keys": secret_keys,
            },
        )
    logs = state.runtime(deployment_id).logs
    summary = (
        ", ".join(
            part
            for part in (
                f"added {', '.join(added)}" if added else "",
                f"changed {', '.join(modified)}" if modified else "",
                f"removed {', '.join(removed)}" if removed else "",
            )
            if part
        )
        or "reordered"
    )
    if pending:
        logs.append(
            now,
            "EVENT",
            f"Configuration v{number} by {user.username} ({summary}): "
            f"{release_domain.label(release)} waits for approval",
        )
    else:
        logs.append(
            now,
            "EVENT",
            f"Configuration v{number} by {user.username} ({summary}): "
            f"rolling out {release_domain.label(release)}",
        )
        logs.set_status("deploying")
    return {"version": number, "release_id": release_id, "pending": pending, "changed": True}


def reseal_all(db: sqlite3.Connection, keyring: Keyring) -> int:
    """Re-encrypt every sealed configuration value under the keyring's current key,
    in the caller's transaction. Returns how many values were re-sealed."""
    rows = db.execute(
        "SELECT version_id, key, sealed_value FROM config_entries WHERE sealed_value IS NOT NULL"
    ).fetchall()
    for row in rows:
        db.execute(
            "UPDATE config_entries SET sealed_value = ? WHERE version_id = ? AND key = ?",
            (keyring.reseal(row["sealed_value"]), row["version_id"], row["key"]),
        )
    return len(rows)
