"""Notifications (issue 21) against real receivers on 127.0.0.1: a signed webhook
that fails the first N times, Slack and Telegram formats, SMTP (aiosmtpd), a
receiver that hangs, one that answers 500 forever, and a restart with pending
messages. The worker's ``step(now)`` runs on a fake clock; only the network is real."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from samosval.crypto import app_keyring
from samosval.domain import builds as build_domain
from samosval.domain import deployments as deployment_domain
from samosval.domain import notifications as notify
from samosval.notify_worker import NotificationWorker, build_worker
from samosval.simulator.state import SimulationState
from tests import factories

T0 = 1_800_000_000.0
SIGNING = "whsec-" + "k3y" * 6
URL_TOKEN = "tok3nInTheUrl" + "Q" * 10
BOT_TOKEN = "123456:ABCdefGHIjklMNOpqrSTUvwxYZ012345"
SMTP_PASSWORD = "smtp-Pa55word-" + "W" * 6


def admin(users):
    return SimpleNamespace(id=users["alice"], username="alice", role="admin", is_authenticated=True)


def person(users, name, role="developer"):
    return SimpleNamespace(id=users[name], username=name, role=role, is_authenticated=True)


def worker_for(app, timeout=2.0, seed=7):
    return NotificationWorker(
        app.config["DATABASE"], app_keyring(app.config), rng=random.Random(seed), timeout=timeout
    )


def make_channel(app, db, users, kind, **form):
    return notify.save_channel(
        db, admin(users), kind, {"name": f"{kind} channel", **form}, app_keyring(app.config), T0
    )


def messages(db):
    return db.execute("SELECT * FROM notification_outbox ORDER BY id").fetchall()


@pytest.fixture
def webhook(app, db, users, http_receiver):
    channel_id = make_channel(
        app, db, users, "webhook", url=f"{http_receiver.url}/hook?token={URL_TOKEN}", signing_secret=SIGNING
    )
    return channel_id


# --- the retry rule ------------------------------------------------------------------------


def test_it_backs_off_from_a_minute_to_six_hours():
    rng = random.Random(3)
    delays = [notify.retry_delay(attempt, rng) for attempt in range(1, notify.MAX_ATTEMPTS)]
    assert 48 <= delays[0] <= 72
    assert 0.8 * 6 * 3600 <= delays[-1] <= 6 * 3600
    assert all(later > earlier for earlier, later in zip(delays, delays[1:]))
    jittered = {round(notify.retry_delay(2, random.Random(seed))) for seed in range(20)}
    assert len(jittered) > 10  # messages failing together do not come back together


# --- webhook: signature, retries, dead letters --------------------------------------------


def test_it_signs_the_webhook_and_retries_until_it_is_accepted(app, db, users, webhook, http_receiver):
    http_receiver.fail_first = 2
    channel = notify.get_channel(db, webhook)
    notify.send_test(db, admin(users), channel, {}, T0)
    worker = worker_for(app)
    assert worker.step(T0)["failed"] == 1
    first = messages(db)[0]
    assert first["status"] == "pending" and first["attempts"] == 1
    assert T0 + 48 <= first["next_attempt_at"] <= T0 + 72
    assert worker.step(T0 + 30) == {"queued": 0, "sent": 0, "failed": 0, "dead": 0}  # not due yet
    worker.step(first["next_attempt_at"])
    worker.step(messages(db)[0]["next_attempt_at"])
    final = messages(db)[0]
    assert final["status"] == "sent" and final["attempts"] == 3 and final["last_error"] is None
    calls = http_receiver.calls
    assert len(calls) == 3
    assert all(http_receiver.signature_ok(call, SIGNING) for call in calls)
    assert {call["headers"]["X-Samosval-Delivery"] for call in calls} == {final["delivery_uuid"]}
    assert calls[0]["headers"]["X-Samosval-Event"] == "test"
    body = json.loads(calls[0]["body"])
    assert body["event"] == "test" and body["delivery_id"] == final["delivery_uuid"]
    attempts = db.execute(
        "SELECT ok, http_status, error FROM notification_attempts ORDER BY number"
    ).fetchall()
    assert [tuple(a) for a in attempts] == [
        (0, 500, "HTTP 500 Internal Server Error"),
        (0, 500, "HTTP 500 Internal Server Error"),
        (1, 200, None),
    ]


def test_it_dead_letters_after_eight_tries_and_shows_it(app, db, users, auth, webhook, http_receiver):
    http_receiver.always_fail = True
    notify.send_test(db, admin(users), notify.get_channel(db, webhook), {}, T0)
    worker, now, waits = worker_for(app), T0, []
    for _ in range(notify.MAX_ATTEMPTS):
        worker.step(now)
        row = messages(db)[0]
        if row["next_attempt_at"] is not None:
            waits.append(row["next_attempt_at"] - now)
            now = row["next_attempt_at"]
    row = messages(db)[0]
    assert (
        row["status"] == "dead" and row["attempts"] == notify.MAX_ATTEMPTS and len(http_receiver.calls) == 8
    )
    assert len(waits) == 7 and waits[0] < 80 and waits[-1] <= 6 * 3600
    assert worker.step(now + 10 * 3600)["sent"] == 0 and len(http_receiver.calls) == 8  # dead stays dead
    page = auth.client_for("alice").get(f"/admin/notifications/{webhook}/deliveries").get_data(as_text=True)
    assert 'data-delivery-status="dead"' in page and "HTTP 500" in page and page.count("data-attempt=") == 8
    assert URL_TOKEN not in page and SIGNING not in page
    # An admin gives it a fresh round.
    http_receiver.always_fail = False
    auth.client_for("alice").post(f"/admin/notifications/{webhook}/retry")
    worker.step(time.time() + 1)
    assert messages(db)[0]["status"] == "sent"


def test_it_gives_up_on_a_receiver_that_hangs_without_holding_the_others(app, db, users, http_receiver):
    from tests.notify_receivers import HTTPReceiver

    slow = HTTPReceiver().start()
    try:
        slow.hang_seconds = 3.0
        hanging = make_channel(app, db, users, "slack", url=f"{slow.url}/slow")
        fine = make_channel(app, db, users, "slack", url=f"{http_receiver.url}/fine")
        for channel_id in (hanging, fine):
            notify.send_test(db, admin(users), notify.get_channel(db, channel_id), {}, T0)
        started = time.perf_counter()
        counts = worker_for(app, timeout=0.5).step(T0)
        elapsed = time.perf_counter() - started
    finally:
        slow.stop()
    assert counts["sent"] == 1 and counts["failed"] == 1
    assert elapsed < 2.5  # bounded by the timeout, not by the receiver
    by_channel = {row["channel_id"]: row for row in messages(db)}
    assert by_channel[fine]["status"] == "sent"
    assert by_channel[hanging]["status"] == "pending" and "timed out" in by_channel[hanging]["last_error"]


def test_it_records_a_refused_connection(app, db, users):
    channel_id = make_channel(app, db, users, "slack", url="http://127.0.0.1:9/closed")
    notify.send_test(db, admin(users), notify.get_channel(db, channel_id), {}, T0)
    worker_for(app).step(T0)
    assert "connection failed" in messages(db)[0]["last_error"]


# --- Slack, Telegram, email ------------------------------------------------------------------


def test_it_speaks_slack_and_telegram(app, db, users, http_receiver, auth):
    slack = make_channel(app, db, users, "slack", url=f"{http_receiver.url}/services/T0/B0/{URL_TOKEN}")
    telegram = make_channel(
        app, db, users, "telegram", bot_token=BOT_TOKEN, chat_id="-100123", base_url=http_receiver.url
    )
    notify.send_test(db, admin(users), notify.get_channel(db, slack), {}, T0)
    notify.send_test(db, admin(users), notify.get_channel(db, telegram), {"recipient": "@releases"}, T0)
    assert worker_for(app).step(T0)["sent"] == 2
    by_path = {call["path"]: json.loads(call["body"]) for call in http_receiver.calls}
    assert by_path[f"/services/T0/B0/{URL_TOKEN}"]["text"].startswith("[Samosval] Test message")
    sent = by_path[f"/bot{BOT_TOKEN}/sendMessage"]
    assert sent["chat_id"] == "@releases" and sent["text"].startswith("[Samosval]")
    page = auth.client_for("alice").get("/admin/notifications").get_data(as_text=True)
    assert BOT_TOKEN not in page and URL_TOKEN not in page and "chat -100123" in page


def test_it_sends_email_over_smtp(app, db, users, smtp_server):
    channel_id = make_channel(
        app,
        db,
        users,
        "email",
        host="127.0.0.1",
        port=str(smtp_server.port),
        security="none",
        from_addr="samosval@example.com",
    )
    notify.send_test(
        db, admin(users), notify.get_channel(db, channel_id), {"recipient": "dana@example.com"}, T0
    )
    assert worker_for(app).step(T0)["sent"] == 1
    [mail] = smtp_server.messages
    assert mail["to"] == ["dana@example.com"] and mail["from"] == "samosval@example.com"
    assert "Subject: [Samosval] Test message from Samosval" in mail["data"]


def test_it_scrubs_secrets_from_errors(app, db, users, smtp_server):
    # A login the server does not offer: the error must not carry the password.
    channel_id = make_channel(
        app,
        db,
        users,
        "email",
        host="127.0.0.1",
        port=str(smtp_server.port),
        security="none",
        from_addr="samosval@example.com",
        username="robot",
        password=SMTP_PASSWORD,
    )
    notify.send_test(
        db, admin(users), notify.get_channel(db, channel_id), {"recipient": "dana@example.com"}, T0
    )
    worker_for(app).step(T0)
    row = messages(db)[0]
    assert row["status"] == "pending" and SMTP_PASSWORD not in (row["last_error"] or "")


# --- durability --------------------------------------------------------------------------------


def test_it_sends_pending_messages_after_a_restart(app, db, users, webhook, http_receiver):
    channel = notify.get_channel(db, webhook)
    for _ in range(3):
        notify.send_test(db, admin(users), channel, {}, T0)
    # The first process claims two messages and dies before sending them.
    from samosval.db import connect

    first = connect(app.config["DATABASE"])
    claimed = notify.claim_due(first, T0, 2)
    first.close()
    assert len(claimed) == 2 and http_receiver.calls == []
    # The next process starts: the unclaimed one goes at once, the claimed ones after the lease.
    restarted = worker_for(app)
    assert restarted.step(T0 + 1)["sent"] == 1
    assert restarted.step(T0 + notify.LEASE_SECONDS + 1)["sent"] == 2
    assert [row["status"] for row in messages(db)] == ["sent"] * 3 and len(http_receiver.calls) == 3


def test_it_never_blocks_the_request_that_queues(auth, webhook, http_receiver, db):
    response = auth.client_for("alice").post(f"/admin/notifications/{webhook}/test")
    assert response.status_code == 302
    assert http_receiver.calls == [] and messages(db)[0]["status"] == "pending"


@pytest.mark.sqlite_only
def test_it_keeps_channel_secrets_encrypted_at_rest(app, db, users, webhook):
    make_channel(app, db, users, "telegram", bot_token=BOT_TOKEN, chat_id="1")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for path in Path(app.config["DATABASE"]).parent.glob("samosval.sqlite3*"):
        data = path.read_bytes()
        for secret in (URL_TOKEN, SIGNING, BOT_TOKEN):
            assert secret.encode() not in data
    details = " ".join(
        r[0] for r in db.execute("SELECT details FROM audit_log WHERE action LIKE 'notification_%'")
    )
    assert "url" in details and URL_TOKEN not in details and SIGNING not in details


def test_an_edit_keeps_secrets_left_empty(app, db, users, webhook, auth):
    response = auth.client_for("alice").post(
        f"/admin/notifications/{webhook}",
        data={"name": "renamed", "url": "", "signing_secret": "", "enabled": "1"},
    )
    assert response.status_code == 302
    channel = notify.get_channel(db, webhook)
    assert channel["name"] == "renamed"
    assert notify.channel_secrets(channel, app_keyring(app.config))["signing_secret"] == SIGNING


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, data, field",
    [
        ("webhook", {"name": "x", "url": "not a url", "signing_secret": "s"}, "url"),
        ("webhook", {"name": "x", "url": "ftp://example.com/x", "signing_secret": "s"}, "url"),
        ("webhook", {"name": "x", "url": "https://example.com/x"}, "signing_secret"),
        ("slack", {"name": "", "url": "https://hooks.slack.com/services/x"}, "name"),
        ("telegram", {"name": "x", "bot_token": "nope"}, "bot_token"),
        ("telegram", {"name": "x", "bot_token": BOT_TOKEN, "base_url": "javascript:alert(1)"}, "base_url"),
        (
            "email",
            {"name": "x", "host": "smtp.example.com", "port": "99999", "from_addr": "a@example.com"},
            "port",
        ),
        (
            "email",
            {"name": "x", "host": "smtp.example.com", "port": "25", "from_addr": "not-an-address"},
            "from_addr",
        ),
    ],
)
def test_it_refuses_bad_channel_settings(auth, db, kind, data, field):
    response = auth.client_for("alice").post(f"/admin/notifications/new/{kind}", data=data)
    assert response.status_code == 400
    assert f'data-error-for="{field}"' in response.get_data(as_text=True)
    assert db.execute("SELECT COUNT(*) FROM notification_channels").fetchone()[0] == 0


def test_it_refuses_a_bad_email_address_in_a_subscription(app, auth, db, users):
    channel_id = make_channel(app, db, users, "email", host="127.0.0.1", port="25", from_addr="s@example.com")
    response = auth.client_for("dana").post(
        "/notifications/subscribe",
        data={
            "scope": "owned",
            "channel_id": str(channel_id),
            "events": ["build_failed"],
            "recipient": "dana at home",
        },
    )
    assert response.status_code == 400 and 'data-error-for="recipient"' in response.get_data(as_text=True)


def test_it_hides_what_a_stranger_may_not_see(auth, webhook, sample, db):
    response = auth.client_for("sam").post(
        "/notifications/subscribe",
        data={
            "scope": "deployment",
            "target_id": str(sample["deployment_id"]),
            "channel_id": str(webhook),
            "events": ["deployment_failed"],
        },
    )
    assert response.status_code == 404
    assert db.execute("SELECT COUNT(*) FROM notification_subscriptions").fetchone()[0] == 0


def test_only_admins_manage_channels(auth, webhook):
    assert auth.client_for("oleg").get("/admin/notifications").status_code == 403
    assert auth.client_for("dana").post(f"/admin/notifications/{webhook}/test").status_code == 403


# --- events ----------------------------------------------------------------------------------------


def subscribe(auth, who, **data):
    response = auth.client_for(who).post("/notifications/subscribe", data=data)
    assert response.status_code == 302, response.get_data(as_text=True)


def test_it_tells_the_owner_a_build_failed(app, auth, db, users, sample, webhook, http_receiver):
    subscribe(
        auth, "dana", scope="owned", channel_id=str(webhook), events=["build_failed", "build_succeeded"]
    )
    subscribe(
        auth,
        "colin",
        scope="request",
        target_id=str(sample["request_id"]),
        channel_id=str(webhook),
        events=["build_succeeded"],
    )  # wants successes only
    build_id = factories.make_build(
        db, request_id=sample["request_id"], built_by=users["oleg"], status="building"
    )
    build_domain.finish_failure(db, build_id, "", "pip install failed", now=T0)
    worker = worker_for(app)
    assert worker.step(T0)["sent"] == 1
    body = json.loads(http_receiver.calls[0]["body"])
    assert body["event"] == "build_failed" and "pip install failed" in body["text"]
    assert body["build_id"] == build_id and body["request_id"] == sample["request_id"]
    assert worker.step(T0 + 1)["queued"] == 0  # the cursor moved: queued once


def test_each_recipient_reads_their_language(app, auth, db, users, sample, webhook, http_receiver):
    """dana chose English; colin chose nothing: the app's default, Russian."""
    db.execute("UPDATE users SET locale = 'en' WHERE id = ?", (users["dana"],))
    db.execute("UPDATE users SET locale = NULL WHERE id = ?", (users["colin"],))
    subscribe(auth, "dana", scope="owned", channel_id=str(webhook), events=["build_failed"])
    other = make_channel(app, db, users, "webhook", url=f"{http_receiver.url}/other", signing_secret=SIGNING)
    subscribe(
        auth,
        "colin",
        scope="request",
        target_id=str(sample["request_id"]),
        channel_id=str(other),
        events=["build_failed"],
    )
    build_id = factories.make_build(
        db, request_id=sample["request_id"], built_by=users["oleg"], status="building"
    )
    build_domain.finish_failure(db, build_id, "", "pip install failed", now=T0)
    assert build_worker(app, rng=random.Random(7)).step(T0)["sent"] == 2
    texts = sorted(json.loads(call["body"])["text"] for call in http_receiver.calls)
    assert texts[0].startswith(f"Build #{build_id} of ") and texts[0].endswith(" failed: pip install failed")
    assert texts[1].startswith(f"Сборка #{build_id} образа ") and texts[1].endswith(": pip install failed")
    # A test message speaks the language of the admin who sent it.
    assert auth.client_for("alice").post(f"/admin/notifications/{webhook}/test").status_code == 302
    build_worker(app, rng=random.Random(7)).step(T0 + 1)
    assert (
        json.loads(http_receiver.calls[-1]["body"])["text"]
        == "Тестовое сообщение от Samosval, отправил alice"
    )


