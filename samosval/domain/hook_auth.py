"""Who is calling the commit hook: a webhook token (CI, git hosts) or a logged-in
user (the "Simulate new commit" button). No Flask: the route hands over what the
call presented (:class:`Credentials`).

Where a token can be found, cheapest first:

- a bearer token (``Authorization: Bearer``, ``X-Samosval-Token``,
  ``X-Gitlab-Token``, or ``?token=`` for Bitbucket Cloud, which can neither
  sign nor set headers): one indexed lookup by its SHA-256;
- a signature on a per-token URL (``/api/hooks/commit/<token_id>``): the one
  token named by the URL is unsealed and checked;
- a signature on the shared URL (``/api/hooks/commit``): every token is
  unsealed and HMAC'd, revoked ones included, about 1.5 ms per token. Kept so
  hooks set up before per-token URLs keep working; the token page shows each
  token's own URL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import tokens
from .hook_parsing import (
    R_CSRF,
    R_NO_CREDENTIALS,
    R_REVOKED_TOKEN,
    R_SIGNATURE,
    R_UNKNOWN_TOKEN,
    R_WRONG_TOKEN,
    detect_source,
    signature_header,
    signed_part,
)


@dataclass
class Caller:
    """Who called: a token (CI, git host) or a logged-in user (the UI button)."""

    user_id: int | None = None
    username: str | None = None
    token_id: int | None = None
    token_name: str | None = None
    signed: bool = False  # authenticated by an HMAC over the body
    user: Any = None  # the logged-in user, for permission questions; never stored

    @property
    def is_token(self) -> bool:
        return self.token_id is not None

    def describe(self) -> dict:
        if self.token_id is not None:
            return {"token_id": self.token_id, "token": self.token_name}
        if self.user_id is not None:
            return {"user_id": self.user_id, "user": self.username}
        return {}


@dataclass
class Credentials:
    """What one call presented."""

    token: str | None = None  # a bearer token in one of the accepted places
    signature: str | None = None  # ``sha256=<hex>``, see hook_parsing.signature_header
    signed_body: bytes = b""  # what the signature covers
    user: Any = None  # the session's user when logged in
    csrf_valid: Callable[[], bool] = lambda: False


def presented_token(headers, args=None) -> str | None:
    header = headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    value = (
        headers.get("X-Samosval-Token")
        or headers.get("X-Gitlab-Token")
        or (args.get("token") if args is not None else None)
        or ""
    )
    return value.strip() or None


def read_credentials(
    headers,
    args,
    body: bytes,
    content_type: str | None,
    *,
    user=None,
    csrf_valid: Callable[[], bool] = lambda: False,
) -> Credentials:
    """What a call presents, read the way its sender writes it (see hook_parsing)."""
    source = detect_source(headers)
    return Credentials(
        token=presented_token(headers, args),
        signature=signature_header(headers, source),
        signed_body=signed_part(body, content_type, source),
        user=user,
        csrf_valid=csrf_valid,
    )


def _token_caller(row, *, signed: bool) -> tuple[Caller, str | None]:
    caller = Caller(token_id=row["id"], token_name=row["name"], signed=signed)
    return caller, R_REVOKED_TOKEN if row["revoked_at"] else None


def authenticate(
    db: sqlite3.Connection, credentials: Credentials, *, secret_key: str | bytes, token_id: int | None = None
) -> tuple[Caller, str | None]:
    """Who is calling, and the refusal reason (an R_* text) if nobody acceptable is.

    ``token_id``: the call came to that token's own URL; only that token is
    accepted there, and sessions are not."""
    if credentials.token is not None:
        row = tokens.find_by_token(db, credentials.token)
        if row is None:
            return Caller(), R_UNKNOWN_TOKEN
        if token_id is not None and row["id"] != token_id:
            return Caller(), R_WRONG_TOKEN
        return _token_caller(row, signed=False)
    if credentials.signature:
        if token_id is not None:
            row = tokens.get_token(db, token_id)
            # An id that does not exist answers like a wrong signature, so an anonymous
            # caller cannot tell which token ids exist by probing their URLs.
            if row is None or not tokens.check_signature(
                row, credentials.signed_body, credentials.signature, secret_key
            ):
                return Caller(), R_SIGNATURE
        else:
            row = tokens.find_by_signature(db, credentials.signed_body, credentials.signature, secret_key)
            if row is None:
                return Caller(), R_SIGNATURE
        return _token_caller(row, signed=True)
    if token_id is None and credentials.user is not None:
        user = credentials.user
        caller = Caller(user_id=user.id, username=user.username, user=user)
        return caller, None if credentials.csrf_valid() else R_CSRF
    return Caller(), R_NO_CREDENTIALS
