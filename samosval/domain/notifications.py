"""Notifications (issue 21): channels, subscriptions, the outbox and its retry rule.

- An admin configures *channels*: an outgoing webhook (JSON signed like GitHub
  signs), a Slack-compatible incoming webhook, the Telegram Bot API, or SMTP email.
  The secret parts (URLs, which often carry a token, signing secrets, bot tokens,
  SMTP passwords) are sealed with the app's keyring; the rest is plain JSON.
- People *subscribe* to events of one request, one deployment, or everything they
  own, on a channel (email needs their address; Telegram may name a chat).
- Events come from the audit log: :func:`fan_out` reads the rows after a cursor and
  writes one outbox message per (event, channel, recipient) in the same
  transaction that moves the cursor, so an event is queued exactly once and never
  lost. Whether the subscriber may still see the request is checked then.
- :mod:`samosval.notify_worker` sends what is due, at least once: each try is
  claimed for :data:`LEASE_SECONDS` first (a crash mid-send tries again), every
  attempt is kept, failures are retried with exponential backoff and jitter
  (:func:`retry_delay`), and after :data:`MAX_ATTEMPTS` a message is dead.
"""

from __future__ import annotations

import json
import re
import sqlite3
import uuid
from types import SimpleNamespace
from urllib.parse import urlsplit

from .. import audit, permissions
from ..crypto import Keyring, SealError
from ..db import transaction
from ..timeutil import utcnow_iso
from . import N_, Refused, ValidationError, parse_id

EVENTS = {
    "build_failed": N_("build failed"),
    "build_succeeded": N_("build succeeded"),
    "deployment_failed": N_("deployment failed"),
    "deployment_recovered": N_("deployment recovered"),
    "approval_needed": N_("approval needed"),
    "approval_decided": N_("approval decided"),
    "pinned_skipped": N_("pinned deployment skipped a push"),
}
SCOPES = {
    "owned": N_("everything I own"),
    "request": N_("one request"),
    "deployment": N_("one deployment"),
}
KINDS = {
    "webhook": N_("Outgoing webhook (signed JSON)"),
    "slack": N_("Slack-compatible incoming webhook"),
    "telegram": N_("Telegram bot"),
    "email": N_("Email (SMTP)"),
}
# Per kind: the settings kept plain, and the ones sealed.
PLAIN_FIELDS = {
    "webhook": (),
    "slack": (),
    "telegram": ("base_url", "chat_id"),
    "email": ("host", "port", "security", "username", "from_addr"),
}
SECRET_FIELDS = {
    "webhook": ("url", "signing_secret"),
    "slack": ("url",),
    "telegram": ("bot_token",),
    "email": ("password",),
}
REQUIRED_SECRETS = {
    "webhook": ("url", "signing_secret"),
    "slack": ("url",),
    "telegram": ("bot_token",),
    "email": (),
}
SMTP_SECURITY = ("none", "starttls", "ssl")
TELEGRAM_DEFAULT_BASE = "https://api.telegram.org"

MAX_ATTEMPTS = 8
FIRST_DELAY = 60.0  # about a minute after the first failure ...
MAX_DELAY = 6 * 3600.0  # ... growing to six hours before the eighth try
BACKOFF_FACTOR = (MAX_DELAY / FIRST_DELAY) ** (1 / (MAX_ATTEMPTS - 2))  # ~2.67
JITTER = 0.2  # each wait is the nominal one ±20 %
LEASE_SECONDS = 120.0  # a claimed try not finished by then is tried again
FANOUT_BATCH = 500
MAX_NAME_LENGTH = 80
MAX_URL_LENGTH = 2000
MAX_SECRET_LENGTH = 4096
MAX_SUBSCRIPTIONS_PER_USER = 100

_EMAIL = re.compile(r"^[^@\s<>,;\"']{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$")
_CHAT = re.compile(r"^(-?\d{1,20}|@[A-Za-z][A-Za-z0-9_]{3,64})$")
_HOST = re.compile(r"^[A-Za-z0-9.-]{1,253}$")