def test_it_tells_of_a_failure_and_the_recovery(app, auth, db, users, sample, webhook, http_receiver):
    subscribe(
        auth,
        "colin",
        scope="deployment",
        target_id=str(sample["deployment_id"]),
        channel_id=str(webhook),
        events=["deployment_failed", "deployment_recovered"],
    )
    state, deployment_id = SimulationState(), sample["deployment_id"]
    db.execute(
        "UPDATE deployments SET status = 'deploying', status_since = NULL WHERE id = ?", (deployment_id,)
    )
    deployment_domain.mark_running(
        db, state, deployment_id, since=None, now=T0
    )  # a first start: not a recovery
    db.execute(
        "UPDATE deployments SET status = 'deploying', status_since = NULL WHERE id = ?", (deployment_id,)
    )
    deployment_domain.mark_failed(db, state, deployment_id, "image pull back-off", now=T0 + 1)
    db.execute(
        "UPDATE deployments SET status = 'deploying', status_since = NULL WHERE id = ?", (deployment_id,)
    )
    deployment_domain.mark_running(db, state, deployment_id, since=None, now=T0 + 2)
    worker_for(app).step(T0 + 3)
    events = [json.loads(call["body"])["event"] for call in http_receiver.calls]
    assert sorted(events) == ["deployment_failed", "deployment_recovered"]


