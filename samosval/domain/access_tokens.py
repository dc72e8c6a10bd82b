"""Personal access tokens for the JSON API (issue 22).

A user creates tokens for scripts on ``/account/tokens``. A token is shown once and
kept as its SHA-256 hash (``tokens.hash_token``, shared with the webhook tokens:
256 random bits need no slow hash). It carries a name, scopes and an expiry.

What a token may do is the intersection of two things, decided at every use:
its scopes (``permissions.token_allows``) and its owner's role *now* (the API asks
the same ``permissions`` functions as the pages, with the owner as the user). A
token therefore never exceeds its owner's role, and it stops working when its
owner is blocked. Creation, revocation and refused uses are audited (refused
uses within a per-address limit, see ``resolve``).
"""

from __future__ import annotations

import secrets
import sqlite3
from dataclasses import dataclass

from .. import audit, permissions
from ..db import transaction
from ..timeutil import utcnow_iso
from . import N_, Refused, ValidationError
from .tokens import MAX_TOKEN_LENGTH, hash_token

TOKEN_PREFIX = "smpat_"
PREFIX_LENGTH = len(TOKEN_PREFIX) + 6  # what the token list shows
MAX_NAME_LENGTH = 80
DEFAULT_DAYS = 90
MAX_DAYS = 365
MAX_TOKENS_PER_USER = 50
DAY = 86400.0
# "Last used" is written at most this often per token: a busy script must not turn
# every read into a write.
LAST_USED_EVERY = 60.0

# Why a token was refused: the reason recorded in the audit row and said in the 401.
REFUSAL_MESSAGES = {
    "unknown": N_("The token is not valid."),
    "revoked": N_("The token has been revoked."),
    "expired": N_("The token has expired."),
    "blocked": N_("The token's owner is blocked."),
}


@dataclass(frozen=True)
class Resolved:
    token: sqlite3.Row
    user: sqlite3.Row
    scopes: frozenset


def generate_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def parse_scopes(raw: str | None) -> frozenset:
    return frozenset((raw or "").split())


def parse_days(raw) -> int:
    """The expiry in days from a form or JSON value; empty means the default."""
    if raw is None or str(raw).strip() == "":
        return DEFAULT_DAYS
    try:
        days = int(str(raw).strip())
    except ValueError:
        days = 0
    if not 1 <= days <= MAX_DAYS:
        raise ValidationError({"days": N_("The expiry is a whole number of days from 1 to 365.")})
    return days


def validate(user, name: str, scopes, days) -> tuple[str, frozenset, int]:
    """Clean name, scopes and days, or ValidationError with every field's error."""
    errors: dict[str, str] = {}
    name = " ".join(str(name or "").split())
    if not name:
        errors["name"] = N_("Enter a name, e.g. the script that will use the token.")
    elif len(name) > MAX_NAME_LENGTH:
        errors["name"] = N_("The name is at most 80 characters long.")
    chosen = frozenset(str(scope) for scope in (scopes or ()))
    if not chosen:
        errors["scopes"] = N_("Choose at least one scope.")
    elif not chosen <= frozenset(permissions.TOKEN_SCOPES):
        errors["scopes"] = N_("Unknown scope.")
    elif not chosen <= frozenset(permissions.grantable_scopes(user)):
        errors["scopes"] = N_("Only administrators may give a token the admin scope.")
    try:
        days = parse_days(days)
    except ValidationError as exc:
        errors.update(exc.errors)
    if errors:
        raise ValidationError(errors)
    return name, chosen, days


def create_token(db: sqlite3.Connection, user, name: str, scopes, days, *, now: float) -> tuple[int, str]:
    """Create a token for ``user``; returns ``(id, token)``. The token in clear
    exists only in this answer."""
    name, chosen, days = validate(user, name, scopes, days)
    token = generate_token()
    expires = now + days * DAY
    with transaction(db):
        count = db.execute(
            "SELECT COUNT(*) FROM api_tokens WHERE user_id = ? AND revoked_at IS NULL AND expires_ts > ?",
            (user.id, now),
        ).fetchone()[0]
        if count >= MAX_TOKENS_PER_USER:
            raise Refused("conflict", N_("You have 50 active tokens: revoke one you no longer use first."))
        scope_text = " ".join(scope for scope in permissions.TOKEN_SCOPES if scope in chosen)
        token_id = db.execute(
            "INSERT INTO api_tokens (user_id, name, token_prefix, token_hash, scopes, created_at, "
            "expires_at, expires_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                user.id,
                name,
                token[:PREFIX_LENGTH],
                hash_token(token),
                scope_text,
                utcnow_iso(now),
                utcnow_iso(expires),
                expires,
            ),
        ).lastrowid
        audit.record(
            db,
            "api_token_create",
            user_id=user.id,
            target_type="api_token",
            target_id=token_id,
            details={"name": name, "scopes": scope_text, "expires_at": utcnow_iso(expires)},
            now=now,
        )
    return token_id, token


