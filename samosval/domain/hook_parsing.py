"""Reading a call of the commit hook, one function per sender (spec 4.6, 9.9).

Pure: no database, no Flask. A call is its headers, its raw body and its
Content-Type; it becomes a :class:`CommitEvent` or raises :class:`PayloadError`.

Senders and what identifies them (checked in this order, because Gitea and
Forgejo also send GitHub's and Gogs' headers for compatibility):

========================  ===========================================  ==========================
sender                    event header                                 signature (HMAC-SHA256)
========================  ===========================================  ==========================
``forgejo``               ``X-Forgejo-Event``                          ``X-Forgejo-Signature``: hex
``gitea``                 ``X-Gitea-Event``                            ``X-Gitea-Signature``: hex
``gogs``                  ``X-Gogs-Event``                             ``X-Gogs-Signature``: hex
``github``                ``X-GitHub-Event``                           ``X-Hub-Signature-256``
``gitlab``                ``X-Gitlab-Event``                           none (``X-Gitlab-Token``)
``bitbucket``  (Cloud)    ``X-Event-Key: repo:push`` / ``X-Hook-UUID`` none (token in URL/header)
``bitbucket_dc``          ``X-Event-Key`` (``repo:refs_changed``)      ``X-Hub-Signature``
``generic``               none                                         none (bearer token)
========================  ===========================================  ==========================

GitHub and Bitbucket Data Center sign the raw body. Gitea, Forgejo and Gogs sign
the JSON payload: for a form-encoded delivery that is the ``payload`` field, not
the form body (:func:`signed_part`).

Events that change nothing (pings, tag pushes, branch deletions, ``[skip ci]``)
are parsed into an event with ``ignored`` set: git hosts disable hooks that keep
failing, so they are answered 2xx.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from . import N_, holds_nul
from .repos import MAX_BRANCH_LENGTH, is_valid_branch_name, normalize_repo_url

# Every sender a delivery row may name; "ui" is the "Simulate new commit" button.
SOURCES = ("generic", "github", "gitea", "forgejo", "gogs", "gitlab", "bitbucket", "bitbucket_dc", "ui")
GITEA_LIKE = ("gitea", "forgejo", "gogs")
MAX_BODY = 25 * 1024 * 1024  # GitHub caps push payloads at 25 MB
MAX_URL_LENGTH = 2000
MAX_DELIVERY_ID = 200

SHA_RE = re.compile(r"^[0-9a-f]{7,64}$")
ZERO_SHA_RE = re.compile(r"^0+$")
SKIP_MARKERS = ("[skip ci]", "[skip deploy]")

# Reasons, stored in English in webhook_deliveries.reason and translated on display.
# A reason may carry a literal detail after ": " (field names, a delivery id).
R_NO_CREDENTIALS = N_("no credentials: send a token, a GitHub signature or a logged-in session")
R_UNKNOWN_TOKEN = N_("unknown token")
R_REVOKED_TOKEN = N_("token revoked")
R_SIGNATURE = N_("signature mismatch")
R_WRONG_TOKEN = N_("this hook URL belongs to another token")
R_CSRF = N_("missing or invalid CSRF token")
R_FORBIDDEN = N_("not allowed to simulate commits for this repository")
R_TOO_LARGE = N_("body larger than 25 MiB")
R_NOT_JSON = N_("the body is not JSON")
R_TOO_DEEP = N_("the JSON is nested too deeply")
R_NOT_OBJECT = N_("the body must be a JSON object")
R_NO_PAYLOAD = N_("form-encoded body without a payload field")
R_NUL = N_("text with a NUL character (U+0000)")  # see domain.holds_nul
R_MISSING = N_("missing fields")
R_BAD_URL = N_("not a repository URL")
R_BAD_COMMIT = N_("commit must be a hexadecimal sha of 7 to 64 characters")
R_BAD_BRANCH = N_("branch must be a branch name git accepts")
R_PONG = N_("ping answered with pong")
R_NOT_PUSH = N_("not a push event")
R_TAG = N_("tag push: only branch pushes restart deployments")
R_DELETED = N_("branch deleted")
R_SKIP_CI = N_("skipped by [skip ci]")
R_SKIP_DEPLOY = N_("skipped by [skip deploy]")
R_NO_MATCH = N_("no continuous request for this repository and branch")
R_ONLY_STATIC = N_("only static requests for this repository and branch: they are never restarted")
R_DUPLICATE = N_("already processed")
R_REPLAY = N_("the same signed body was already answered")
R_NOTHING_RUNNING = N_("matched, but no deployment to restart")
R_PINNED = N_("pinned after a rollback: not restarted")
R_AWAITING_APPROVAL = N_("protected environment: the release waits for approval")


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
            return known, stored[len(known) + 2 :]
    return stored, None


_KNOWN_REASONS = sorted(
    (value for name, value in globals().items() if name.startswith("R_")), key=len, reverse=True
)


@dataclass
class CommitEvent:
    """One call of the hook, understood."""

    source: str
    event: str | None = None
    repo_url: str | None = None
    repo_keys: list[str] = field(default_factory=list)
    branch: str | None = None  # or the tag of a tag push
    commit: str | None = None
    delivery_key: str | None = None
    body_digest: str | None = None
    ignored: str | None = None  # a reason: the event changes nothing
    pong: bool = False

    @property
    def repo_key(self) -> str | None:
        return self.repo_keys[0] if self.repo_keys else None


# --- who sent it ------------------------------------------------------------------------

_EVENT_HEADERS = (
    ("forgejo", "X-Forgejo-Event"),
    ("gitea", "X-Gitea-Event"),
    ("gogs", "X-Gogs-Event"),
    ("github", "X-GitHub-Event"),
    ("gitlab", "X-Gitlab-Event"),
)
_DELIVERY_HEADERS = {
    "forgejo": ("X-Forgejo-Delivery", "X-Gitea-Delivery"),
    "gitea": ("X-Gitea-Delivery",),
    "gogs": ("X-Gogs-Delivery",),
    "github": ("X-GitHub-Delivery",),
    "gitlab": ("Idempotency-Key", "X-Gitlab-Event-UUID"),
    "bitbucket": ("X-Request-UUID",),
    "bitbucket_dc": ("X-Request-Id",),
}


def detect_source(headers) -> str:
    for source, header in _EVENT_HEADERS:
        if headers.get(header):
            return source
    key = headers.get("X-Event-Key")
    if key:
        if key == "repo:push" or headers.get("X-Hook-UUID") or headers.get("X-Request-UUID"):
            return "bitbucket"
        return "bitbucket_dc"
    return "generic"


def event_name(headers, source: str) -> str | None:
    for name, header in _EVENT_HEADERS:
        if name == source:
            return headers.get(header)
    if source in ("bitbucket", "bitbucket_dc"):
        return headers.get("X-Event-Key")
    return "commit"


def delivery_key(headers, source: str) -> str | None:
    """The caller's id of this delivery, prefixed by the sender. Git hosts keep it on
    retries; ``Idempotency-Key`` is honoured from any caller. Who sent it and for which
    repository narrow the duplicate check further (see hook_effects)."""
    for name in (*_DELIVERY_HEADERS.get(source, ()), "Idempotency-Key"):
        value = (headers.get(name) or "").strip()
        if value:
            return f"{source}:{value[:MAX_DELIVERY_ID]}"
    return None


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


# --- signatures ---------------------------------------------------------------------------


def signature_header(headers, source: str) -> str | None:
    """The HMAC the sender attached, as ``sha256=<hex>``, or None when unsigned."""
    if source in ("forgejo", "gitea", "gogs"):
        names = {
            "forgejo": ("X-Forgejo-Signature", "X-Gitea-Signature"),
            "gitea": ("X-Gitea-Signature",),
            "gogs": ("X-Gogs-Signature",),
        }[source]
        for name in names:
            value = (headers.get(name) or "").strip()
            if value:
                return value if value.lower().startswith("sha256=") else "sha256=" + value
        return None
    name = "X-Hub-Signature" if source == "bitbucket_dc" else "X-Hub-Signature-256"
    value = (headers.get(name) or "").strip()
    if not value and source == "generic":
        # A sender we do not recognise that signs like GitHub (a proxy, a script).
        value = (headers.get("X-Hub-Signature-256") or "").strip()
    return value or None


def signed_part(body: bytes, content_type: str | None, source: str) -> bytes:
    """The bytes the sender's HMAC covers: the raw body, except for Gitea, Forgejo and
    Gogs, which sign the JSON payload even when they send it form-encoded."""
    if source in GITEA_LIKE and _mimetype(content_type) == "application/x-www-form-urlencoded":
        try:
            fields = parse_qs(body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            return body
        if fields.get("payload"):
            return fields["payload"][0].encode("utf-8")
    return body


# --- the body --------------------------------------------------------------------------------


def _mimetype(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def decode_body(body: bytes, content_type: str | None) -> dict:
    """JSON, or a form encoding with the JSON in a ``payload`` field."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadError(R_NOT_JSON) from None
    if _mimetype(content_type) == "application/x-www-form-urlencoded":
        fields = parse_qs(text, keep_blank_values=True)
        if not fields.get("payload"):
            raise PayloadError(R_NO_PAYLOAD, "payload", missing=["payload"])
        text = fields["payload"][0]
    try:
        data = json.loads(text)
    except RecursionError:
        # ``[`` x 100,000: Python's parser recurses per level.
        raise PayloadError(R_TOO_DEEP) from None
    except ValueError:
        raise PayloadError(R_NOT_JSON) from None
    if not isinstance(data, dict):
        raise PayloadError(R_NOT_OBJECT)
    return data