def test_it_forgets_who_can_no_longer_see_the_request(app, auth, db, users, sample, webhook, http_receiver):
    subscribe(
        auth,
        "colin",
        scope="request",
        target_id=str(sample["request_id"]),
        channel_id=str(webhook),
        events=["build_failed"],
    )
    db.execute("DELETE FROM request_collaborators WHERE request_id = ?", (sample["request_id"],))
    db.execute("UPDATE image_requests SET collaborators = '' WHERE id = ?", (sample["request_id"],))
    build_id = factories.make_build(
        db, request_id=sample["request_id"], built_by=users["oleg"], status="building"
    )
    build_domain.finish_failure(db, build_id, "", "boom", now=T0)
    assert worker_for(app).step(T0)["queued"] == 0 and http_receiver.calls == []


def test_it_asks_for_approval_and_says_a_pinned_deployment_skipped_a_push(
    app, auth, db, users, sample, webhook, http_receiver
):
    subscribe(
        auth,
        "oleg",
        scope="deployment",
        target_id=str(sample["deployment_id"]),
        channel_id=str(webhook),
        events=["approval_needed", "pinned_skipped"],
    )
    db.execute("INSERT INTO protected_environments (environment, protected_at) VALUES ('dev', 'x')")
    auth.client_for("dana").post(
        f"/deployments/{sample['deployment_id']}/env",
        data={"row_count": "1", "rows-0-key": "A", "rows-0-value": "1"},
    )
    from samosval import audit

    audit.record(
        db,
        "commit_hook_received",
        target_type="delivery",
        target_id=1,
        now=T0,
        details={"sha": "c0ffee" * 6, "pinned": [sample["deployment_id"]]},
    )
    worker_for(app).step(T0)
    texts = {
        json.loads(call["body"])["event"]: json.loads(call["body"])["text"] for call in http_receiver.calls
    }
    assert set(texts) == {"approval_needed", "pinned_skipped"}
    assert "waits for approval" in texts["approval_needed"] and "c0ffee" in texts["pinned_skipped"]


