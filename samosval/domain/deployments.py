"""Deployments: lookups and which action fits which status."""
from __future__ import annotations

import sqlite3

DEPLOYMENT_STATUSES = ("deploying", "running", "stopped", "failed")
ENVIRONMENTS = ("dev", "staging", "prod")

# Which statuses each action makes sense from. Anything else is refused with a
# clear message ("the deployment is already stopped").
ACTION_FROM_STATUSES = {
    "start": ("stopped", "failed"),
    "stop": ("running", "deploying"),
    "restart": ("running", "failed"),
    "delete": DEPLOYMENT_STATUSES,
}


def action_applies(status: str, action: str) -> bool:
    return status in ACTION_FROM_STATUSES.get(action, ())


def get_deployment(db: sqlite3.Connection, deployment_id: int):
    """A deployment with its image and the visibility columns of its request."""
    return db.execute(
        "SELECT d.*, i.image_tag, i.name AS image_name, i.version AS image_version, "
        "i.request_id, r.owner_id, r.created_by, r.collaborators, r.update_mode, "
        "r.repo_url, r.repo_branch, r.vcpu, r.ram_mb "
        "FROM deployments d JOIN images i ON i.id = d.image_id "
        "JOIN image_requests r ON r.id = i.request_id WHERE d.id = ?",
        (deployment_id,),
    ).fetchone()
