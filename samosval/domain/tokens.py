"""Webhook tokens: what CI jobs and git hosts authenticate the commit hook with.

A token is shown once, when an admin creates it. What is kept:

- ``token_hash``: SHA-256 hex of the token, to find the token a caller sends
  (``Authorization: Bearer``, ``X-Samosval-Token``, ``X-Gitlab-Token``). Tokens
  are 256 random bits, so a fast unsalted hash is enough: there is nothing to
  brute-force, unlike a password.
- ``token_prefix``: the first characters, so people can tell tokens apart.
- ``sealed_secret``: the token itself, encrypted. GitHub never sends the secret:
  it signs the body with HMAC-SHA256 and we must recompute that HMAC, which
  needs the secret in clear. A hash cannot give it back, so the token is sealed
  with Fernet (AES + HMAC) under a key derived from the app's SECRET_KEY by HKDF.
  A database copy alone then reveals no usable secret. Changing SECRET_KEY makes
  sealed secrets unreadable: signatures stop verifying (bearer tokens keep
  working, they use the hash) until the tokens are re-created.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import sqlite3

from cryptography.fernet import Fernet, InvalidToken

from .. import audit
from ..crypto import hkdf_fernet
from ..db import transaction
from ..timeutil import utcnow_iso
from . import N_, Refused, ValidationError

log = logging.getLogger("samosval.tokens")

TOKEN_PREFIX = "smsv_"
PREFIX_LENGTH = len(TOKEN_PREFIX) + 6  # what the token list shows
MAX_NAME_LENGTH = 80
MAX_TOKEN_LENGTH = 256  # anything longer is not ours; do not even hash it
# A signed push to the shared URL is checked against every token: keep them few.
MAX_ACTIVE_TOKENS = 100

_HKDF_SALT = b"samosval-webhook-tokens"
_HKDF_INFO = b"sealed webhook secret v1"


# --- the secret itself -------------------------------------------------------


def generate_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _fernet(secret_key: str | bytes) -> Fernet:
    return hkdf_fernet(secret_key, _HKDF_SALT, _HKDF_INFO)


def seal(token: str, secret_key: str | bytes) -> str:
    return _fernet(secret_key).encrypt(token.encode("utf-8")).decode("ascii")


def unseal(sealed: str, secret_key: str | bytes) -> str | None:
    """The token in clear, or None when the key changed since it was sealed."""
    try:
        return _fernet(secret_key).decrypt(sealed.encode("ascii")).decode("utf-8")
    except (InvalidToken, ValueError):
        return None


# --- GitHub signatures ---------------------------------------------------------


def github_signature(secret: str | bytes, body: bytes) -> str:
    """``X-Hub-Signature-256`` as GitHub computes it: HMAC-SHA256 of the raw body."""
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_signature(secret: str | bytes, body: bytes, header: str | None) -> bool:
    """Constant-time check of a ``sha256=<hex>`` header against ``body``."""
    if not header:
        return False
    expected = github_signature(secret, body)
    return hmac.compare_digest(expected.encode("ascii"), header.strip().lower().encode("ascii", "replace"))


# --- rows ------------------------------------------------------------------------


def get_token(db: sqlite3.Connection, token_id: int):
    return db.execute("SELECT * FROM webhook_tokens WHERE id = ?", (token_id,)).fetchone()


def list_tokens(db: sqlite3.Connection):
    return db.execute(
        "SELECT t.id, t.name, t.token_prefix, t.created_at, t.last_used_at, t.revoked_at, "
        "u.username AS created_by_name FROM webhook_tokens t "
        "LEFT JOIN users u ON u.id = t.created_by "
        "ORDER BY t.revoked_at IS NOT NULL, t.id DESC"
    ).fetchall()


def create_token(
    db: sqlite3.Connection, name: str, *, secret_key: str | bytes, actor_id: int | None, now: float
) -> tuple[int, str]:
    """Create a token; returns ``(id, token)``. The token is not retrievable later."""
    name = " ".join((name or "").split())
    if not name:
        raise ValidationError({"name": N_("Give the token a name, e.g. the CI job that uses it.")})
    if len(name) > MAX_NAME_LENGTH:
        raise ValidationError({"name": N_("At most 80 characters.")})
    token = generate_token()
    with transaction(db):
        active = db.execute("SELECT COUNT(*) FROM webhook_tokens WHERE revoked_at IS NULL").fetchone()[0]
        if active >= MAX_ACTIVE_TOKENS:
            raise Refused(
                "conflict", N_("There are 100 active tokens: revoke one that is no longer used first.")
            )
        token_id = db.execute(
            "INSERT INTO webhook_tokens (name, token_prefix, token_hash, sealed_secret, created_by, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (
                name,
                token[:PREFIX_LENGTH],
                hash_token(token),
                seal(token, secret_key),
                actor_id,
                utcnow_iso(now),
            ),
        ).lastrowid
        audit.record(
            db,
            "token_create",
            user_id=actor_id,
            target_type="token",
            target_id=token_id,
            details={"name": name, "prefix": token[:PREFIX_LENGTH]},
            now=now,
        )
    return token_id, token


def revoke_token(db: sqlite3.Connection, token_id: int, *, actor_id: int | None, now: float) -> None:
    with transaction(db):
        row = get_token(db, token_id)
        if row is None:
            raise Refused("not_found", N_("No such token."))
        if row["revoked_at"]:
            raise Refused("conflict", N_("The token is already revoked."))
        db.execute("UPDATE webhook_tokens SET revoked_at = ? WHERE id = ?", (utcnow_iso(now), token_id))
        audit.record(
            db,
            "token_revoke",
            user_id=actor_id,
            target_type="token",
            target_id=token_id,
            details={"name": row["name"], "prefix": row["token_prefix"]},
            now=now,
        )


def touch(db: sqlite3.Connection, token_id: int, now: float) -> None:
    """Remember when a token was last used (call inside the caller's transaction)."""
    db.execute("UPDATE webhook_tokens SET last_used_at = ? WHERE id = ?", (utcnow_iso(now), token_id))


# --- authentication ------------------------------------------------------------------


def find_by_token(db: sqlite3.Connection, token: str | None):
    """The row of a presented token (revoked ones included: the caller says why it
    was refused), or None."""
    token = (token or "").strip()
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    digest = hash_token(token)
    row = db.execute("SELECT * FROM webhook_tokens WHERE token_hash = ?", (digest,)).fetchone()
    # The lookup is by an index; comparing the digests once more in constant time
    # keeps the final decision free of early-exit string comparison.
    if row is None or not hmac.compare_digest(row["token_hash"], digest):
        return None
    return row


def find_by_signature(db: sqlite3.Connection, body: bytes, header: str | None, secret_key: str | bytes):
    """The token whose secret signed ``body`` (revoked ones included, so the caller
    can say "revoked" rather than "mismatch"), or None. Every token is tried, each
    comparison in constant time; active tokens win over revoked ones."""
    if not header:
        return None
    found = None
    for row in db.execute("SELECT * FROM webhook_tokens ORDER BY revoked_at IS NOT NULL, id"):
        if check_signature(row, body, header, secret_key) and found is None:
            found = row
    return found


def check_signature(row, body: bytes, header: str | None, secret_key: str | bytes) -> bool:
    """Whether the token of ``row`` signed ``body`` (one unseal, one HMAC): what a
    per-token hook URL costs."""
    secret = unseal(row["sealed_secret"], secret_key)
    if secret is None:
        log.warning("webhook token %s cannot be unsealed (SECRET_KEY changed?)", row["id"])
        return False
    return verify_signature(secret, body, header)