def parse(headers, body: bytes, content_type: str | None, *, source: str | None = None) -> CommitEvent:
    """Turn a call into a :class:`CommitEvent`, or raise :class:`PayloadError`.
    ``source`` overrides the label (``ui`` for the button); the body is read as the
    detected sender wrote it."""
    detected = detect_source(headers)
    event = CommitEvent(
        source=source or detected,
        event=event_name(headers, detected),
        delivery_key=delivery_key(headers, detected),
        body_digest=body_digest(body),
    )
    if holds_nul((event.event, event.delivery_key)):
        raise PayloadError(R_NUL, "headers")
    if event.event in ("ping", "diagnostics:ping"):
        # Pings come in any encoding and with any body; they need nothing from it.
        event.pong, event.ignored = True, R_PONG
        return event
    data = decode_body(body, content_type)
    if holds_nul(data):
        raise PayloadError(R_NUL)
    _PARSERS[detected](event, data)
    return event


# --- small readers ---------------------------------------------------------------------------


def _text(value) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value) -> list:
    return value if isinstance(value, list) else []


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
        return match.group("scheme") + url[match.end() :]
    return url


def _first(urls) -> str | None:
    return next((u for u in map(_text, urls) if u), None)


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
        event.branch = ref[len("refs/tags/") :][:MAX_BRANCH_LENGTH]
        return False
    if ref.startswith("refs/heads/"):
        ref = ref[len("refs/heads/") :]
    elif ref.startswith("refs/"):
        event.ignored = R_NOT_PUSH
        return False
    if not is_valid_branch_name(ref):
        raise PayloadError(R_BAD_BRANCH, "branch")
    event.branch = ref
    return True