def retry_delay(attempt: int, rng) -> float:
    """Seconds to wait after failed try number ``attempt`` (1-based): about 1 min,
    2.7 min, 7 min, 19 min, 51 min, 2.3 h, then 6 h, each ±20 % so that many
    messages failing together do not come back together."""
    nominal = min(MAX_DELAY, FIRST_DELAY * BACKOFF_FACTOR ** (attempt - 1))
    return min(MAX_DELAY, nominal * rng.uniform(1 - JITTER, 1 + JITTER))


# --- channels ------------------------------------------------------------------------------


def _url_error(raw: str) -> str | None:
    if len(raw) > MAX_URL_LENGTH:
        return N_("At most 2000 characters.")
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in raw):
        return N_("Enter a full http:// or https:// URL.")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return N_("Enter a full http:// or https:// URL.")
    return None


def valid_email(raw: str) -> bool:
    return len(raw) <= 254 and bool(_EMAIL.match(raw))


def validate_channel(kind: str, form: dict, existing_secret: dict | None = None) -> tuple[str, dict, dict]:
    """``(name, plain settings, secret settings)`` of a channel form. On an edit,
    ``existing_secret`` holds the saved secrets: a blank field keeps its value."""
    errors: dict[str, str] = {}
    if kind not in KINDS:
        raise ValidationError({"kind": N_("Choose a kind of channel.")})
    name = " ".join(str(form.get("name") or "").split())
    if not name:
        errors["name"] = N_("Give the channel a name.")
    elif len(name) > MAX_NAME_LENGTH:
        errors["name"] = N_("At most 80 characters.")
    plain = {field: str(form.get(field) or "").strip() for field in PLAIN_FIELDS[kind]}
    secret = {}
    for field in SECRET_FIELDS[kind]:
        value = str(form.get(field) or "").strip()
        if not value and existing_secret and existing_secret.get(field):
            value = existing_secret[field]
        if len(value) > MAX_SECRET_LENGTH:
            errors[field] = N_("Too long.")
        elif not value and field in REQUIRED_SECRETS[kind]:
            errors[field] = N_("Required.")
        secret[field] = value
    if "url" in secret and secret["url"] and "url" not in errors:
        problem = _url_error(secret["url"])
        if problem:
            errors["url"] = problem
    if kind == "telegram":
        plain["base_url"] = plain["base_url"].rstrip("/") or TELEGRAM_DEFAULT_BASE
        problem = _url_error(plain["base_url"])
        if problem:
            errors["base_url"] = problem
        if plain["chat_id"] and not _CHAT.match(plain["chat_id"]):
            errors["chat_id"] = N_("A chat id is a number or @channelname.")
        if secret.get("bot_token") and not re.match(r"^\d{1,20}:[A-Za-z0-9_-]{20,100}$", secret["bot_token"]):
            errors.setdefault("bot_token", N_("A bot token looks like 123456:ABC-DEF... (from @BotFather)."))
    if kind == "email":
        if not plain["host"] or not _HOST.match(plain["host"]):
            errors["host"] = N_("Enter the SMTP server's host name.")
        try:
            port = int(plain["port"] or "25")
            if not 1 <= port <= 65535:
                raise ValueError
            plain["port"] = port
        except ValueError:
            errors["port"] = N_("A port is a number from 1 to 65535.")
        if plain["security"] not in SMTP_SECURITY:
            plain["security"] = "none" if not plain["security"] else plain["security"]
            if plain["security"] not in SMTP_SECURITY:
                errors["security"] = N_("Choose none, STARTTLS or SSL.")
        if not valid_email(plain["from_addr"]):
            errors["from_addr"] = N_("Enter a valid email address.")
        if len(plain["username"]) > 254:
            errors["username"] = N_("Too long.")
    if errors:
        raise ValidationError(errors)
    return name, plain, secret


def get_channel(db: sqlite3.Connection, channel_id: int):
    return db.execute("SELECT * FROM notification_channels WHERE id = ?", (channel_id,)).fetchone()


