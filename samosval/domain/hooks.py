"""The commit hook: what a push to a repository does (spec 4.6, 9.9).

Three payloads arrive at one endpoint: the spec's generic JSON (``curl``, any
CI job), GitHub push events (JSON or form-encoded ``payload=``) and GitLab push
hooks. Each becomes a :class:`CommitEvent`; :func:`process` then restarts the
running deployments of every *continuous* request on that repository and branch,
marks the ones an operator stopped, and records one ``webhook_deliveries`` row
and the audit entries in the same transaction. Every call leaves a delivery row,
refused ones included, so "my push did nothing" always has a visible reason.

Events that change nothing (GitHub's ping, tag pushes, branch deletions,
``[skip ci]``) are answered 2xx: git hosts disable hooks that keep failing.
"""
from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from .. import access, audit
from ..db import transaction
from ..timeutil import utcnow_iso
from . import N_
from .repos import normalize_repo_url

SOURCES = ("generic", "github", "gitlab", "ui")
OUTCOMES = ("processed", "no_match", "duplicate", "ignored", "pong", "refused", "invalid")
# Deliveries with these outcomes were handled; a replay of one is a duplicate.
# A refused or invalid delivery may be redelivered once the cause is fixed.
HANDLED_OUTCOMES = ("processed", "no_match", "ignored", "pong")

SHA_RE = re.compile(r"^[0-9a-f]{7,64}$")
ZERO_SHA_RE = re.compile(r"^0+$")
SKIP_MARKERS = ("[skip ci]", "[skip deploy]")
MAX_BRANCH_LENGTH = 255
MAX_URL_LENGTH = 2000
RESTART_BATCH = 100  # deployments restarted per transaction

# Reasons, stored in English in webhook_deliveries.reason and translated on display.
# A reason may carry a literal detail after ": " (field names, a delivery id).
R_NO_CREDENTIALS = N_("no credentials: send a token, a GitHub signature or a logged-in session")
R_UNKNOWN_TOKEN = N_("unknown token")
R_REVOKED_TOKEN = N_("token revoked")
R_SIGNATURE = N_("signature mismatch")
R_CSRF = N_("missing or invalid CSRF token")
R_FORBIDDEN = N_("not allowed to simulate commits for this repository")
R_TOO_LARGE = N_("body larger than 1 MiB")
R_NOT_JSON = N_("the body is not JSON")
R_NOT_OBJECT = N_("the body must be a JSON object")
R_NO_PAYLOAD = N_("form-encoded body without a payload field")
R_MISSING = N_("missing fields")
R_BAD_URL = N_("not a repository URL")
R_BAD_COMMIT = N_("commit must be a hexadecimal sha of 7 to 64 characters")
R_BAD_BRANCH = N_("branch must be a non-empty branch name")
R_PONG = N_("ping answered with pong")
R_NOT_PUSH = N_("not a push event")
R_TAG = N_("tag push: only branch pushes restart deployments")
R_DELETED = N_("branch deleted")
R_SKIP_CI = N_("skipped by [skip ci]")
R_SKIP_DEPLOY = N_("skipped by [skip deploy]")
R_NO_MATCH = N_("no continuous request for this repository and branch")
R_ONLY_STATIC = N_("only static requests for this repository and branch: they are never restarted")
R_DUPLICATE = N_("already processed")
R_NOTHING_RUNNING = N_("matched, but no deployment to restart")


class PayloadError(Exception):
    """The body cannot be understood. ``reason`` is one of the R_* texts, ``detail``
    a literal addition (the missing field names)."""

    def __init__(self, reason: str, detail: str | None = None, missing: list[str] | None = None):
        super().__init__(join_reason(reason, detail))
        self.reason = reason
        self.detail = detail
        self.missing = list(missing or [])


def join_reason(reason: str | None, detail: str | None = None) -> str | None:
    if reason and detail:
        return f"{reason}: {detail}"
    return reason


def split_reason(stored: str | None) -> tuple[str | None, str | None]:
    """Undo :func:`join_reason` for display: the translatable part and the detail."""
    if not stored:
        return None, None
    for known in _KNOWN_REASONS:
        if stored == known:
            return stored, None
        if stored.startswith(known + ": "):
            return known, stored[len(known) + 2:]
    return stored, None