def test_it_lists_and_removes_subscriptions(auth, webhook, db):
    subscribe(auth, "dana", scope="owned", channel_id=str(webhook), events=["build_failed"])
    page = auth.client_for("dana").get("/notifications").get_data(as_text=True)
    subscription_id = db.execute("SELECT id FROM notification_subscriptions").fetchone()[0]
    assert f'data-subscription-id="{subscription_id}"' in page
    # Someone else's subscription looks missing.
    assert (
        auth.client_for("sam")
        .post("/notifications/unsubscribe", data={"subscription_id": str(subscription_id)})
        .status_code
        == 404
    )
    assert (
        auth.client_for("dana")
        .post("/notifications/unsubscribe", data={"subscription_id": str(subscription_id)})
        .status_code
        == 302
    )
    assert db.execute("SELECT COUNT(*) FROM notification_subscriptions").fetchone()[0] == 0


def test_it_bounds_the_subscriptions_of_one_person(auth, webhook, db, users, monkeypatch):
    monkeypatch.setattr(notify, "MAX_SUBSCRIPTIONS_PER_USER", 2)
    for _ in range(2):
        subscribe(auth, "dana", scope="owned", channel_id=str(webhook), events=["build_failed"])
    response = auth.client_for("dana").post(
        "/notifications/subscribe",
        data={"scope": "owned", "channel_id": str(webhook), "events": ["build_failed"]},
    )
    assert response.status_code == 302  # a flash and back to the page
    count = "SELECT COUNT(*) FROM notification_subscriptions WHERE user_id = ?"
    assert db.execute(count, (users["dana"],)).fetchone()[0] == 2
    # Someone else still may.
    subscribe(auth, "sam", scope="owned", channel_id=str(webhook), events=["build_failed"])