def list_channels(db: sqlite3.Connection, enabled_only: bool = False) -> list:
    sql = (
        "SELECT c.*, (SELECT COUNT(*) FROM notification_outbox o WHERE o.channel_id = c.id "
        "AND o.status = 'pending') AS pending_count, (SELECT COUNT(*) FROM notification_outbox o "
        "WHERE o.channel_id = c.id AND o.status = 'dead') AS dead_count FROM notification_channels c"
    )
    if enabled_only:
        sql += " WHERE c.enabled = 1"
    return db.execute(sql + " ORDER BY c.name, c.id").fetchall()


def channel_secrets(channel, keyring: Keyring) -> dict:
    """The channel's sealed settings in clear, for sending (never for a page)."""
    return json.loads(keyring.open(channel["sealed_settings"]))


def channel_summary(channel) -> str:
    """Where a channel sends, without anything secret: the URL's host, the chat,
    the SMTP server."""
    settings = json.loads(channel["settings"])
    kind = channel["kind"]
    if kind == "telegram":
        host = urlsplit(settings.get("base_url") or TELEGRAM_DEFAULT_BASE).netloc
        return f"{host} · chat {settings.get('chat_id') or '—'}"
    if kind == "email":
        return f"{settings.get('host')}:{settings.get('port')} ({settings.get('security')}) · {settings.get('from_addr')}"
    return settings.get("url_hint") or ""


def _url_hint(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}/…" if parts.hostname else ""


def save_channel(
    db: sqlite3.Connection,
    user,
    kind: str,
    form: dict,
    keyring: Keyring,
    now: float,
    channel_id: int | None = None,
) -> int:
    """Create a channel, or update ``channel_id`` (blank secret fields keep theirs).
    Audited with the field names that changed, never their values."""
    if not permissions.can_manage_channels(user):
        raise Refused("forbidden", permissions.FORBIDDEN)
    existing = get_channel(db, channel_id) if channel_id is not None else None
    if channel_id is not None and existing is None:
        raise Refused("not_found", N_("No such channel."))
    if existing is not None:
        kind = existing["kind"]
        try:
            saved_secret = channel_secrets(existing, keyring)
        except SealError:
            saved_secret = {}
    else:
        saved_secret = None
    name, plain, secret = validate_channel(kind, form, saved_secret)
    if "url" in secret:
        plain["url_hint"] = _url_hint(secret["url"])
    enabled = 1 if (existing is None or str(form.get("enabled") or "") in ("1", "on", "true")) else 0
    stamp = utcnow_iso(now)
    with transaction(db):
        if existing is None:
            channel_id = db.execute(
                "INSERT INTO notification_channels (name, kind, settings, sealed_settings, enabled, created_at, "
                "created_by, updated_at) VALUES (?, ?, ?, ?, 1, ?, ?, ?)",
                (name, kind, json.dumps(plain), keyring.seal(json.dumps(secret)), stamp, user.id, stamp),
            ).lastrowid
            changed = sorted([*plain, *secret])
            action = "notification_channel_create"
        else:
            changed = sorted(
                [f for f in plain if json.loads(existing["settings"]).get(f) != plain[f]]
                + [f for f in secret if (saved_secret or {}).get(f) != secret[f]]
            )
            db.execute(
                "UPDATE notification_channels SET name = ?, settings = ?, sealed_settings = ?, enabled = ?, "
                "updated_at = ? WHERE id = ?",
                (name, json.dumps(plain), keyring.seal(json.dumps(secret)), enabled, stamp, channel_id),
            )
            action = "notification_channel_update"
        audit.record(
            db,
            action,
            user_id=user.id,
            now=now,
            details={
                "channel": channel_id,
                "name": name,
                "kind": kind,
                "fields": changed,
                "enabled": bool(enabled),
            },
        )
    return channel_id


def delete_channel(db: sqlite3.Connection, user, channel, now: float) -> None:
    if not permissions.can_manage_channels(user):
        raise Refused("forbidden", permissions.FORBIDDEN)
    with transaction(db):
        if not db.execute("DELETE FROM notification_channels WHERE id = ?", (channel["id"],)).rowcount:
            raise Refused("not_found", N_("No such channel."))
        audit.record(
            db,
            "notification_channel_delete",
            user_id=user.id,
            now=now,
            details={"channel": channel["id"], "name": channel["name"], "kind": channel["kind"]},
        )