_KNOWN_REASONS = sorted((value for name, value in globals().items() if name.startswith("R_")),
                        key=len, reverse=True)


@dataclass
class CommitEvent:
    """One call of the hook, understood."""
    source: str
    event: str | None = None
    repo_url: str | None = None
    repo_keys: list[str] = field(default_factory=list)
    branch: str | None = None
    commit: str | None = None
    delivery_key: str | None = None
    ignored: str | None = None  # a reason: the event changes nothing
    pong: bool = False

    @property
    def repo_key(self) -> str | None:
        return self.repo_keys[0] if self.repo_keys else None


@dataclass
class Caller:
    """Who called: a token (CI, git host) or a logged-in user (the UI button)."""
    user_id: int | None = None
    username: str | None = None
    token_id: int | None = None
    token_name: str | None = None

    def describe(self) -> dict:
        if self.token_id is not None:
            return {"token_id": self.token_id, "token": self.token_name}
        if self.user_id is not None:
            return {"user_id": self.user_id, "user": self.username}
        return {}


@dataclass
class HookResult:
    outcome: str
    http_status: int = 200
    reason: str | None = None  # stored form (see join_reason)
    matched: list[int] = field(default_factory=list)
    restarted: list[int] = field(default_factory=list)
    marked: list[int] = field(default_factory=list)
    delivery_id: int | None = None
    duplicate_of: int | None = None
    missing: list[str] = field(default_factory=list)
    repo_key: str | None = None  # the key the matched requests are filed under


# --- reading the call --------------------------------------------------------------

def detect_source(headers) -> str:
    if headers.get("X-GitHub-Event"):
        return "github"
    if headers.get("X-Gitlab-Event"):
        return "gitlab"
    return "generic"


def delivery_key(headers, source: str) -> str | None:
    """The caller's id of this delivery, scoped by source. Git hosts keep it on retries."""
    for name in ("X-GitHub-Delivery", "Idempotency-Key", "X-Gitlab-Event-UUID"):
        value = (headers.get(name) or "").strip()
        if value:
            return f"{source}:{value[:200]}"
    return None


def decode_body(body: bytes, content_type: str | None) -> dict:
    """JSON, or GitHub's form encoding with the JSON in a ``payload`` field."""
    mimetype = (content_type or "").split(";", 1)[0].strip().lower()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadError(R_NOT_JSON) from None
    if mimetype == "application/x-www-form-urlencoded":
        fields = parse_qs(text, keep_blank_values=True)
        if not fields.get("payload"):
            raise PayloadError(R_NO_PAYLOAD, "payload", missing=["payload"])
        text = fields["payload"][0]
    try:
        data = json.loads(text)
    except ValueError:
        raise PayloadError(R_NOT_JSON) from None
    if not isinstance(data, dict):
        raise PayloadError(R_NOT_OBJECT)
    return data


def parse(headers, body: bytes, content_type: str | None, *, source: str | None = None) -> CommitEvent:
    """Turn a call into a :class:`CommitEvent`, or raise :class:`PayloadError`."""
    detected = detect_source(headers)
    source = source or detected
    event = CommitEvent(source=source, delivery_key=delivery_key(headers, detected))
    if detected == "github":
        event.event = headers.get("X-GitHub-Event")
        if event.event == "ping":
            # The ping may come form-encoded or with any body; it needs nothing from it.
            event.pong, event.ignored = True, R_PONG
            return event
        data = decode_body(body, content_type)
        _parse_github(event, data)
    elif detected == "gitlab":
        event.event = headers.get("X-Gitlab-Event")
        data = decode_body(body, content_type)
        _parse_gitlab(event, data)
    else:
        event.event = "commit"
        data = decode_body(body, content_type)
        _parse_generic(event, data)
    return event


def _text(value) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _require(values: dict) -> None:
    missing = [name for name, value in values.items() if value is None]
    if missing:
        raise PayloadError(R_MISSING, ", ".join(missing), missing=missing)