def _set_commit(event: CommitEvent, sha: str) -> None:
    sha = sha.lower()
    if not SHA_RE.match(sha):
        raise PayloadError(R_BAD_COMMIT, "commit")
    event.commit = sha


def _skip_reason(message) -> str | None:
    text = message.lower() if isinstance(message, str) else ""
    if SKIP_MARKERS[0] in text:
        return R_SKIP_CI
    if SKIP_MARKERS[1] in text:
        return R_SKIP_DEPLOY
    return None


def _head_message(commits, sha: str | None) -> str | None:
    """The message of commit ``sha`` in a list of commit objects, else of the last one."""
    commits = [c for c in _list(commits) if isinstance(c, dict)]
    head = next((c for c in commits if c.get("id") == sha), commits[-1] if commits else {})
    return head.get("message")


# --- one parser per sender ---------------------------------------------------------------------


def _parse_generic(event: CommitEvent, data: dict) -> None:
    repo_url, branch, commit = (_text(data.get(k)) for k in ("repo_url", "branch", "commit"))
    _require({"repo_url": repo_url, "branch": branch, "commit": commit})
    _set_repo(event, [repo_url])
    if _set_branch(event, branch):
        _set_commit(event, commit)
        event.ignored = _skip_reason(data.get("message"))


def _parse_github(event: CommitEvent, data: dict) -> None:
    """GitHub, and Gitea, Forgejo and Gogs, which send the same push payload."""
    if event.event != "push":
        event.ignored = R_NOT_PUSH
        return
    repository = _dict(data.get("repository"))
    ref, after = _text(data.get("ref")), _text(data.get("after"))
    urls = [repository.get(k) for k in ("clone_url", "html_url", "ssh_url", "git_url", "url")]
    _require({"ref": ref, "after": after, "repository.clone_url": _first(urls)})
    _set_repo(event, urls)
    if not _set_branch(event, ref):
        return
    if data.get("deleted") is True or ZERO_SHA_RE.match(after):
        event.ignored = R_DELETED
        return
    _set_commit(event, after)
    head = _dict(data.get("head_commit"))  # Gogs sends no head_commit: read the commits
    event.ignored = _skip_reason(head.get("message") if head else _head_message(data.get("commits"), after))