def test_it_keeps_each_event_of_a_subscription_once(auth, webhook, db):
    events = ["deployment_failed", "build_failed"] * 500 + ["no_such_event"]
    subscribe(auth, "dana", scope="owned", channel_id=str(webhook), events=events)
    stored = db.execute("SELECT events FROM notification_subscriptions").fetchone()[0]
    assert stored == "build_failed,deployment_failed"


def test_the_worker_thread_sends_when_woken_and_stops(app, db, users, webhook, http_receiver):
    """The one test of the real thread: a queued message goes out without a step call."""
    worker = NotificationWorker(app.config["DATABASE"], app_keyring(app.config), timeout=2.0)
    worker.TICK_SECONDS = 30.0  # only the wake-up can make it send in time
    worker.start()
    try:
        time.sleep(0.2)  # let the first (empty) step pass
        notify.send_test(db, admin(users), notify.get_channel(db, webhook), {}, time.time())
        worker.wake()
        deadline = time.monotonic() + 10
        while not http_receiver.calls and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        worker.stop()
    assert len(http_receiver.calls) == 1 and not worker.is_alive()


def test_an_upgraded_database_does_not_notify_its_history(tmp_path):
    from samosval import migrations
    from samosval.db import connect

    path = tmp_path / "old.sqlite3"
    old = connect(str(path))
    old.executescript(migrations.SPEC_V1_SCHEMA)
    old.execute("INSERT INTO audit_log (action, details, created_at) VALUES ('build_finish', '{}', 'x')")
    old.execute("INSERT INTO audit_log (action, details, created_at) VALUES ('deployment_failed', '{}', 'x')")
    migrations.upgrade(old)
    assert old.execute("SELECT value FROM notification_state WHERE name = 'audit_cursor'").fetchone()[0] == 2
    assert notify.fan_out(old, T0) == 0
    old.close()