_URL_CREDENTIALS = re.compile(r"^(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<userinfo>[^@/\s]+)@", re.IGNORECASE)


def strip_credentials(url: str) -> str:
    """Drop ``user:password@`` from a URL before it is stored or shown: CI variables
    such as GitLab's CI_REPOSITORY_URL carry a job token there. ``git@`` of an SSH
    URL is kept (it is no secret)."""
    match = _URL_CREDENTIALS.match(url)
    if match and (":" in match.group("userinfo") or match.group("scheme").lower().startswith("http")):
        return match.group("scheme") + url[match.end():]
    return url


def _set_repo(event: CommitEvent, urls: list) -> None:
    urls = [strip_credentials(u) for u in (_text(u) for u in urls) if u]
    event.repo_url = urls[0][:MAX_URL_LENGTH] if urls else None
    keys = []
    for url in urls:
        key = normalize_repo_url(url[:MAX_URL_LENGTH])
        if key and key not in keys:
            keys.append(key)
    if not keys:
        raise PayloadError(R_BAD_URL, "repo_url" if event.source in ("generic", "ui") else "repository")
    event.repo_keys = keys


def _set_branch(event: CommitEvent, ref: str) -> bool:
    """Branch from a ref or a plain name; False when the ref is not a branch."""
    if ref.startswith("refs/tags/"):
        event.ignored = R_TAG
        event.branch = ref[len("refs/tags/"):]
        return False
    if ref.startswith("refs/heads/"):
        ref = ref[len("refs/heads/"):]
    elif ref.startswith("refs/"):
        event.ignored = R_NOT_PUSH
        return False
    if not ref or len(ref) > MAX_BRANCH_LENGTH or any(c.isspace() for c in ref):
        raise PayloadError(R_BAD_BRANCH, "branch")
    event.branch = ref
    return True


def _set_commit(event: CommitEvent, sha: str) -> None:
    sha = sha.lower()
    if not SHA_RE.match(sha):
        raise PayloadError(R_BAD_COMMIT, "commit")
    event.commit = sha


def _skip_reason(message) -> str | None:
    text = (message or "").lower() if isinstance(message, str) else ""
    if SKIP_MARKERS[0] in text:
        return R_SKIP_CI
    if SKIP_MARKERS[1] in text:
        return R_SKIP_DEPLOY
    return None


def _parse_generic(event: CommitEvent, data: dict) -> None:
    repo_url, branch, commit = (_text(data.get(k)) for k in ("repo_url", "branch", "commit"))
    _require({"repo_url": repo_url, "branch": branch, "commit": commit})
    _set_repo(event, [repo_url])
    if _set_branch(event, branch):
        _set_commit(event, commit)
        event.ignored = _skip_reason(data.get("message"))


def _parse_github(event: CommitEvent, data: dict) -> None:
    if event.event != "push":
        event.ignored = R_NOT_PUSH
        return
    repository = data.get("repository") if isinstance(data.get("repository"), dict) else {}
    ref, after = _text(data.get("ref")), _text(data.get("after"))
    urls = [repository.get(k) for k in ("clone_url", "html_url", "ssh_url", "git_url", "url")]
    _require({"ref": ref, "after": after,
              "repository.clone_url": next((u for u in map(_text, urls) if u), None)})
    _set_repo(event, urls)
    if not _set_branch(event, ref):
        return
    if data.get("deleted") is True or ZERO_SHA_RE.match(after):
        event.ignored = R_DELETED
        return
    _set_commit(event, after)
    head = data.get("head_commit") if isinstance(data.get("head_commit"), dict) else {}
    event.ignored = _skip_reason(head.get("message"))


