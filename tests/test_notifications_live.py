"""The notification worker inside the real app (``python app.py``, gevent): it starts
with the app, sends through a real socket, and after a ``kill -9`` the next start
sends what was left pending. Slow: starts the app twice."""

from __future__ import annotations

import time
from types import SimpleNamespace

from samosval.crypto import keyring
from samosval.db import connect
from samosval.domain import notifications as notify
from tests.live import AppProcess

SIGNING = "live-signing-secret"


def wait_for(condition, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def statuses(db_path: str) -> list[str]:
    db = connect(db_path)
    try:
        return [row[0] for row in db.execute("SELECT status FROM notification_outbox ORDER BY id")]
    finally:
        db.close()


def test_pending_messages_survive_a_kill_and_go_out_after_the_restart(tmp_path, http_receiver):
    http_receiver.always_fail = True
    first = AppProcess(tmp_path / "instance", tmp_path / "first.log")
    try:
        db = connect(first.target)
        root = SimpleNamespace(id=1, username="root", role="admin", is_authenticated=True)
        ring = keyring("reliability-test-secret")  # the secret key AppProcess sets
        channel_id = notify.save_channel(
            db,
            root,
            "webhook",
            {"name": "live", "url": f"{http_receiver.url}/live", "signing_secret": SIGNING},
            ring,
            time.time(),
        )
        channel = notify.get_channel(db, channel_id)
        notify.send_test(db, root, channel, {}, time.time())
        # The app's own worker tries it (and the receiver refuses).
        assert wait_for(lambda: len(http_receiver.calls) >= 1), first.log_text()
        assert wait_for(lambda: db.execute("SELECT attempts FROM notification_outbox").fetchone()[0] == 1)
    finally:
        first.kill()
    # While nothing runs: the receiver recovers, the first message's wait passes, a second is queued.
    http_receiver.always_fail = False
    db.execute("UPDATE notification_outbox SET next_attempt_at = 0")
    notify.send_test(db, root, channel, {}, time.time())
    db.close()
    assert statuses(first.target) == ["pending", "pending"]
    second = AppProcess(tmp_path / "instance", tmp_path / "second.log")
    try:
        assert wait_for(lambda: statuses(second.target) == ["sent", "sent"]), second.log_text()
    finally:
        second.stop()
    assert all(http_receiver.signature_ok(call, SIGNING) for call in http_receiver.calls)
    assert len(http_receiver.calls) == 3