def reseal_all(db: sqlite3.Connection, keyring: Keyring) -> int:
    """Re-encrypt every channel's secrets under the current key (caller's transaction)."""
    rows = db.execute("SELECT id, sealed_settings FROM notification_channels").fetchall()
    for row in rows:
        db.execute(
            "UPDATE notification_channels SET sealed_settings = ? WHERE id = ?",
            (keyring.reseal(row["sealed_settings"]), row["id"]),
        )
    return len(rows)


# --- subscriptions ---------------------------------------------------------------------------


def list_subscriptions(db: sqlite3.Connection, user_id: int) -> list:
    return db.execute(
        "SELECT s.*, c.name AS channel_name, c.kind AS channel_kind, c.enabled AS channel_enabled "
        "FROM notification_subscriptions s JOIN notification_channels c ON c.id = s.channel_id "
        "WHERE s.user_id = ? ORDER BY s.id",
        (user_id,),
    ).fetchall()


def get_subscription(db: sqlite3.Connection, subscription_id: int):
    return db.execute("SELECT * FROM notification_subscriptions WHERE id = ?", (subscription_id,)).fetchone()


def _request_of_target(db: sqlite3.Connection, scope: str, target_id: int | None):
    if scope == "request":
        return db.execute("SELECT * FROM image_requests WHERE id = ?", (target_id,)).fetchone()
    if scope == "deployment":
        return db.execute(
            "SELECT r.* FROM deployments d JOIN images i ON i.id = d.image_id "
            "JOIN image_requests r ON r.id = i.request_id WHERE d.id = ?",
            (target_id,),
        ).fetchone()
    return None


def subscribe(db: sqlite3.Connection, user, form: dict, now: float) -> int:
    """Subscribe ``user``: ``scope`` (owned/request/deployment), ``target_id``,
    ``channel_id``, ``events`` (a list), ``recipient`` (email channels: an address;
    Telegram: an optional chat)."""
    errors: dict[str, str] = {}
    scope = str(form.get("scope") or "")
    if scope not in SCOPES:
        raise ValidationError({"scope": N_("Choose what to follow.")})
    target_id = None
    if scope != "owned":
        target_id = parse_id(form.get("target_id"))
        req = _request_of_target(db, scope, target_id) if target_id is not None else None
        # A hidden object and a missing one get the same answer.
        if req is None or not permissions.can_subscribe(user, req):
            raise Refused("not_found", N_("No such request or deployment."))
    chosen = {str(e) for e in form.get("events") or []}
    events = [e for e in EVENTS if e in chosen]  # each once, in a fixed order
    if not events:
        errors["events"] = N_("Choose at least one event.")
    channel_id = parse_id(form.get("channel_id"))
    channel = get_channel(db, channel_id) if channel_id is not None else None
    if channel is None or not channel["enabled"]:
        errors["channel_id"] = N_("Choose a channel.")
    recipient = str(form.get("recipient") or "").strip()
    if channel is not None and channel["kind"] == "email":
        if not valid_email(recipient):
            errors["recipient"] = N_("Enter a valid email address.")
    elif channel is not None and channel["kind"] == "telegram":
        if recipient and not _CHAT.match(recipient):
            errors["recipient"] = N_("A chat id is a number or @channelname.")
        if not recipient and not json.loads(channel["settings"]).get("chat_id"):
            errors["recipient"] = N_("This channel has no default chat: name one.")
    else:
        recipient = ""
    if errors:
        raise ValidationError(errors)
    with transaction(db):
        count = db.execute(
            "SELECT COUNT(*) FROM notification_subscriptions WHERE user_id = ?", (user.id,)
        ).fetchone()[0]
        if count >= MAX_SUBSCRIPTIONS_PER_USER:
            raise Refused("conflict", N_("You have 100 subscriptions: remove one you no longer need first."))
        subscription_id = db.execute(
            "INSERT INTO notification_subscriptions (user_id, channel_id, scope, target_id, events, recipient, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (user.id, channel["id"], scope, target_id, ",".join(events), recipient, utcnow_iso(now)),
        ).lastrowid
        audit.record(
            db,
            "notification_subscribe",
            user_id=user.id,
            now=now,
            target_type=scope if scope != "owned" else None,
            target_id=target_id,
            details={"subscription": subscription_id, "channel": channel["name"], "events": events},
        )
    return subscription_id