def _parse_gitlab(event: CommitEvent, data: dict) -> None:
    kind = event.event or ""
    if kind == "Tag Push Hook":
        event.ignored = R_TAG
        return
    if kind != "Push Hook":
        event.ignored = R_NOT_PUSH
        return
    project = data.get("project") if isinstance(data.get("project"), dict) else {}
    repository = data.get("repository") if isinstance(data.get("repository"), dict) else {}
    urls = [project.get(k) for k in ("git_http_url", "git_ssh_url", "web_url")] + \
        [repository.get(k) for k in ("git_http_url", "git_ssh_url", "url", "homepage")]
    ref = _text(data.get("ref"))
    checkout_sha, after = _text(data.get("checkout_sha")), _text(data.get("after"))
    _require({"ref": ref, "checkout_sha": checkout_sha or after,
              "project.git_http_url": next((u for u in map(_text, urls) if u), None)})
    _set_repo(event, urls)
    if not _set_branch(event, ref):
        return
    if checkout_sha is None and after and ZERO_SHA_RE.match(after):
        event.ignored = R_DELETED
        return
    _set_commit(event, checkout_sha or after)
    raw_commits = data.get("commits")
    # Anything but a list (a number, true) is junk to skip, not to iterate.
    commits = [c for c in raw_commits if isinstance(c, dict)] if isinstance(raw_commits, list) else []
    head = next((c for c in commits if c.get("id") == checkout_sha), commits[-1] if commits else {})
    event.ignored = _skip_reason(head.get("message"))


# --- what the commit touches ----------------------------------------------------------

def find_requests(db: sqlite3.Connection, repo_keys: list[str], branch: str | None):
    """Every request (continuous or static) on one of ``repo_keys`` and ``branch``."""
    if not repo_keys or not branch:
        return []
    marks = ", ".join("?" * len(repo_keys))
    return db.execute(
        f"SELECT * FROM image_requests WHERE repo_key IN ({marks}) AND repo_branch = ? ORDER BY id",
        [*repo_keys, branch]).fetchall()


def _deployments_of(db: sqlite3.Connection, request_ids: list[int]):
    if not request_ids:
        return []
    marks = ", ".join("?" * len(request_ids))
    return db.execute(
        f"SELECT d.* FROM deployments d JOIN images i ON i.id = d.image_id "
        f"WHERE i.request_id IN ({marks}) ORDER BY d.id", request_ids).fetchall()


def _find_duplicate(db: sqlite3.Connection, event: CommitEvent):
    """An earlier handled delivery with the same id, or the same commit already
    processed for the same repository and branch."""
    marks = ", ".join("?" * len(HANDLED_OUTCOMES))
    if event.delivery_key:
        row = db.execute(
            f"SELECT id FROM webhook_deliveries WHERE delivery_key = ? AND outcome IN ({marks}) "
            "ORDER BY id LIMIT 1", (event.delivery_key, *HANDLED_OUTCOMES)).fetchone()
        if row:
            return row
    if event.commit and event.repo_keys and event.branch:
        keys = ", ".join("?" * len(event.repo_keys))
        # A developer's button press reached only their own requests (see the route),
        # so it must not make the git host's delivery of that commit a duplicate.
        return db.execute(
            f"SELECT d.id FROM webhook_deliveries d LEFT JOIN users u ON u.id = d.user_id "
            f"WHERE d.repo_key IN ({keys}) AND d.branch = ? AND d.commit_sha = ? "
            "AND d.outcome = 'processed' AND (d.user_id IS NULL OR u.role IN "
            f"({', '.join('?' * len(access.STAFF_ROLES))})) ORDER BY d.id LIMIT 1",
            (*event.repo_keys, event.branch, event.commit, *access.STAFF_ROLES)).fetchone()
    return None


def _insert_delivery(db, now, event: CommitEvent | None, caller: Caller | None, result: HookResult,
                     *, source: str, repo_key: str | None = None) -> int:
    caller = caller or Caller()
    return db.execute(
        "INSERT INTO webhook_deliveries (created_at, source, event, delivery_key, repo_url, repo_key, "
        "branch, commit_sha, user_id, token_id, outcome, reason, http_status, matched_request_ids, "
        "restarted_ids, marked_ids) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (utcnow_iso(now), source, event.event if event else None,
         event.delivery_key if event else None, event.repo_url if event else None,
         repo_key or (event.repo_key if event else None), event.branch if event else None,
         event.commit if event else None, caller.user_id, caller.token_id, result.outcome,
         result.reason, result.http_status, json.dumps(result.matched), json.dumps(result.restarted),
         json.dumps(result.marked))).lastrowid