# --- /metrics ----------------------------------------------------------------------------------


def test_metrics_count_tries_and_the_outbox_without_secrets(app, client, db, users, webhook, http_receiver):
    from prometheus_client.parser import text_string_to_metric_families

    def scrape():
        response = client.get("/metrics")
        assert response.status_code == 200
        text = response.get_data(as_text=True)
        assert URL_TOKEN not in text and SIGNING not in text and http_receiver.url not in text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text)
            if f.name.startswith("samosval_notification")
            for s in f.samples
        }

    http_receiver.fail_first = 1
    channel, worker = notify.get_channel(db, webhook), worker_for(app)
    notify.send_test(db, admin(users), channel, {}, T0)
    assert scrape()[("samosval_notification_outbox", (("status", "pending"),))] == 1
    worker.step(T0)
    worker.step(messages(db)[0]["next_attempt_at"])  # failed once, then sent
    http_receiver.always_fail = True
    notify.send_test(db, admin(users), channel, {}, T0)
    now = T0
    for _ in range(notify.MAX_ATTEMPTS):
        worker.step(now)
        now = messages(db)[1]["next_attempt_at"] or now
    samples = scrape()
    assert (
        samples[("samosval_notification_attempts_total", (("channel_kind", "webhook"), ("outcome", "sent")))]
        == 1
    )
    assert (
        samples[
            ("samosval_notification_attempts_total", (("channel_kind", "webhook"), ("outcome", "failed")))
        ]
        == 9
    )
    assert samples[("samosval_notification_outbox", (("status", "pending"),))] == 0
    assert samples[("samosval_notification_outbox", (("status", "dead"),))] == 1
    # Every kind is there from the start, and no label value comes from outside fixed sets.
    kinds = {
        dict(labels).get("channel_kind") for (name, labels) in samples if name.endswith("attempts_total")
    }
    assert kinds == set(notify.KINDS)
    assert {dict(labels).get("outcome") for (name, labels) in samples if name.endswith("attempts_total")} == {
        "sent",
        "failed",
    }