def unsubscribe(db: sqlite3.Connection, user, subscription, now: float) -> None:
    """Remove ``subscription`` (a row, or None): someone else's looks missing."""
    if subscription is None or not permissions.can_delete_subscription(user, subscription):
        raise Refused("not_found", N_("No such subscription."))
    with transaction(db):
        db.execute("DELETE FROM notification_subscriptions WHERE id = ?", (subscription["id"],))
        audit.record(
            db,
            "notification_unsubscribe",
            user_id=user.id,
            now=now,
            details={"subscription": subscription["id"]},
        )


# --- events from the audit log ----------------------------------------------------------------

_RELEVANT = (
    "build_finish",
    "deployment_failed",
    "deployment_running",
    "release_request",
    "release_approve",
    "release_reject",
    "release_expire",
    "commit_hook_received",
)


def _deployment_context(db, deployment_id):
    return db.execute(
        "SELECT d.id AS deployment_id, d.name AS deployment_name, d.environment, i.request_id, "
        "i.image_tag FROM deployments d JOIN images i ON i.id = d.image_id WHERE d.id = ?",
        (deployment_id,),
    ).fetchone()


# What each decision on a release says, without and with a reason.
_VERDICTS = {
    "release_approve": (
        N_("Release %(release)s of %(name)s approved"),
        N_("Release %(release)s of %(name)s approved: %(reason)s"),
    ),
    "release_reject": (
        N_("Release %(release)s of %(name)s rejected"),
        N_("Release %(release)s of %(name)s rejected: %(reason)s"),
    ),
    "release_expire": (
        N_("Release %(release)s of %(name)s expired"),
        N_("Release %(release)s of %(name)s expired: %(reason)s"),
    ),
}


def render(event: dict, locale: str | None, translate=None) -> str:
    """The text of ``event`` in ``locale``: its ``message`` (English source) with its
    ``params``, those named in ``localized`` (themselves source strings, such as a
    failure reason) translated too. ``translate(locale, message, params)`` comes from
    the web layer (:func:`samosval.i18n.translator`); without it, English."""
    if translate is None:
        return event["message"] % event["params"]
    localized = event.get("localized", ())
    params = {
        name: translate(locale, value) if name in localized and value else value
        for name, value in event["params"].items()
    }
    return translate(locale, event["message"], params)