def refuse(db: sqlite3.Connection, now: float, *, source: str, reason: str, http_status: int,
           event: CommitEvent | None = None, caller: Caller | None = None,
           outcome: str = "refused", missing: list[str] | None = None) -> HookResult:
    """Record a call that was not accepted (401, 403, 400, 413) and audit it.
    Never receives the presented token: only the id of a known (revoked) one."""
    result = HookResult(outcome=outcome, http_status=http_status, reason=reason,
                        missing=list(missing or []))
    with transaction(db):
        result.delivery_id = _insert_delivery(db, now, event, caller, result, source=source)
        if caller is not None and caller.token_id is not None and reason != R_REVOKED_TOKEN:
            # A valid token with a bad payload was still used: the token list shows it.
            from . import tokens
            tokens.touch(db, caller.token_id, now)
        details = {"source": source, "reason": reason, "status": http_status,
                   "delivery": result.delivery_id, **(caller.describe() if caller else {})}
        if event is not None and event.repo_key:
            details.update(repo=event.repo_url, branch=event.branch, sha=event.commit)
        audit.record(db, "commit_hook_refused", user_id=caller.user_id if caller else None,
                     target_type="delivery", target_id=result.delivery_id, details=details, now=now)
    return result


def _audit_received(db, now, event: CommitEvent, caller: Caller, result: HookResult) -> None:
    audit.record(db, "commit_hook_received", user_id=caller.user_id, target_type="delivery",
                 target_id=result.delivery_id, now=now, details={
                     "repo": event.repo_url, "branch": event.branch, "sha": event.commit,
                     "source": event.source, "outcome": result.outcome,
                     "matched": result.matched, **caller.describe()})


def process(db: sqlite3.Connection, state, event: CommitEvent, caller: Caller, now: float, *,
            requests=None) -> HookResult:
    """Apply an authenticated, parsed event. ``requests``: the rows of
    :func:`find_requests` when the caller already looked them up.

    Short transactions: (1) the duplicate check, the delivery row (already
    'processed', so a concurrent replay of the same commit is recognised), the
    request's commit and the marks; (2) the restarts, RESTART_BATCH running
    deployments per transaction; (3) the final counts, the token's last use and
    the audit entries.
    """
    from . import deployments as deployment_domain

    to_restart: list[int] = []
    log_lines: list[tuple[int, str]] = []
    with transaction(db):
        if event.ignored:
            result = HookResult(outcome="pong" if event.pong else "ignored", reason=event.ignored)
        elif (duplicate := _find_duplicate(db, event)) is not None:
            result = HookResult(outcome="duplicate", duplicate_of=duplicate["id"],
                                reason=join_reason(R_DUPLICATE, f"#{duplicate['id']}"))
        else:
            result = _plan(db, event, caller, now, requests, to_restart, log_lines)
        result.delivery_id = _insert_delivery(db, now, event, caller, result, source=event.source,
                                              repo_key=result.repo_key)
        if not to_restart:
            _finish(db, now, event, caller, result)
    for deployment_id, text in log_lines:
        state.runtime(deployment_id).logs.append(now, "EVENT", text)
    if not to_restart:
        return result

    label = _source_label(event, caller)
    reason = f"commit {event.commit[:12]} received from {label}"
    # One transaction per RESTART_BATCH deployments: two commits per deployment made
    # a 1,000-deployment push take ~450 ms; batches still free the write lock often.
    for start in range(0, len(to_restart), RESTART_BATCH):
        batch, restarted = to_restart[start:start + RESTART_BATCH], set()
        with transaction(db):
            for deployment_id in batch:
                if deployment_domain.restart_in_transaction(db, deployment_id, now, actor_id=caller.user_id,
                                                            reason=reason, commit=event.commit):
                    restarted.add(deployment_id)
                else:  # stopped or failed in the meantime: same as any non-running one
                    _mark(db, now, deployment_id)
                    result.marked.append(deployment_id)
        for deployment_id in batch:
            if deployment_id in restarted:
                result.restarted.append(deployment_id)
                deployment_domain.restarted_event(state, deployment_id, now, reason)
            else:
                state.runtime(deployment_id).logs.append(now, "EVENT", _mark_line(event, label, "it is no longer running"))
    with transaction(db):
        result.marked.sort()
        if not result.restarted and not result.marked:
            result.reason = R_NOTHING_RUNNING
        db.execute("UPDATE webhook_deliveries SET restarted_ids = ?, marked_ids = ?, reason = ? "
                   "WHERE id = ?", (json.dumps(result.restarted), json.dumps(result.marked),
                                    result.reason, result.delivery_id))
        _finish(db, now, event, caller, result)
    return result


