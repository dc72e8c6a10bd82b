"""Whether the viewer of a live log stream may still watch it.

A stream outlives the request that opened it, so it re-checks what the request
checked: at every heartbeat, status change and wake-up (``sse.log_events``). The
user row is read again to notice a block, a role change, a new password or a
logout (each bumps ``session_version``); the personal access token a script opened
it with, to notice that it was revoked or expired; the deployment row to notice that it was
deleted or that the viewer no longer sees it (removed as collaborator, request
hidden). The permission itself is ``permissions.can_view_deployment``.

Both rows are shared through ``SimulationState.fresh``: a thousand streams of one
user and one deployment cost one read of each per ``FRESH_SECONDS``, and a status
change or a revocation (``revoke_user``) forces a fresh read at once.
"""

from __future__ import annotations

from .auth import User
from .db import connect
from .domain import access_tokens as access_token_domain
from .domain import deployments as deployment_domain
from .domain import sessions as session_domain
from .domain import users as user_domain
from .permissions import can_view_deployment

FRESH_SECONDS = 1.0

# Why a stream ended, as sent in its ``end`` event.
END_REASONS = (
    "deleted",
    "no_access",
    "blocked",
    "role_changed",
    "password_changed",
    "logged_out",
    "token_revoked",
    "token_expired",
)


class StreamGuard:
    def __init__(
        self,
        state,
        db_path: str,
        user_row,
        deployment_id: int,
        logs,
        fresh_seconds: float = FRESH_SECONDS,
        session_id: int | None = None,
        session_alive=None,
        token_id: int | None = None,
        token_refusal=None,
    ):
        self.state = state
        self.token_id = token_id  # the personal access token it was opened with (auth.py)
        self.token_refusal = token_refusal  # token -> None | "revoked" | "expired"
        self.session_id = session_id  # the viewer's browser session (domain.sessions)
        self.session_alive = session_alive  # (session, user) -> bool: idle and lifetime limits
        self.db_path = db_path
        self.user_id = user_row["id"]
        self.role = user_row["role"]
        self.password_hash = user_row["password_hash"]
        self.session_version = user_row["session_version"]
        self.deployment_id = deployment_id
        self.logs = logs
        self.fresh_seconds = fresh_seconds

    def _read(self, query, row_id):
        db = connect(self.db_path)
        try:
            return query(db, row_id)
        finally:
            db.close()

    def user_row(self):
        return self.state.fresh(
            ("user", self.user_id), lambda: self._read(user_domain.get_user, self.user_id), self.fresh_seconds
        )

    def session_row(self):
        """The viewer's session; gone once it ends (logout, revoked, expired and
        cleaned up). ``auth.end_session_streams`` forgets it and wakes the streams."""
        return self.state.fresh(
            session_domain.stream_key(self.session_id),
            lambda: self._read(session_domain.get_session, self.session_id),
            self.fresh_seconds,
        )

    def token_row(self):
        """The token the stream was opened with; ``auth.end_token_streams`` forgets it
        at revocation and wakes the streams."""
        return self.state.fresh(
            access_token_domain.stream_key(self.token_id),
            lambda: self._read(access_token_domain.get_token, self.token_id),
            self.fresh_seconds,
        )

    def deployment_row(self):
        """The deployment as of its current status: re-read once per status change and
        when its stream closes (deleted, or the server stopping)."""
        return self.state.fresh(
            ("deployment", self.deployment_id),
            lambda: self._read(deployment_domain.get_deployment, self.deployment_id),
            self.fresh_seconds,
            version=(self.logs.status_version, self.logs.closed),
        )

    def lost_access(self) -> str | None:
        """None while the viewer may watch; otherwise one of ``END_REASONS``."""
        user = self.user_row()
        if user is None:
            return "logged_out"
        # A block, role change or new password also bumps the session version:
        # name the cause rather than the logout it implies.
        if not user["is_active"]:
            return "blocked"
        if user["role"] != self.role:
            return "role_changed"
        if user["password_hash"] != self.password_hash:
            return "password_changed"
        if user["session_version"] != self.session_version:
            return "logged_out"
        if self.session_id is not None:
            session = self.session_row()
            if session is None or (self.session_alive is not None and not self.session_alive(session, user)):
                return "logged_out"
        if self.token_id is not None and self.token_refusal is not None:
            reason = self.token_refusal(self.token_row())
            if reason is not None:
                return f"token_{reason}"
        deployment = self.deployment_row()
        if deployment is None:
            return "deleted"
        if not can_view_deployment(User(user), deployment):
            return "no_access"
        return None