def events_of(db: sqlite3.Connection, row) -> list[dict]:
    """The notification events one audit row stands for (usually none or one); each
    carries its text as ``message`` and ``params`` (see :func:`render`)."""
    action = row["action"]
    details = json.loads(row["details"]) if row["details"] else {}
    if not isinstance(details, dict):
        details = {}
    found = []
    if action == "build_finish" and row["target_id"] is not None:
        build = db.execute(
            "SELECT b.id, b.request_id, r.image_name, r.version_tag FROM builds b "
            "JOIN image_requests r ON r.id = b.request_id WHERE b.id = ?",
            (row["target_id"],),
        ).fetchone()
        if build is not None:
            ok = details.get("result") == "success"
            image = f"{build['image_name']}:{build['version_tag']}"
            params = {"id": build["id"], "image": image}
            if not ok:
                params["error"] = details.get("error") or N_("unknown error")
            found.append(
                {
                    "event": "build_succeeded" if ok else "build_failed",
                    "request_id": build["request_id"],
                    "deployment_id": None,
                    "build_id": build["id"],
                    "message": (
                        N_("Build #%(id)s of %(image)s succeeded")
                        if ok
                        else N_("Build #%(id)s of %(image)s failed: %(error)s")
                    ),
                    "params": params,
                    "localized": ("error",),
                    "url": f"/builds/{build['id']}",
                }
            )
        return found
    deployment_ids: list[int] = []
    if (
        row["target_type"] == "deployment"
        and row["target_id"] is not None
        and action != "commit_hook_received"
    ):
        deployment_ids = [row["target_id"]]
    elif action == "commit_hook_received":
        deployment_ids = [i for i in details.get("pinned") or [] if isinstance(i, int)]
    for deployment_id in deployment_ids:
        context = _deployment_context(db, deployment_id)
        if context is None:
            continue  # deleted since
        name = f"{context['deployment_name']} ({context['environment']})"
        base = {
            "request_id": context["request_id"],
            "deployment_id": deployment_id,
            "build_id": None,
            "url": f"/deployments/{deployment_id}",
        }
        if action == "deployment_failed":
            found.append(
                {
                    **base,
                    "event": "deployment_failed",
                    "message": N_("Deployment %(name)s failed: %(reason)s"),
                    "params": {"name": name, "reason": details.get("reason") or N_("unknown reason")},
                    "localized": ("reason",),
                }
            )
        elif action == "deployment_running":
            previous = db.execute(
                "SELECT action FROM audit_log WHERE target_type = 'deployment' AND target_id = ? AND id < ? "
                "AND action IN ('deployment_failed', 'deployment_running') ORDER BY id DESC LIMIT 1",
                (deployment_id, row["id"]),
            ).fetchone()
            if previous is not None and previous["action"] == "deployment_failed":
                found.append(
                    {
                        **base,
                        "event": "deployment_recovered",
                        "message": N_("Deployment %(name)s recovered: running again"),
                        "params": {"name": name},
                    }
                )
        elif action == "release_request":
            found.append(
                {
                    **base,
                    "event": "approval_needed",
                    "message": N_("Release %(release)s of %(name)s waits for approval"),
                    "params": {"release": details.get("release"), "name": name},
                }
            )
        elif action in _VERDICTS:
            plain, with_reason = _VERDICTS[action]
            params = {"release": details.get("release"), "name": name}
            if details.get("reason"):
                params["reason"] = details["reason"]
            # An expiry's reason is the app's own text; a rejection's is the person's words.
            found.append(
                {
                    **base,
                    "event": "approval_decided",
                    "message": with_reason if "reason" in params else plain,
                    "params": params,
                    "localized": ("reason",) if action == "release_expire" else (),
                }
            )
        elif action == "commit_hook_received":
            sha = str(details.get("sha") or "")[:12]
            found.append(
                {
                    **base,
                    "event": "pinned_skipped",
                    "message": N_("Deployment %(name)s is pinned: commit %(sha)s was not rolled out"),
                    "params": {"name": name, "sha": sha},
                }
            )
    return found


def _recipients(db: sqlite3.Connection, event: dict) -> list:
    """Subscriptions (with their user and channel) that want ``event``, checked
    against who may still see the request."""
    req = db.execute("SELECT * FROM image_requests WHERE id = ?", (event["request_id"],)).fetchone()
    if req is None:
        return []
    rows = db.execute(
        "SELECT s.*, u.username, u.role, u.is_active, u.locale, c.kind AS channel_kind FROM notification_subscriptions s "
        "JOIN users u ON u.id = s.user_id JOIN notification_channels c ON c.id = s.channel_id AND c.enabled = 1 "
        "WHERE (s.scope = 'request' AND s.target_id = ?) OR (s.scope = 'deployment' AND s.target_id = ?) "
        "OR (s.scope = 'owned' AND s.user_id = ?) ORDER BY s.id",
        (req["id"], event["deployment_id"] if event["deployment_id"] is not None else -1, req["owner_id"]),
    ).fetchall()
    wanted = []
    for sub in rows:
        if event["event"] not in sub["events"].split(","):
            continue
        person = SimpleNamespace(
            id=sub["user_id"], username=sub["username"], role=sub["role"], is_active=bool(sub["is_active"])
        )
        if permissions.may_be_notified(person, req):
            wanted.append(sub)
    return wanted


def payload_for(event: dict, audit_row, text: str) -> dict:
    """The JSON body of a message (no secrets: what the audit row already says), with
    ``text`` in the recipient's language."""
    return {
        "event": event["event"],
        "text": text,
        "occurred_at": audit_row["created_at"],
        "request_id": event["request_id"],
        "deployment_id": event["deployment_id"],
        "build_id": event["build_id"],
        "url": event["url"],
        "audit_id": audit_row["id"],
    }