def _finish(db, now, event: CommitEvent, caller: Caller, result: HookResult) -> None:
    if caller.token_id is not None:
        from . import tokens
        tokens.touch(db, caller.token_id, now)
    _audit_received(db, now, event, caller, result)
    if result.restarted or result.marked:
        audit.record(db, "deployments_restarted", user_id=caller.user_id, now=now,
                     target_type="delivery", target_id=result.delivery_id, details={
                         "ids": result.restarted, "marked": result.marked,
                         "sha": event.commit, "source": event.source, **caller.describe()})


def _source_label(event: CommitEvent, caller: Caller) -> str:
    who = caller.token_name if caller.token_id is not None else caller.username
    return f"{event.source} ({who})" if who else event.source


def _mark(db, now: float, deployment_id: int) -> None:
    db.execute("UPDATE deployments SET needs_restart = 1, updated_at = ? WHERE id = ?",
               (utcnow_iso(now), deployment_id))


def _mark_line(event: CommitEvent, label: str, why: str) -> str:
    return (f"commit {event.commit[:12]} received from {label}; not restarted because {why}: "
            "marked as needing a restart")


def _plan(db, event: CommitEvent, caller: Caller, now: float, requests, to_restart, log_lines) -> HookResult:
    rows = requests if requests is not None else find_requests(db, event.repo_keys, event.branch)
    continuous = [r for r in rows if r["update_mode"] == "continuous"]
    result = HookResult(outcome="processed", matched=[r["id"] for r in continuous])
    if not continuous:
        result.outcome = "no_match"
        result.reason = R_ONLY_STATIC if rows else R_NO_MATCH
        return result
    # Store the key the requests are filed under, so a replay of the same commit
    # written in another URL form is recognised.
    result.repo_key = continuous[0]["repo_key"]
    db.execute(
        f"UPDATE image_requests SET last_commit = ? WHERE id IN ({', '.join('?' * len(continuous))})",
        [event.commit, *result.matched])
    label = _source_label(event, caller)
    for deployment in _deployments_of(db, result.matched):
        if deployment["status"] in ("running", "deploying") and not deployment["stopped_by_operator"]:
            to_restart.append(deployment["id"])
            continue
        # A commit never starts a deployment. It is marked, so whoever starts it
        # next knows a newer commit is waiting, and its log says why.
        why = ("it was stopped by an operator" if deployment["stopped_by_operator"]
               else f"it is {deployment['status']}")
        _mark(db, now, deployment["id"])
        log_lines.append((deployment["id"], _mark_line(event, label, why)))
        result.marked.append(deployment["id"])
    if not to_restart and not result.marked:
        result.reason = R_NOTHING_RUNNING
    return result


# --- the deliveries page ---------------------------------------------------------------------

def list_deliveries_sql(outcome: str | None = None, source: str | None = None) -> tuple[str, list]:
    where, params = [], []
    if outcome in OUTCOMES:
        where.append("d.outcome = ?")
        params.append(outcome)
    if source in SOURCES:
        where.append("d.source = ?")
        params.append(source)
    sql = ("SELECT d.*, u.username, t.name AS token_name, t.token_prefix "
           "FROM webhook_deliveries d LEFT JOIN users u ON u.id = d.user_id "
           "LEFT JOIN webhook_tokens t ON t.id = d.token_id "
           + (("WHERE " + " AND ".join(where) + " ") if where else "")
           + "ORDER BY d.id DESC")
    return sql, params


def id_list(value: str | None) -> list[int]:
    try:
        ids = json.loads(value or "[]")
    except ValueError:
        return []
    return [i for i in ids if isinstance(i, int)] if isinstance(ids, list) else []
