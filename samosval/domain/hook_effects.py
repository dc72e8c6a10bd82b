"""What a call of the commit hook does (spec 4.6): :func:`receive` takes it from
the raw call to the answer; a commit becomes a plan, then its application.

:func:`plan_commit` reads the database and decides: duplicate or not, which
continuous requests match, which running deployments restart and which are only
marked as needing a restart. :func:`apply_plan` writes that plan - restarts,
marks, the request's last commit, the delivery row, the token's last use and the
audit entries - and :func:`process` runs both in one transaction, then writes the
deployments' log lines. Every call leaves a delivery row, refused ones included
(:func:`refuse`), so "my push did nothing" always has a visible reason.

A token (a CI job, a git host) reaches every continuous request on the
repository and branch. A logged-in user (the "Simulate new commit" button)
reaches only what they may restart: the rule of the restart button.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field

from .. import audit, permissions
from ..db import transaction
from ..timeutil import utcnow_iso
from . import deployments as deployment_domain
from . import hook_parsing as parsing
from . import releases as release_domain
from . import tokens
from .hook_auth import Caller, Credentials, authenticate
from .hook_parsing import (
    R_AWAITING_APPROVAL,
    R_DUPLICATE,
    R_FORBIDDEN,
    R_NO_MATCH,
    R_NOTHING_RUNNING,
    R_ONLY_STATIC,
    R_PINNED,
    R_REPLAY,
    R_REVOKED_TOKEN,
    CommitEvent,
    join_reason,
)

# Deliveries with these outcomes were handled; a replay of one is a duplicate.
# A refused or invalid delivery may be redelivered once the cause is fixed.
HANDLED_OUTCOMES = ("processed", "no_match", "ignored", "pong")


@dataclass
class HookResult:
    outcome: str
    http_status: int = 200
    reason: str | None = None  # stored form (see join_reason)
    matched: list[int] = field(default_factory=list)
    restarted: list[int] = field(default_factory=list)
    marked: list[int] = field(default_factory=list)
    pinned: list[int] = field(default_factory=list)  # left alone: pinned after a rollback
    pending: list[int] = field(default_factory=list)  # deployments whose new release waits
    delivery_id: int | None = None
    duplicate_of: int | None = None
    missing: list[str] = field(default_factory=list)


@dataclass
class Plan:
    """What an authenticated, parsed event will do. Built by :func:`plan_commit`."""

    event: CommitEvent
    caller: Caller
    outcome: str
    http_status: int = 200
    reason: str | None = None
    duplicate_of: int | None = None
    matched: list[int] = field(default_factory=list)  # continuous requests
    repo_key: str | None = None  # the key they are filed under
    restart: list[int] = field(default_factory=list)  # running deployments
    mark: list[tuple[int, str]] = field(default_factory=list)  # (deployment, why it is not restarted)
    pinned: list[int] = field(default_factory=list)  # pinned after a rollback: left alone


# --- reading ---------------------------------------------------------------------------------


def find_requests(db: sqlite3.Connection, repo_keys: list[str], branch: str | None):
    """Every request (continuous or static) on one of ``repo_keys`` and ``branch``."""
    if not repo_keys or not branch:
        return []
    marks = ", ".join("?" * len(repo_keys))
    return db.execute(
        f"SELECT * FROM image_requests WHERE repo_key IN ({marks}) AND repo_branch = ? ORDER BY id",
        [*repo_keys, branch],
    ).fetchall()


def _deployments_of(db: sqlite3.Connection, request_ids: list[int]):
    """Deployments with the columns of their request, for permission questions."""
    if not request_ids:
        return []
    marks = ", ".join("?" * len(request_ids))
    return db.execute(
        "SELECT d.*, r.owner_id, r.created_by AS request_created_by, r.collaborators "
        "FROM deployments d JOIN images i ON i.id = d.image_id "
        f"JOIN image_requests r ON r.id = i.request_id WHERE i.request_id IN ({marks}) ORDER BY d.id",
        request_ids,
    ).fetchall()


def _handled(column: str = "outcome") -> tuple[str, tuple]:
    return f"{column} IN ({', '.join('?' * len(HANDLED_OUTCOMES))})", HANDLED_OUTCOMES


def _find_duplicate(db: sqlite3.Connection, event: CommitEvent, caller: Caller):
    """An earlier handled delivery this one repeats, as ``(id, reason)``, or None.

    - the same delivery id from the same sender (token or user) for the same
      repository: a git host's retry, a CI job's Idempotency-Key;
    - the same signed body from the same token: a replay, whatever delivery id
      it now carries;
    - the same commit already processed for the repository and branch by a token
      or by staff (a developer's button press reached only their own deployments,
      so it must not make the git host's delivery of that commit a duplicate).
    """
    handled, handled_params = _handled()
    keys = ", ".join("?" * len(event.repo_keys))
    if event.delivery_key and event.repo_keys:
        row = db.execute(
            f"SELECT id FROM webhook_deliveries WHERE delivery_key = ? AND token_id IS NOT DISTINCT FROM ? "
            f"AND user_id IS NOT DISTINCT FROM ? "
            f"AND repo_key IN ({keys}) AND {handled} ORDER BY id LIMIT 1",
            (event.delivery_key, caller.token_id, caller.user_id, *event.repo_keys, *handled_params),
        ).fetchone()
        if row:
            return row["id"], R_DUPLICATE
    if caller.signed and event.body_digest:
        row = db.execute(
            f"SELECT id FROM webhook_deliveries WHERE body_digest = ? AND token_id = ? AND {handled} "
            "ORDER BY id LIMIT 1",
            (event.body_digest, caller.token_id, *handled_params),
        ).fetchone()
        if row:
            return row["id"], R_REPLAY
    if event.commit and event.repo_keys and event.branch:
        staff = ", ".join("?" * len(permissions.STAFF_ROLES))
        row = db.execute(
            f"SELECT d.id FROM webhook_deliveries d LEFT JOIN users u ON u.id = d.user_id "
            f"WHERE d.repo_key IN ({keys}) AND d.branch = ? AND d.commit_sha = ? "
            f"AND d.outcome = 'processed' AND (d.user_id IS NULL OR u.role IN ({staff})) "
            "ORDER BY d.id LIMIT 1",
            (*event.repo_keys, event.branch, event.commit, *permissions.STAFF_ROLES),
        ).fetchone()
        if row:
            return row["id"], R_DUPLICATE
    return None


def _reaches_everything(caller: Caller) -> bool:
    return caller.is_token or permissions.is_staff(caller.user)


def plan_commit(db: sqlite3.Connection, event: CommitEvent, caller: Caller) -> Plan:
    """Decide what ``event`` does; reads only. Call inside the transaction that
    applies the plan, so no concurrent delivery slips between the two."""
    requests = None
    if not _reaches_everything(caller):
        # A developer only for requests whose deployments they may restart. One
        # refusal for "hidden" and "none": nothing leaks.
        requests = [
            r
            for r in find_requests(db, event.repo_keys, event.branch)
            if permissions.can_simulate_commit(caller.user, r)
        ]
        if not requests:
            return Plan(event, caller, outcome="refused", http_status=403, reason=R_FORBIDDEN)
    if event.ignored:
        return Plan(event, caller, outcome="pong" if event.pong else "ignored", reason=event.ignored)
    duplicate = _find_duplicate(db, event, caller)
    if duplicate is not None:
        return Plan(
            event,
            caller,
            outcome="duplicate",
            duplicate_of=duplicate[0],
            reason=join_reason(duplicate[1], f"#{duplicate[0]}"),
        )
    rows = requests if requests is not None else find_requests(db, event.repo_keys, event.branch)
    continuous = [r for r in rows if r["update_mode"] == "continuous"]
    if not continuous:
        return Plan(event, caller, outcome="no_match", reason=R_ONLY_STATIC if rows else R_NO_MATCH)
    # The key the requests are filed under, so a replay of the same commit written
    # in another URL form is recognised.
    plan = Plan(
        event,
        caller,
        outcome="processed",
        matched=[r["id"] for r in continuous],
        repo_key=continuous[0]["repo_key"],
    )
    for deployment in _deployments_of(db, plan.matched):
        if not _reaches_everything(caller) and not permissions.can_control_deployment(
            caller.user, deployment, "restart"
        ):
            continue  # not theirs to restart: left alone, not even named
        if deployment["pinned_at"]:
            plan.pinned.append(deployment["id"])  # a rollback holds it where it is
            continue
        if (
            deployment["status"] in deployment_domain.AUTO_RESTART_FROM
            and not deployment["stopped_by_operator"]
        ):
            plan.restart.append(deployment["id"])
            continue
        # A commit never starts a deployment. It is marked, so whoever starts it
        # next knows a newer commit is waiting, and its log says why.
        why = (
            "it was stopped by an operator"
            if deployment["stopped_by_operator"]
            else f"it is {deployment['status']}"
        )
        plan.mark.append((deployment["id"], why))
    if plan.pinned:
        plan.reason = join_reason(R_PINNED, ", ".join(f"#{i}" for i in plan.pinned))
    elif not plan.restart and not plan.mark:
        plan.reason = R_NOTHING_RUNNING
    return plan


# --- writing ---------------------------------------------------------------------------------


def _insert_delivery(
    db,
    now,
    event: CommitEvent | None,
    caller: Caller | None,
    result: HookResult,
    *,
    source: str,
    repo_key: str | None = None,
) -> int:
    caller = caller or Caller()
    return db.execute(
        "INSERT INTO webhook_deliveries (created_at, source, event, delivery_key, repo_url, repo_key, "
        "branch, commit_sha, user_id, token_id, outcome, reason, http_status, matched_request_ids, "
        "restarted_ids, marked_ids, body_digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            utcnow_iso(now),
            source,
            event.event if event else None,
            event.delivery_key if event else None,
            event.repo_url if event else None,
            repo_key or (event.repo_key if event else None),
            event.branch if event else None,
            event.commit if event else None,
            caller.user_id,
            caller.token_id,
            result.outcome,
            result.reason,
            result.http_status,
            json.dumps(result.matched),
            json.dumps(result.restarted),
            json.dumps(result.marked),
            event.body_digest if event else None,
        ),
    ).lastrowid


def refuse(
    db: sqlite3.Connection,
    now: float,
    *,
    source: str,
    reason: str,
    http_status: int,
    event: CommitEvent | None = None,
    caller: Caller | None = None,
    outcome: str = "refused",
    missing: list[str] | None = None,
) -> HookResult:
    """Record a call that was not accepted (401, 403, 400, 413) and audit it.
    Never receives the presented token: only the id of a known (revoked) one."""
    result = HookResult(outcome=outcome, http_status=http_status, reason=reason, missing=list(missing or []))
    with transaction(db):
        _record_refusal(db, now, source, event, caller, result)
    return result


def _record_refusal(
    db, now, source: str, event: CommitEvent | None, caller: Caller | None, result: HookResult
) -> None:
    result.delivery_id = _insert_delivery(db, now, event, caller, result, source=source)
    if caller is not None and caller.is_token and result.reason != R_REVOKED_TOKEN:
        # A valid token with a bad payload was still used: the token list shows it.
        tokens.touch(db, caller.token_id, now)
    details = {
        "source": source,
        "reason": result.reason,
        "status": result.http_status,
        "delivery": result.delivery_id,
        **(caller.describe() if caller else {}),
    }
    if event is not None and event.repo_key:
        details.update(repo=event.repo_url, branch=event.branch, sha=event.commit)
    audit.record(
        db,
        "commit_hook_refused",
        user_id=caller.user_id if caller else None,
        target_type="delivery",
        target_id=result.delivery_id,
        details=details,
        now=now,
    )


def source_label(event: CommitEvent, caller: Caller) -> str:
    who = caller.token_name if caller.is_token else caller.username
    return f"{event.source} ({who})" if who else event.source


def _mark_line(event: CommitEvent, label: str, why: str) -> str:
    return (
        f"commit {event.commit[:12]} received from {label}; not restarted because {why}: "
        "marked as needing a restart"
    )


def apply_plan(
    db: sqlite3.Connection, plan: Plan, now: float
) -> tuple[HookResult, list[tuple[int, str, bool]]]:
    """Write ``plan`` inside the caller's transaction. Returns the result and the
    log lines to append once committed: ``(deployment id, text, restarted)``."""
    event, caller = plan.event, plan.caller
    result = HookResult(
        outcome=plan.outcome,
        http_status=plan.http_status,
        reason=plan.reason,
        matched=list(plan.matched),
        duplicate_of=plan.duplicate_of,
    )
    if plan.outcome == "refused":
        _record_refusal(db, now, event.source, event, caller, result)
        return result, []
    lines: list[tuple[int, str, bool]] = []
    if plan.matched:
        db.execute(
            f"UPDATE image_requests SET last_commit = ? WHERE id IN ({', '.join('?' * len(plan.matched))})",
            [event.commit, *plan.matched],
        )
    label = source_label(event, caller)
    reason = f"commit {event.commit[:12]} received from {label}" if event.commit else ""
    new_releases = []
    for deployment_id in plan.restart:
        outcome = deployment_domain.restart_in_transaction(
            db, deployment_id, now, actor_id=caller.user_id, reason=reason, commit=event.commit
        )
        if outcome is None:  # no longer running: the same as any other non-running one
            plan.mark.append((deployment_id, "it is no longer running"))
            continue
        new_releases.append(outcome[0])
        if outcome[1]:
            result.pending.append(deployment_id)
            lines.append(
                (
                    deployment_id,
                    f"{reason}: the new release waits for approval (protected environment)",
                    False,
                )
            )
        else:
            result.restarted.append(deployment_id)
            lines.append((deployment_id, reason, True))
    for deployment_id in plan.pinned:
        result.pinned.append(deployment_id)
        lines.append((deployment_id, f"{reason}: not restarted, the deployment is pinned", False))
    if result.pending and not result.pinned:
        result.reason = join_reason(R_AWAITING_APPROVAL, ", ".join(f"#{i}" for i in result.pending))
    for deployment_id, why in plan.mark:
        db.execute(
            "UPDATE deployments SET needs_restart = 1, updated_at = ? WHERE id = ?",
            (utcnow_iso(now), deployment_id),
        )
        result.marked.append(deployment_id)
        lines.append((deployment_id, _mark_line(event, label, why), False))
    result.marked.sort()
    result.delivery_id = _insert_delivery(
        db, now, event, caller, result, source=event.source, repo_key=plan.repo_key
    )
    release_domain.attach_delivery_in_transaction(db, new_releases, result.delivery_id)
    if caller.is_token:
        tokens.touch(db, caller.token_id, now)
    audit.record(
        db,
        "commit_hook_received",
        user_id=caller.user_id,
        target_type="delivery",
        target_id=result.delivery_id,
        now=now,
        details={
            "repo": event.repo_url,
            "branch": event.branch,
            "sha": event.commit,
            "source": event.source,
            "outcome": result.outcome,
            "matched": result.matched,
            "pinned": result.pinned,
            **caller.describe(),
        },
    )
    if result.restarted or result.marked:
        audit.record(
            db,
            "deployments_restarted",
            user_id=caller.user_id,
            now=now,
            target_type="delivery",
            target_id=result.delivery_id,
            details={
                "ids": result.restarted,
                "marked": result.marked,
                "sha": event.commit,
                "source": event.source,
                **caller.describe(),
            },
        )
    return result, lines


def receive(
    db: sqlite3.Connection,
    state,
    *,
    headers,
    body: bytes | None,
    content_type: str | None,
    credentials: Credentials,
    now: float,
    secret_key: str | bytes,
    token_id: int | None = None,
) -> tuple[HookResult, Caller | None]:
    """One call of the hook, start to end: authenticate, parse, plan and apply.
    ``body`` is None when it was over :data:`hook_parsing.MAX_BODY`. Every outcome,
    refusals included, is a delivery row. Returns the result and who called."""
    detected = parsing.detect_source(headers)
    if body is None:
        return refuse(db, now, source=detected, reason=parsing.R_TOO_LARGE, http_status=413), None
    caller, refusal = authenticate(db, credentials, secret_key=secret_key, token_id=token_id)
    if refusal:
        return refuse(db, now, source=detected, reason=refusal, http_status=401, caller=caller), caller
    # A logged-in user calling from the page is the "ui" source whatever the body.
    source = detected if caller.is_token else "ui"
    try:
        event = parsing.parse(headers, body, content_type, source=source)
    except parsing.PayloadError as exc:
        return refuse(
            db,
            now,
            source=source,
            http_status=400,
            outcome="invalid",
            caller=caller,
            reason=parsing.join_reason(exc.reason, exc.detail),
            missing=exc.missing,
        ), caller
    return process(db, state, event, caller, now), caller


def process(db: sqlite3.Connection, state, event: CommitEvent, caller: Caller, now: float) -> HookResult:
    """Plan and apply ``event`` in one transaction, then write the deployments' log
    lines (the live log is memory, not the database)."""
    with transaction(db):
        plan = plan_commit(db, event, caller)
        result, lines = apply_plan(db, plan, now)
    for deployment_id, text, restarted in lines:
        if restarted:
            deployment_domain.restarted_event(state, deployment_id, now, text)
        else:
            state.runtime(deployment_id).logs.append(now, "EVENT", text)
    return result
