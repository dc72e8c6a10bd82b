"""A live log stream opened with a personal access token ends, with its reason,
when that token is revoked (at once) or expires (at the next heartbeat)."""

from __future__ import annotations

import json
import threading
import time
from types import SimpleNamespace

import pytest

from samosval.domain import access_tokens
from tests.test_sse import Stream

DAY = 86400.0


@pytest.fixture
def token_stream(app, db, users, engine, clock, sample):
    """``open(days)`` -> (stream, token id) for dana's read token; all closed at the end."""
    app.config["SSE_HEARTBEAT_SECONDS"] = 0.02
    opened = []

    def open_stream(days=90):
        row = db.execute("SELECT * FROM users WHERE username = 'dana'").fetchone()
        owner = SimpleNamespace(id=row["id"], username=row["username"], role=row["role"])
        token_id, token = access_tokens.create_token(db, owner, "tail", ("read",), days, now=clock())
        response = app.test_client().get(
            f"/api/deployments/{sample['deployment_id']}/logs/stream",
            headers={"Authorization": f"Bearer {token}"},
            buffered=False,
        )
        assert response.status_code == 200
        stream = Stream(response)
        opened.append(stream)
        stream.read_until(lambda e: stream.statuses())
        return stream, token_id

    yield open_stream
    for stream in opened:
        stream.close()


def end_reason(stream, limit=2000) -> str:
    events = stream.read_until(lambda e: any(x.get("event") == "end" for x in e), limit=limit)
    return json.loads(events[-1]["data"])["reason"]


def test_revoking_the_token_ends_its_stream_at_once(app, auth, token_stream):
    app.config["SSE_HEARTBEAT_SECONDS"] = 5  # only the wake-up can end it quickly
    stream, token_id = token_stream()
    dana = auth.client_for("dana")
    started = time.monotonic()
    threading.Timer(0.1, lambda: dana.post(f"/account/tokens/{token_id}/revoke")).start()
    assert end_reason(stream, limit=3) == "token_revoked"
    assert time.monotonic() - started < 2
    assert stream.ended()


def test_a_token_expiring_ends_its_stream_at_the_next_heartbeat(token_stream, clock):
    stream, _token_id = token_stream(days=1)
    clock.advance(DAY)
    assert end_reason(stream) == "token_expired"
    assert stream.ended()


def test_a_live_token_keeps_its_stream_open(token_stream, clock, sample, app):
    stream, _token_id = token_stream(days=2)
    clock.advance(DAY)
    logs = app.extensions["samosval"].state.runtime(sample["deployment_id"]).logs
    logs.append(clock(), "INFO", "still here")
    events = stream.read_until(lambda e: any("still here" in x.get("data", "") for x in e))
    assert not [e for e in events if e.get("event") == "end"]