def test_channel_secrets_never_reach_the_log_stream_a_page_or_a_backup(tmp_path, http_receiver):
    """JSON log lines (as production writes them) over creating channels, a refused
    form, a failing send and every page of a channel; then a backup's bytes."""
    from samosval.backup import backup_database
    from samosval.db import connect
    from tests.conftest import PASSWORD, add_personas
    from tests.test_ops import _app_with_log_stream, _reset_logging

    app, stream = _app_with_log_stream(tmp_path, json_logs=True)
    secrets = (URL_TOKEN, SIGNING, BOT_TOKEN)
    try:
        db = connect(app.config["DATABASE"])
        add_personas(db)
        client = app.test_client()
        client.post("/login", data={"username": "alice", "password": PASSWORD})
        assert (
            client.post(
                "/admin/notifications/new/webhook",
                data={
                    "name": "ci",
                    "url": f"{http_receiver.url}/hook?token={URL_TOKEN}",
                    "signing_secret": SIGNING,
                    "enabled": "1",
                },
            ).status_code
            == 302
        )
        refused = client.post(
            "/admin/notifications/new/telegram",
            data={"name": "tg", "bot_token": BOT_TOKEN, "chat_id": "not a chat", "enabled": "1"},
        )
        assert refused.status_code == 400
        channel_id = db.execute("SELECT id FROM notification_channels").fetchone()[0]
        assert client.post(f"/admin/notifications/{channel_id}/test").status_code == 302
        http_receiver.always_fail = True
        assert build_worker(app, rng=random.Random(7)).step(T0 + 10**6)["failed"] == 1
        pages = [refused.get_data(as_text=True)]
        for url in (
            "/admin/notifications",
            f"/admin/notifications/{channel_id}",
            f"/admin/notifications/{channel_id}/deliveries",
            "/notifications",
        ):
            for accept in ("text/html", "application/json"):
                response = client.get(url, headers={"Accept": accept})
                assert response.status_code == 200, url
                pages.append(response.get_data(as_text=True))
        backup = tmp_path / "backup.sqlite3"
        backup_database(app.config["DATABASE"], str(backup))
        db.close()
        text = stream.getvalue()
        assert "to channel ci failed, attempt 1: HTTP 500" in text  # the failing try was logged...
        for secret in secrets:  # ...and nothing secret was
            assert secret not in text
            assert all(secret not in page for page in pages)
            assert secret.encode() not in backup.read_bytes()
    finally:
        _reset_logging()
