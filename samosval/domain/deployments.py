"""Deployments: validation, creation, the start/stop/restart/delete rules, and the
transitions the engine makes (deploying -> running | failed).

Every function takes ``now``, writes its audit row in the same transaction as
the change, and re-reads the status inside that transaction, so a user action
and an engine step that race never both apply. Lifecycle lines go into the
deployment's in-memory log stream after the commit.
"""

from __future__ import annotations

import re
import sqlite3

from .. import audit, permissions
from ..db import transaction
from ..timeutil import utcnow_iso
from . import N_, Refused, ValidationError
from . import alerts as alert_domain
from . import releases as release_domain
from .environments import ENVIRONMENTS, is_protected

DEPLOYMENT_STATUSES = ("deploying", "running", "stopped", "failed")
MAX_REPLICAS = 20
MAX_NAME_LENGTH = 80
MAX_PORT_PAIRS = 32

# Which statuses each action makes sense from. Anything else is refused with a
# clear message ("the deployment is already stopped").
ACTION_FROM_STATUSES = {
    "start": ("stopped", "failed"),
    "stop": ("running", "deploying"),
    "restart": ("running", "failed"),
    "delete": DEPLOYMENT_STATUSES,
}

REFUSALS = {
    "start": N_("Only a stopped or failed deployment can be started."),
    "stop": N_("The deployment is not running, so it cannot be stopped."),
    "restart": N_("Only a running or failed deployment can be restarted."),
    "delete": N_("This deployment cannot be deleted now."),
}

# Statuses the webhook may restart (a deploying one starts its rollout over).
AUTO_RESTART_FROM = ("running", "deploying")