def _enqueue(
    db, channel_id: int, recipient: str, event: str, payload: dict, now: float, source_audit_id: int | None
) -> int | None:
    """Queue one message; its id, or None when this audit event was already queued
    for this channel and recipient."""
    delivery = str(uuid.uuid4())
    payload = {**payload, "delivery_id": delivery}
    row = db.execute(
        "INSERT INTO notification_outbox (channel_id, source_audit_id, recipient, event, payload, "
        "delivery_uuid, status, attempts, next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?) "
        "ON CONFLICT DO NOTHING RETURNING id",
        (
            channel_id,
            source_audit_id,
            recipient,
            event,
            json.dumps(payload, ensure_ascii=False),
            delivery,
            now,
            utcnow_iso(now),
        ),
    ).fetchone()
    return row[0] if row else None


def fan_out(db: sqlite3.Connection, now: float, batch: int = FANOUT_BATCH, translate=None) -> int:
    """Turn audit rows after the cursor into outbox messages and move the cursor, in
    one transaction; each message's text is in its recipient's language (``users.locale``,
    see :func:`render`). Returns how many messages were queued."""
    queued = 0
    # Most steps find nothing new: tell without taking the write lock.
    cursor = db.execute("SELECT value FROM notification_state WHERE name = 'audit_cursor'").fetchone()
    newest = db.execute("SELECT MAX(id) FROM audit_log").fetchone()[0]
    if newest is None or newest <= (cursor[0] if cursor else 0):
        return 0
    with transaction(db):
        cursor = db.execute("SELECT value FROM notification_state WHERE name = 'audit_cursor'").fetchone()
        after = cursor[0] if cursor else 0
        marks = ", ".join("?" * len(_RELEVANT))
        last = db.execute(
            "SELECT MAX(id) FROM (SELECT id FROM audit_log WHERE id > ? ORDER BY id LIMIT ?) AS batch",
            (after, batch),
        ).fetchone()[0]
        if last is None:
            return 0
        rows = db.execute(
            f"SELECT * FROM audit_log WHERE id > ? AND id <= ? AND action IN ({marks}) ORDER BY id",
            (after, last, *_RELEVANT),
        ).fetchall()
        if rows and db.execute("SELECT 1 FROM notification_subscriptions LIMIT 1").fetchone():
            for row in rows:
                for event in events_of(db, row):
                    for sub in _recipients(db, event):
                        payload = payload_for(event, row, render(event, sub["locale"], translate))
                        recipient = sub["recipient"] if sub["channel_kind"] in ("email", "telegram") else ""
                        queued += (
                            _enqueue(
                                db, sub["channel_id"], recipient, event["event"], payload, now, row["id"]
                            )
                            is not None
                        )
        db.execute(
            "INSERT INTO notification_state (name, value) VALUES ('audit_cursor', ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (last,),
        )
    return queued


def send_test(
    db: sqlite3.Connection,
    user,
    channel,
    form: dict,
    now: float,
    *,
    locale: str | None = None,
    translate=None,
) -> int:
    """Queue a test message on ``channel`` (the worker sends it, never the request),
    its text in ``locale`` (see :func:`render`). Email needs a recipient address;
    Telegram may name a chat."""
    if not permissions.can_manage_channels(user):
        raise Refused("forbidden", permissions.FORBIDDEN)
    recipient = str(form.get("recipient") or "").strip()
    if channel["kind"] == "email" and not valid_email(recipient):
        raise ValidationError({"recipient": N_("Enter a valid email address.")})
    if channel["kind"] == "telegram" and recipient and not _CHAT.match(recipient):
        raise ValidationError({"recipient": N_("A chat id is a number or @channelname.")})
    if channel["kind"] not in ("email", "telegram"):
        recipient = ""
    text = render(
        {"message": N_("Test message from Samosval, sent by %(user)s"), "params": {"user": user.username}},
        locale,
        translate,
    )
    payload = {
        "event": "test",
        "text": text,
        "occurred_at": utcnow_iso(now),
        "request_id": None,
        "deployment_id": None,
        "build_id": None,
        "url": None,
        "audit_id": None,
    }
    with transaction(db):
        message_id = _enqueue(db, channel["id"], recipient, "test", payload, now, None)
        audit.record(
            db,
            "notification_test",
            user_id=user.id,
            now=now,
            details={"channel": channel["id"], "name": channel["name"]},
        )
    return message_id