def _parse_gitlab(event: CommitEvent, data: dict) -> None:
    kind = event.event or ""
    if kind not in ("Push Hook", "Tag Push Hook"):
        event.ignored = R_NOT_PUSH
        return
    project, repository = _dict(data.get("project")), _dict(data.get("repository"))
    urls = [project.get(k) for k in ("git_http_url", "git_ssh_url", "web_url")] + [
        repository.get(k) for k in ("git_http_url", "git_ssh_url", "url", "homepage")
    ]
    ref = _text(data.get("ref"))
    checkout_sha, after = _text(data.get("checkout_sha")), _text(data.get("after"))
    if kind == "Tag Push Hook":
        # Recorded with its repository and tag, then ignored.
        _require({"ref": ref, "project.git_http_url": _first(urls)})
        _set_repo(event, urls)
        _set_branch(event, ref if ref.startswith("refs/") else "refs/tags/" + ref)
        event.ignored = R_TAG
        return
    _require({"ref": ref, "checkout_sha": checkout_sha or after, "project.git_http_url": _first(urls)})
    _set_repo(event, urls)
    if not _set_branch(event, ref):
        return
    if checkout_sha is None and after and ZERO_SHA_RE.match(after):
        event.ignored = R_DELETED
        return
    _set_commit(event, checkout_sha or after)
    event.ignored = _skip_reason(_head_message(data.get("commits"), checkout_sha))


def _parse_bitbucket_cloud(event: CommitEvent, data: dict) -> None:
    """``repo:push``: ``push.changes[]``, each with ``new`` (null when deleted)."""
    if event.event != "repo:push":
        event.ignored = R_NOT_PUSH
        return
    repository = _dict(data.get("repository"))
    links = _dict(repository.get("links"))
    urls = [_dict(links.get("html")).get("href")]
    full_name = _text(repository.get("full_name"))
    if full_name:
        urls.append(f"https://bitbucket.org/{full_name}")
    changes = [c for c in _list(_dict(data.get("push")).get("changes")) if isinstance(c, dict)]
    _require({"repository.links.html": _first(urls), "push.changes": changes or None})
    _set_repo(event, urls)
    # One event names one branch: the first change that is a branch update.
    for change in changes:
        new = _dict(change.get("new"))
        if new.get("type") == "branch":
            name, target = _text(new.get("name")), _dict(new.get("target"))
            sha = _text(target.get("hash"))
            _require({"push.changes[].new.name": name, "push.changes[].new.target.hash": sha})
            _set_branch(event, name)
            _set_commit(event, sha)
            event.ignored = _skip_reason(target.get("message"))
            return
    first = changes[0]
    new, old = _dict(first.get("new")), _dict(first.get("old"))
    if new.get("type") == "tag" or old.get("type") == "tag":
        event.ignored = R_TAG
        event.branch = (_text(new.get("name")) or _text(old.get("name")) or "")[:MAX_BRANCH_LENGTH] or None
    elif not new:
        event.ignored = R_DELETED
        name = _text(old.get("name"))
        event.branch = name if name and is_valid_branch_name(name) else None
    else:
        event.ignored = R_NOT_PUSH


def _parse_bitbucket_dc(event: CommitEvent, data: dict) -> None:
    """``repo:refs_changed``: ``changes[]`` with ``ref``, ``toHash`` and ``type``."""
    if event.event != "repo:refs_changed":
        event.ignored = R_NOT_PUSH
        return
    repository = _dict(data.get("repository"))
    clone = [link for link in _list(_dict(repository.get("links")).get("clone")) if isinstance(link, dict)]
    # HTTP first: it is what people paste into the request form.
    clone.sort(key=lambda link: 0 if str(link.get("name", "")).startswith("http") else 1)
    urls = [link.get("href") for link in clone]
    changes = [c for c in _list(data.get("changes")) if isinstance(c, dict)]
    _require({"repository.links.clone": _first(urls), "changes": changes or None})
    _set_repo(event, urls)
    for change in changes:
        ref = _dict(change.get("ref"))
        if ref.get("type") == "BRANCH" and change.get("type") != "DELETE":
            name = _text(ref.get("displayId")) or _text(ref.get("id")) or _text(change.get("refId"))
            sha = _text(change.get("toHash"))
            _require({"changes[].ref.displayId": name, "changes[].toHash": sha})
            _set_branch(event, name)
            _set_commit(event, sha)
            return
    first = changes[0]
    ref = _dict(first.get("ref"))
    name = _text(ref.get("displayId"))
    if ref.get("type") == "TAG":
        event.ignored, event.branch = R_TAG, (name or "")[:MAX_BRANCH_LENGTH] or None
    elif first.get("type") == "DELETE":
        event.ignored = R_DELETED
        event.branch = name if name and is_valid_branch_name(name) else None
    else:
        event.ignored = R_NOT_PUSH


_PARSERS = {
    "generic": _parse_generic,
    "github": _parse_github,
    "gitea": _parse_github,
    "forgejo": _parse_github,
    "gogs": _parse_github,
    "gitlab": _parse_gitlab,
    "bitbucket": _parse_bitbucket_cloud,
    "bitbucket_dc": _parse_bitbucket_dc,
}