_PAIR = re.compile(r"^(\d{1,5}):(\d{1,5})$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def action_applies(status: str, action: str) -> bool:
    return status in ACTION_FROM_STATUSES.get(action, ())


def offered_actions(user, deployment) -> list[str]:
    """The actions to offer ``user`` now: permitted and meaningful in this status.
    A deployment whose first release waits for approval has nothing to start yet."""
    waiting = _awaiting_first_release(deployment)
    return [
        action
        for action in ACTION_FROM_STATUSES
        if action_applies(deployment["status"], action)
        and not (waiting and action in ("start", "restart"))
        and permissions.can_control_deployment(user, deployment, action)
    ]


def _awaiting_first_release(deployment) -> bool:
    keys = deployment.keys()
    return "awaiting_release" in keys and bool(deployment["awaiting_release"])


DEPLOYMENT_COLUMNS = (
    "d.id, d.image_id, d.name, d.environment, d.status, d.replicas, d.ports, "
    "d.stopped_by_operator, d.needs_restart, d.created_at, d.updated_at, "
    "d.created_by AS deployed_by, d.next_step_at, d.status_since, d.last_commit, "
    "d.current_release_id, d.pinned_at, d.pinned_by, "
    "(SELECT username FROM users WHERE id = d.pinned_by) AS pinned_by_name, "
    "(d.current_release_id IS NULL AND EXISTS (SELECT 1 FROM releases WHERE deployment_id = d.id)) "
    "AS awaiting_release"
)


def list_deployments_sql(user, status: str = "", environment: str = "") -> tuple[str, list]:
    """Deployments of the requests ``user`` may see, recently changed first, for ``paginate``."""
    where, params = permissions.visible_requests_sql(user, "r")
    conditions = [where]
    if status:
        conditions.append("d.status = ?")
        params.append(status)
    if environment:
        conditions.append("d.environment = ?")
        params.append(environment)
    sql = (
        "SELECT d.id, d.name, d.environment, d.status, d.replicas, d.ports, d.stopped_by_operator, "
        "d.needs_restart, d.updated_at, d.created_at, i.id AS image_id, i.image_tag "
        "FROM deployments d JOIN images i ON i.id = d.image_id "
        "JOIN image_requests r ON r.id = i.request_id "
        f"WHERE {' AND '.join(conditions)} ORDER BY d.updated_at DESC, d.id DESC"
    )
    return sql, params


def get_deployment(db: sqlite3.Connection, deployment_id: int):
    """A deployment with its image and the visibility columns of its request."""
    return db.execute(
        # Columns listed, not d.*: deployments.created_by (who deployed) would
        # shadow the request's created_by that the visibility rule reads.
        f"SELECT {DEPLOYMENT_COLUMNS}, i.image_tag, i.name AS image_name, i.version AS image_version, "
        "i.request_id, r.owner_id, r.created_by, r.collaborators, r.update_mode, "
        "r.repo_url, r.repo_branch, r.vcpu, r.ram_mb "
        "FROM deployments d JOIN images i ON i.id = d.image_id "
        "JOIN image_requests r ON r.id = i.request_id WHERE d.id = ?",
        (deployment_id,),
    ).fetchone()


# --- validation ----------------------------------------------------------------


def parse_ports(raw: str) -> tuple[str | None, str | None]:
    """``"8000:8000, 8001:8001"`` -> (``"8000:8000,8001:8001"``, None), or (None, error).
    Empty means no published ports (a worker)."""
    text = (raw or "").strip()
    if not text:
        return None, None
    pairs = [part.strip() for part in text.split(",")]
    if len(pairs) > MAX_PORT_PAIRS:
        return None, N_("Too many port pairs (at most 32).")
    seen = set()
    clean = []
    for pair in pairs:
        match = _PAIR.match(pair)
        if not match:
            return None, N_("Use host:container pairs separated by commas, e.g. 8000:8000,8001:8001.")
        host, container = int(match.group(1)), int(match.group(2))
        if not (1 <= host <= 65535 and 1 <= container <= 65535):
            return None, N_("Every port must be between 1 and 65535.")
        if host in seen:
            return None, N_("Each host port may appear only once.")
        seen.add(host)
        clean.append(f"{host}:{container}")
    return ",".join(clean), None


def validate_deployment_form(form) -> tuple[dict, dict]:
    """(clean values, errors by field). ``form`` is any mapping with ``get``."""
    errors: dict[str, str] = {}
    clean: dict = {}
    name = (form.get("name") or "").strip()
    if not name:
        errors["name"] = N_("Enter a name.")
    elif len(name) > MAX_NAME_LENGTH:
        errors["name"] = N_("The name is at most 80 characters long.")
    elif _CONTROL.search(name):
        errors["name"] = N_("The name contains characters that are not allowed.")
    clean["name"] = name

    environment = (form.get("environment") or "").strip()
    if environment not in ENVIRONMENTS:
        errors["environment"] = N_("Choose dev, staging or prod.")
    clean["environment"] = environment

    raw_replicas = str(form.get("replicas") if form.get("replicas") is not None else "").strip()
    try:
        replicas = int(raw_replicas)
    except ValueError:
        replicas = None
    if replicas is None or not 1 <= replicas <= MAX_REPLICAS:
        errors["replicas"] = N_("Replicas must be a whole number from 1 to 20.")
    clean["replicas"] = replicas if replicas is not None else raw_replicas

    ports, error = parse_ports(form.get("ports") or "")
    if error:
        errors["ports"] = error
        clean["ports"] = (form.get("ports") or "").strip()
    else:
        clean["ports"] = ports
    return clean, errors


# --- user actions ---------------------------------------------------------------


def _event(state, deployment_id: int, now: float, text: str, status: str | None) -> None:
    logs = state.runtime(deployment_id).logs
    logs.append(now, "EVENT", text)
    if status is not None:
        logs.set_status(status)


def create_deployment(db: sqlite3.Connection, state, image_row, user, form, now: float) -> int:
    """Create a deployment of ``image_row`` with its release v1, rolling out
    (``deploying``); in a protected environment v1 waits for approval and the
    deployment stays ``stopped`` until then. Raises ValidationError with every
    field's error; nothing is written then. Staff only."""
    if not permissions.can_create_deployment(user, image_row):
        raise Refused("forbidden", permissions.FORBIDDEN)
    clean, errors = validate_deployment_form(form)
    if errors:
        raise ValidationError(errors)
    stamp = utcnow_iso(now)
    with transaction(db):
        protected = is_protected(db, clean["environment"])
        deployment_id = db.execute(
            "INSERT INTO deployments (image_id, name, environment, status, replicas, ports, "
            "stopped_by_operator, needs_restart, created_at, updated_at, created_by, next_step_at, "
            "status_since) VALUES (?, ?, ?, ?, ?, ?, 0, 0, ?, ?, ?, NULL, ?)",
            (
                image_row["id"],
                clean["name"],
                clean["environment"],
                "stopped" if protected else "deploying",
                clean["replicas"],
                clean["ports"],
                stamp,
                stamp,
                user.id,
                now,
            ),
        ).lastrowid
        audit.record(
            db,
            "deployment_create",
            user_id=user.id,
            target_type="deployment",
            target_id=deployment_id,
            details={
                "name": clean["name"],
                "image": image_row["image_tag"],
                "image_id": image_row["id"],
                "environment": clean["environment"],
                "replicas": clean["replicas"],
                "ports": clean["ports"],
            },
            now=now,
        )
        commit = db.execute(
            "SELECT commit_sha FROM builds WHERE image_id = ? ORDER BY id DESC LIMIT 1", (image_row["id"],)
        ).fetchone()
        release_domain.propose_in_transaction(
            db,
            deployment_id,
            requested_by=user.id,
            trigger="user",
            cause="create",
            now=now,
            commit=commit[0] if commit else None,
            staff=True,
        )
    created = (
        f"Deployment {clean['name']} created by {user.username} from {image_row['image_tag']} "
        f"({clean['environment']}, {clean['replicas']} replica(s))"
    )
    if protected:
        _event(state, deployment_id, now, f"{created}; v1 waits for approval", "stopped")
    else:
        _event(state, deployment_id, now, created, "deploying")
    return deployment_id


def perform_action(db: sqlite3.Connection, state, deployment_row, user, action: str, now: float) -> str:
    """start | stop | restart | delete, if ``permissions.can_control_deployment``
    allows it and the action fits the current status. Returns the new status
    (``"deleted"``)."""
    if action not in ACTION_FROM_STATUSES:
        raise Refused("invalid", N_("Unknown action."))
    if not permissions.can_control_deployment(user, deployment_row, action):
        raise Refused("forbidden", permissions.FORBIDDEN)
    deployment_id = deployment_row["id"]
    stamp = utcnow_iso(now)
    staff = permissions.stops_as_operator(user)
    with transaction(db):
        current = db.execute(
            "SELECT d.status, d.name, d.environment, i.image_tag FROM deployments d "
            "JOIN images i ON i.id = d.image_id WHERE d.id = ?",
            (deployment_id,),
        ).fetchone()
        if current is None:
            raise Refused("not_found", N_("This deployment no longer exists."))
        if not action_applies(current["status"], action):
            raise Refused("conflict", REFUSALS[action])
        details = {"from": current["status"], "name": current["name"]}
        if action in ("start", "restart"):
            release_domain.redeploy_current_in_transaction(db, deployment_id, user_id=user.id, now=now)
        if action == "stop":
            release_domain.stopped_in_transaction(db, deployment_id, now)
            new_status = "stopped"
            db.execute(
                "UPDATE deployments SET status = 'stopped', next_step_at = NULL, status_since = ?, "
                "updated_at = ?, stopped_by_operator = CASE WHEN ? THEN 1 ELSE stopped_by_operator END "
                "WHERE id = ?",
                (now, stamp, staff, deployment_id),
            )
            details["by_operator"] = staff
        elif action == "start":
            new_status = "deploying"
            db.execute(
                "UPDATE deployments SET status = 'deploying', next_step_at = NULL, status_since = ?, "
                "updated_at = ?, stopped_by_operator = CASE WHEN ? THEN 0 ELSE stopped_by_operator END "
                "WHERE id = ?",
                (now, stamp, staff, deployment_id),
            )
        elif action == "restart":
            new_status = "deploying"
            db.execute(
                "UPDATE deployments SET status = 'deploying', next_step_at = NULL, status_since = ?, "
                "updated_at = ?, needs_restart = 0 WHERE id = ?",
                (now, stamp, deployment_id),
            )
        else:
            new_status = "deleted"
            details.update({"image": current["image_tag"], "environment": current["environment"]})
            db.execute("DELETE FROM deployments WHERE id = ?", (deployment_id,))
            # Its open alerts describe something that no longer exists.
            alert_domain.resolve_for_target(db, "deployment", deployment_id, now=now, actor_id=user.id)
        audit.record(
            db,
            f"deployment_{action}",
            user_id=user.id,
            target_type="deployment",
            target_id=deployment_id,
            details=details,
            now=now,
        )
    if new_status == "deleted":
        state.drop(deployment_id)
    else:
        past = {"start": "started", "stop": "stopped", "restart": "restarted"}[action]
        _event(state, deployment_id, now, f"Deployment {past} by {user.username}", new_status)
    return new_status


def restart_in_transaction(
    db: sqlite3.Connection,
    deployment_id: int,
    now: float,
    *,
    actor_id: int | None = None,
    reason: str,
    commit: str | None = None,
) -> tuple[int, bool] | None:
    """An automatic restart (the commit webhook), inside the caller's transaction, so
    the hook restarts many deployments per commit: a new release with ``commit``
    (running/deploying -> deploying, ``needs_restart`` cleared), or, in a protected
    environment, a pending one while the running release keeps running. None if the
    deployment is in no state to restart (stopped, failed, gone); else
    ``(release id, pending)``. After committing, the caller calls
    :func:`restarted_event` for each one restarted."""
    row = db.execute("SELECT status FROM deployments WHERE id = ?", (deployment_id,)).fetchone()
    if row is None or row["status"] not in AUTO_RESTART_FROM:
        return None
    release_id, pending = release_domain.propose_in_transaction(
        db, deployment_id, requested_by=actor_id, trigger="webhook", cause="commit", now=now, commit=commit
    )
    if not pending:
        audit.record(
            db,
            "deployment_restart",
            user_id=actor_id,
            target_type="deployment",
            target_id=deployment_id,
            details={"from": row["status"], "automatic": True, "reason": reason},
            now=now,
        )
    return release_id, pending


def restarted_event(state, deployment_id: int, now: float, reason: str) -> None:
    _event(state, deployment_id, now, f"Restarting: {reason}", "deploying")


# --- engine transitions ------------------------------------------------------------


def mark_running(db: sqlite3.Connection, state, deployment_id: int, *, since, now: float) -> bool:
    """deploying -> running, if the deployment is still in the rollout that began at
    ``since`` (a restart meanwhile starts a new one). Resolves its open
    ``deployment_failed`` alerts."""
    stamp = utcnow_iso(now)
    with transaction(db):
        row = db.execute(
            "SELECT d.name, d.replicas, i.image_tag FROM deployments d JOIN images i ON i.id = d.image_id "
            "WHERE d.id = ? AND d.status = 'deploying' AND d.status_since IS NOT DISTINCT FROM ?",
            (deployment_id, since),
        ).fetchone()
        if row is None:
            return False
        db.execute(
            "UPDATE deployments SET status = 'running', next_step_at = NULL, status_since = ?, "
            "updated_at = ? WHERE id = ?",
            (now, stamp, deployment_id),
        )
        release_domain.settle_in_transaction(db, deployment_id, "running", now)
        resolved = alert_domain.resolve_for_target(
            db, "deployment", deployment_id, alert_type="deployment_failed", now=now
        )
        audit.record(
            db,
            "deployment_running",
            target_type="deployment",
            target_id=deployment_id,
            details={"image": row["image_tag"], "resolved_alerts": resolved},
            now=now,
        )
    _event(
        state,
        deployment_id,
        now,
        f"{row['name']} is running: {row['replicas']}/{row['replicas']} replicas ready ({row['image_tag']})",
        "running",
    )
    return True


def mark_failed(
    db: sqlite3.Connection,
    state,
    deployment_id: int,
    reason: str,
    *,
    now: float,
    since=None,
    watchdog: bool = False,
) -> bool:
    """deploying -> failed with an alert and an audit row. With ``since``, only if
    the rollout that began then is still the current one."""
    stamp = utcnow_iso(now)
    with transaction(db):
        row = db.execute(
            "SELECT name, status, status_since FROM deployments WHERE id = ?", (deployment_id,)
        ).fetchone()
        if (
            row is None
            or row["status"] != "deploying"
            or (since is not None and row["status_since"] != since)
        ):
            return False
        db.execute(
            "UPDATE deployments SET status = 'failed', next_step_at = NULL, status_since = ?, "
            "updated_at = ? WHERE id = ?",
            (now, stamp, deployment_id),
        )
        release_domain.settle_in_transaction(db, deployment_id, "failed", now, reason)
        alert_domain.raise_alert(
            db,
            "deployment_failed",
            "deployment",
            deployment_id,
            params={"name": row["name"], "id": deployment_id, "reason": reason},
            now=now,
        )
        if watchdog:
            audit.record(
                db,
                "watchdog_timeout",
                target_type="deployment",
                target_id=deployment_id,
                details={"reason": reason},
                now=now,
            )
        audit.record(
            db,
            "deployment_failed",
            target_type="deployment",
            target_id=deployment_id,
            details={"reason": reason},
            now=now,
        )
    _event(state, deployment_id, now, f"Deployment failed: {reason}", "failed")
    return True