# --- the outbox ------------------------------------------------------------------------------


def claim_due(db: sqlite3.Connection, now: float, limit: int) -> list:
    """Pending messages due at ``now`` (of enabled channels), claimed for a lease:
    a worker that dies mid-send leaves them to be tried again after it."""
    if (
        db.execute(
            "SELECT 1 FROM notification_outbox WHERE status = 'pending' AND next_attempt_at <= ? LIMIT 1",
            (now,),
        ).fetchone()
        is None
    ):
        return []  # the usual case: no write lock taken
    with transaction(db):
        rows = db.execute(
            "SELECT o.*, c.kind, c.settings, c.sealed_settings, c.name AS channel_name FROM notification_outbox o "
            "JOIN notification_channels c ON c.id = o.channel_id AND c.enabled = 1 "
            "WHERE o.status = 'pending' AND o.next_attempt_at <= ? ORDER BY o.next_attempt_at, o.id LIMIT ?",
            (now, limit),
        ).fetchall()
        for row in rows:
            db.execute(
                "UPDATE notification_outbox SET next_attempt_at = ? WHERE id = ?",
                (now + LEASE_SECONDS, row["id"]),
            )
    return rows


def record_attempt(
    db: sqlite3.Connection,
    message,
    *,
    ok: bool,
    http_status: int | None,
    error: str | None,
    duration_ms: float,
    now: float,
    rng,
) -> str:
    """Write one try's outcome; returns the message's new status (sent, pending, dead)."""
    number = message["attempts"] + 1
    if ok:
        status, next_at = "sent", None
    elif number >= MAX_ATTEMPTS:
        status, next_at = "dead", None
    else:
        status, next_at = "pending", now + retry_delay(number, rng)
    error = (error or "")[:500] or None
    with transaction(db):
        db.execute(
            "INSERT INTO notification_attempts (message_id, number, at, ok, http_status, error, duration_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (message["id"], number, utcnow_iso(now), int(ok), http_status, error, round(duration_ms, 1)),
        )
        db.execute(
            "UPDATE notification_outbox SET status = ?, attempts = ?, next_attempt_at = ?, last_error = ?, "
            "sent_at = ? WHERE id = ?",
            (status, number, next_at, None if ok else error, utcnow_iso(now) if ok else None, message["id"]),
        )
    return status


def retry_dead(db: sqlite3.Connection, user, channel, now: float) -> int:
    """Give every dead message of ``channel`` a fresh round of tries."""
    if not permissions.can_manage_channels(user):
        raise Refused("forbidden", permissions.FORBIDDEN)
    with transaction(db):
        count = db.execute(
            "UPDATE notification_outbox SET status = 'pending', attempts = 0, next_attempt_at = ? "
            "WHERE channel_id = ? AND status = 'dead'",
            (now, channel["id"]),
        ).rowcount
        if count:
            audit.record(
                db,
                "notification_retry",
                user_id=user.id,
                now=now,
                details={"channel": channel["id"], "name": channel["name"], "messages": count},
            )
    return count


def deliveries(db: sqlite3.Connection, channel_id: int, limit: int = 100) -> list[dict]:
    """The channel's newest messages, each with its attempts (the deliveries page)."""
    messages = db.execute(
        "SELECT id, event, recipient, status, attempts, next_attempt_at, last_error, created_at, "
        "sent_at, delivery_uuid, payload FROM notification_outbox WHERE channel_id = ? "
        "ORDER BY id DESC LIMIT ?",
        (channel_id, limit),
    ).fetchall()
    ids = [m["id"] for m in messages]
    attempts: dict[int, list] = {}
    if ids:
        for row in db.execute(
            f"SELECT * FROM notification_attempts WHERE message_id IN ({', '.join('?' * len(ids))}) "
            "ORDER BY message_id, number",
            ids,
        ):
            attempts.setdefault(row["message_id"], []).append(row)
    return [
        {"message": m, "text": json.loads(m["payload"]).get("text"), "attempts": attempts.get(m["id"], [])}
        for m in messages
    ]