def list_tokens(db: sqlite3.Connection, user_id: int) -> list:
    """The user's tokens, newest first, revoked ones included (they say so)."""
    return db.execute(
        "SELECT id, name, token_prefix, scopes, created_at, expires_at, expires_ts, last_used_at, "
        "revoked_at FROM api_tokens WHERE user_id = ? ORDER BY id DESC LIMIT 200",
        (user_id,),
    ).fetchall()


def state(row, now: float) -> str:
    """active, expired or revoked: what the tokens page shows."""
    return refusal_reason(row, now) or "active"


def revoke_token(db: sqlite3.Connection, user, token_id, *, now: float) -> sqlite3.Row:
    """Revoke one of ``user``'s own tokens. Someone else's token is "not found"."""
    try:
        token_id = int(str(token_id).strip())
    except (TypeError, ValueError):
        raise Refused("not_found", N_("No such token.")) from None
    with transaction(db):
        row = db.execute(
            "SELECT * FROM api_tokens WHERE id = ? AND user_id = ?", (token_id, user.id)
        ).fetchone()
        if row is None:
            raise Refused("not_found", N_("No such token."))
        if row["revoked_at"]:
            raise Refused("conflict", N_("This token is already revoked."))
        db.execute("UPDATE api_tokens SET revoked_at = ? WHERE id = ?", (utcnow_iso(now), token_id))
        audit.record(
            db,
            "api_token_revoke",
            user_id=user.id,
            target_type="api_token",
            target_id=token_id,
            details={"name": row["name"]},
            now=now,
        )
    return row


@dataclass(frozen=True)
class Refusal:
    """Why a token was refused (a key of ``REFUSAL_MESSAGES``) and what to audit."""

    reason: str
    row: sqlite3.Row | None = None
    prefix: str = ""


def refusal_reason(row, now: float) -> str | None:
    """revoked or expired (what ends a token's use, and its live streams), else None.
    A token row that is gone counts as revoked."""
    if row is None or row["revoked_at"]:
        return "revoked"
    if row["expires_ts"] <= now:
        return "expired"
    return None


def get_token(db: sqlite3.Connection, token_id: int) -> sqlite3.Row | None:
    return db.execute("SELECT * FROM api_tokens WHERE id = ?", (token_id,)).fetchone()


def stream_key(token_id: int) -> tuple[str, int]:
    """The key live log streams share one token's row under (``SimulationState.fresh``)."""
    return ("api_token", token_id)


def resolve(db: sqlite3.Connection, token: str, *, now: float) -> Resolved | Refusal:
    """The token, its owner and scopes; or why it is refused. The caller audits a
    refusal (``record_refusal``) while the caller's address is under its limit of
    failed uses (auth.py): anonymous garbage cannot grow the audit log without
    bound. A successful use refreshes "last used"."""
    token = (token or "").strip()
    row = None
    if token and len(token) <= MAX_TOKEN_LENGTH:
        row = db.execute("SELECT * FROM api_tokens WHERE token_hash = ?", (hash_token(token),)).fetchone()
    if row is None:
        return Refusal("unknown", prefix=token[:PREFIX_LENGTH])
    reason = refusal_reason(row, now)
    if reason is None:
        user = db.execute("SELECT * FROM users WHERE id = ?", (row["user_id"],)).fetchone()
        reason = "blocked" if user is None or not user["is_active"] else None
    if reason is not None:
        return Refusal(reason, row)
    if row["last_used_ts"] is None or now - row["last_used_ts"] >= LAST_USED_EVERY:
        with transaction(db):
            db.execute(
                "UPDATE api_tokens SET last_used_at = ?, last_used_ts = ? WHERE id = ?",
                (utcnow_iso(now), now, row["id"]),
            )
    return Resolved(token=row, user=user, scopes=parse_scopes(row["scopes"]))


def record_refusal(db: sqlite3.Connection, refusal: Refusal, *, now: float) -> None:
    """Audit a failed use: the token and its owner when the token exists, else the
    first characters of what was sent."""
    row = refusal.row
    details = {"name": row["name"]} if row is not None else {"prefix": refusal.prefix}
    with transaction(db):
        audit.record(
            db,
            "api_token_refused",
            user_id=row["user_id"] if row is not None else None,
            target_type="api_token" if row is not None else None,
            target_id=row["id"] if row is not None else None,
            details={"reason": refusal.reason, **details},
            now=now,
        )


def record_scope_refusal(
    db: sqlite3.Connection, token_id: int, user_id: int, required: str, endpoint: str | None, *, now: float
) -> None:
    """A valid token used where its scopes do not reach: audited like other failed uses."""
    with transaction(db):
        audit.record(
            db,
            "api_token_refused",
            user_id=user_id,
            target_type="api_token",
            target_id=token_id,
            details={"reason": "scope", "required": required, "endpoint": endpoint},
            now=now,
        )
