"""Hostile input (issue 21) against the environment-variable form, the subscription
form and the channel forms: never a 5xx, a refusal says why, and a refused form
writes nothing (configuration and notification tables counted too)."""

from __future__ import annotations

import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from werkzeug.datastructures import MultiDict

from tests.security.conftest import World, row_counts
from tests.security.test_hostile_input import CHARS, VALUE, assert_clear_refusal, form_of, fuzz

EXTRA_TABLES = (
    "config_versions",
    "config_entries",
    "notification_channels",
    "notification_subscriptions",
    "notification_outbox",
)


def counts(db) -> dict:
    found = row_counts(db)
    found.update({table: db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for table in EXTRA_TABLES})
    return found


@pytest.fixture(scope="module")
def hostile(world: World) -> World:
    world.db.execute("UPDATE users SET locale = 'en'")
    return world


ENV_FIELDS = (
    "row_count",
    "rows-0-key",
    "rows-0-value",
    "rows-0-secret",
    "rows-0-existing",
    "rows-0-delete",
    "rows-1-key",
    "rows-1-value",
    "rows-1-secret",
)
VALID_ENV = {
    "row_count": "2",
    "rows-0-key": "APP_MODE",
    "rows-0-value": "fast",
    "rows-1-key": "TOKEN",
    "rows-1-value": "hunter2",
    "rows-1-secret": "1",
}


@fuzz
@given(form=form_of(ENV_FIELDS, VALID_ENV))
def test_it_survives_any_env_form(hostile, form):
    world = hostile
    client = world.client("dana")
    before = counts(world.db)
    response = client.post(f"/deployments/{world.visible.deployment_id}/env", data=form)
    after = counts(world.db)
    event(f"HTTP {response.status_code}")
    assert response.status_code in (302, 400, 409, 413), response.status_code
    if response.status_code >= 400:
        assert_clear_refusal(response, "env form")
        assert after == before
    elif after != before:
        assert after["config_versions"] == before["config_versions"] + 1
        assert after["releases"] == before["releases"] + 1


@fuzz
@given(
    form=form_of(
        ("scope", "target_id", "channel_id", "events", "recipient", "next"),
        {"scope": "owned", "events": "build_failed", "recipient": "dana@example.com"},
    )
)
def test_it_survives_any_subscription_form(hostile, form):
    world = hostile
    channel = world.db.execute("SELECT id FROM notification_channels WHERE kind = 'email'").fetchone()
    if channel is None:
        from tests.test_notifications import make_channel

        make_channel(
            world.app, world.db, world.users, "email", host="127.0.0.1", port="25", from_addr="s@example.com"
        )
    client = world.client("sam")  # a first login writes an audit row: not counted
    before = counts(world.db)
    response = client.post("/notifications/subscribe", data=form)
    after = counts(world.db)
    event(f"HTTP {response.status_code}")
    assert response.status_code in (302, 400, 404, 413), response.status_code
    if response.status_code >= 400:
        assert_clear_refusal(response, "subscribe")
        assert after == before
    else:
        assert response.location.startswith("/"), response.location


@fuzz
@given(
    kind=st.sampled_from(["webhook", "slack", "telegram", "email"]),
    as_json=st.booleans(),
    form=form_of(
        (
            "name",
            "url",
            "signing_secret",
            "bot_token",
            "chat_id",
            "base_url",
            "host",
            "port",
            "security",
            "username",
            "password",
            "from_addr",
        ),
        {
            "name": "fuzz",
            "url": "https://example.com/hook",
            "signing_secret": "s3",
            "bot_token": "123456:ABCdefGHIjklMNOpqrSTUvwxYZ012345",
            "host": "smtp.example.com",
            "port": "587",
            "security": "starttls",
            "from_addr": "s@example.com",
        },
    ),
)
def test_it_survives_any_channel_form(hostile, kind, as_json, form):
    world = hostile
    headers = {"Accept": "application/json"} if as_json else {}
    client = world.client("root")
    before = counts(world.db)
    response = client.post(f"/admin/notifications/new/{kind}", data=form, headers=headers)
    after = counts(world.db)
    event(f"{kind} HTTP {response.status_code}")
    assert response.status_code in (302, 400, 413), response.status_code
    if response.status_code >= 400:
        assert_clear_refusal(response, "channel form")
        assert after == before
    else:
        assert after["notification_channels"] == before["notification_channels"] + 1


@fuzz
@given(value=st.one_of(VALUE, st.text(CHARS, max_size=30)))
def test_it_survives_any_unsubscribe_and_test_message(hostile, value):
    world = hostile
    response = world.client("sam").post(
        "/notifications/unsubscribe", data=MultiDict([("subscription_id", value)])
    )
    assert response.status_code in (302, 400, 404, 413), response.status_code
    channel = world.db.execute("SELECT id FROM notification_channels ORDER BY id LIMIT 1").fetchone()
    if channel is not None:
        response = world.client("root").post(
            f"/admin/notifications/{channel[0]}/test", data={"recipient": value}
        )
        assert response.status_code in (302, 400, 413), response.status_code
