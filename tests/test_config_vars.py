"""Configuration of deployments (issue 21): environment variables and secrets.

A secret is encrypted at rest and never comes back: not in pages, JSON, logs, the
audit log, /metrics, the SQLite file or a backup. A change is a new release; in a
protected environment it waits for approval."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from samosval.backup import backup_database
from samosval.crypto import SealError, app_keyring, keyring
from samosval.db import connect, dialect
from tests import factories

SECRET = "s3cr3t-Value-" + "Zq9" * 5
T0 = 1_800_000_000.0


def env_url(deployment_id):
    return f"/deployments/{deployment_id}/env"


def form(*rows, **extra):
    """rows: (key, value, secret) or {"existing": key, "value": ..., "delete": ...}."""
    data = {"row_count": str(len(rows))}
    for index, row in enumerate(rows):
        prefix = f"rows-{index}-"
        if isinstance(row, dict):
            for name, value in row.items():
                data[prefix + name] = value
            continue
        key, value, secret = row
        data[prefix + "key"], data[prefix + "value"] = key, value
        if secret:
            data[prefix + "secret"] = "1"
    data.update(extra)
    return data


@pytest.fixture
def saved(auth, sample):
    """dana (the owner) saved DATABASE_HOST in clear and API_TOKEN as a secret."""
    response = auth.client_for("dana").post(
        env_url(sample["deployment_id"]),
        data=form(("DATABASE_HOST", "db.internal", False), ("API_TOKEN", SECRET, True)),
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    return sample


def test_it_saves_a_new_configuration_as_a_release(saved, db):
    release = db.execute(
        "SELECT * FROM releases WHERE deployment_id = ? ORDER BY number DESC LIMIT 1",
        (saved["deployment_id"],),
    ).fetchone()
    assert release["cause"] == "config" and release["config_version"] == 1
    deployment = db.execute(
        "SELECT status, current_release_id FROM deployments WHERE id = ?", (saved["deployment_id"],)
    ).fetchone()
    assert deployment["status"] == "deploying" and deployment["current_release_id"] == release["id"]


def test_it_serves_plain_values_and_masks_secrets_as_json(auth, saved):
    body = auth.client_for("colin").get(f"/api/deployments/{saved['deployment_id']}/env").get_json()
    assert body["config_version"] == 1
    assert body["variables"] == [
        {"key": "DATABASE_HOST", "secret": False, "value": "db.internal"},
        {"key": "API_TOKEN", "secret": True, "value": None},
    ]


def test_it_stores_the_secret_only_encrypted(app, saved, db):
    row = db.execute("SELECT value, sealed_value FROM config_entries WHERE key = 'API_TOKEN'").fetchone()
    assert row["value"] is None and SECRET not in row["sealed_value"]
    assert app_keyring(app.config).open(row["sealed_value"]) == SECRET
    if dialect(db) == "postgresql":
        # Every row of every table, as text (the server's files are not ours to read).
        tables = [r[0] for r in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        assert "config_entries" in tables
        for table in tables:
            for (text,) in db.execute(f'SELECT t::text FROM "{table}" t'):
                assert SECRET not in text, table
        return
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for path in Path(app.config["DATABASE"]).parent.glob("samosval.sqlite3*"):
        assert SECRET.encode() not in path.read_bytes(), path


def test_it_never_shows_the_secret_in_a_page_or_json(engine, clock, auth, saved):
    engine.step(clock.advance(0.1))
    deployment_id = saved["deployment_id"]
    urls = [
        f"/deployments/{deployment_id}",
        env_url(deployment_id),
        f"/api/deployments/{deployment_id}/env",
        f"/deployments/{deployment_id}/logs.txt",
        f"/api/deployments/{deployment_id}/releases",
        "/admin/audit",
        "/admin/audit.csv",
        "/metrics",
        "/dashboard",
        "/deployments",
    ]
    for who in ("dana", "alice"):
        for url in urls:
            response = auth.client_for(who).get(url)
            assert response.status_code in (200, 403), (who, url, response.status_code, response.location)
            assert SECRET not in response.get_data(as_text=True), (who, url)
    page = auth.client_for("dana").get(env_url(deployment_id)).get_data(as_text=True)
    assert "data-secret-row" in page and "***" in page


def test_it_audits_keys_and_who_never_values(saved, db, users):
    row = db.execute("SELECT user_id, details FROM audit_log WHERE action = 'config_change'").fetchone()
    details = json.loads(row["details"])
    assert row["user_id"] == users["dana"]
    assert details["added"] == ["DATABASE_HOST", "API_TOKEN"] and details["secret_keys"] == ["API_TOKEN"]
    assert SECRET not in row["details"] and "db.internal" not in row["details"]


def test_it_prints_secrets_masked_at_start(engine, clock, saved, app):
    engine.step(clock.advance(0.1))
    texts = [
        line.text for line in app.extensions["samosval"].state.runtime(saved["deployment_id"]).logs.snapshot()
    ]
    assert "env: API_TOKEN=***" in texts and "env: DATABASE_HOST=db.internal" in texts
    assert not any(SECRET in text for text in texts)


def test_it_keeps_a_secret_left_empty_and_replaces_or_deletes_it(auth, saved, db, app):
    client, deployment_id = auth.client_for("dana"), saved["deployment_id"]
    # Keep: nothing changed, no new version.
    response = client.post(
        env_url(deployment_id),
        data=form(("DATABASE_HOST", "db.internal", False), {"existing": "API_TOKEN", "value": ""}),
    )
    assert response.status_code == 302
    assert db.execute("SELECT COUNT(*) FROM config_versions").fetchone()[0] == 1
    # Replace.
    client.post(
        env_url(deployment_id),
        data=form(
            ("DATABASE_HOST", "db.internal", False), {"existing": "API_TOKEN", "value": "new-secret-value"}
        ),
    )
    sealed = db.execute(
        "SELECT e.sealed_value FROM config_entries e JOIN config_versions v ON v.id = e.version_id "
        "WHERE v.number = 2 AND e.key = 'API_TOKEN'"
    ).fetchone()[0]
    assert app_keyring(app.config).open(sealed) == "new-secret-value"
    # Delete.
    client.post(
        env_url(deployment_id),
        data=form(("DATABASE_HOST", "db.internal", False), {"existing": "API_TOKEN", "delete": "1"}),
    )
    body = client.get(f"/api/deployments/{deployment_id}/env").get_json()
    assert body["config_version"] == 3 and [v["key"] for v in body["variables"]] == ["DATABASE_HOST"]


@pytest.mark.parametrize(
    "rows, field, message",
    [
        ([("1BAD", "x", False)], "rows-0-key", "Not a valid environment variable name"),
        ([("WITH SPACE", "x", False)], "rows-0-key", "Not a valid environment variable name"),
        ([("A", "1", False), ("A", "2", False)], "rows-1-key", "This name is used twice."),
        ([("BIG", "x" * (32 * 1024 + 1), False)], "rows-0-value", "A value is at most 32 KiB."),
        ([("", "orphan", False)], "rows-0-key", "Give the variable a name."),
        ([("EMPTY_SECRET", "", True)], "rows-0-value", "Type the secret's value."),
    ],
)
def test_it_refuses_bad_input_with_clear_messages(auth, sample, db, rows, field, message):
    client = auth.client_for("dana")
    response = client.post(
        env_url(sample["deployment_id"]), data=form(*rows), headers={"Accept-Language": "en"}
    )
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert f'data-error-for="{field}"' in page
    assert db.execute("SELECT COUNT(*) FROM config_versions").fetchone()[0] == 0


def test_it_accepts_exactly_32_kib(auth, sample):
    response = auth.client_for("dana").post(
        env_url(sample["deployment_id"]), data=form(("BIG", "x" * 32 * 1024, False))
    )
    assert response.status_code == 302


def test_it_does_not_echo_a_typed_secret_on_an_error(auth, sample):
    response = auth.client_for("dana").post(
        env_url(sample["deployment_id"]), data=form(("TOKEN", SECRET, True), ("9BAD", "x", False))
    )
    assert response.status_code == 400 and SECRET not in response.get_data(as_text=True)


def test_it_refuses_who_may_not_change_it(auth, sample, db):
    deployment_id = sample["deployment_id"]
    assert (
        auth.client_for("colin").post(env_url(deployment_id), data=form(("A", "1", False))).status_code == 403
    )
    assert (
        auth.client_for("sam").post(env_url(deployment_id), data=form(("A", "1", False))).status_code == 404
    )
    assert auth.client_for("sam").get(f"/api/deployments/{deployment_id}/env").status_code == 404
    assert db.execute("SELECT COUNT(*) FROM config_versions").fetchone()[0] == 0


def test_it_waits_for_approval_in_a_protected_environment(auth, sample, db, users):
    db.execute(
        "INSERT INTO protected_environments (environment, protected_at, protected_by) "
        "VALUES ('dev', '2026-01-01T00:00:00Z', ?)",
        (users["alice"],),
    )
    deployment_id = sample["deployment_id"]
    auth.client_for("dana").post(env_url(deployment_id), data=form(("FEATURE", "on", False)))
    release = db.execute(
        "SELECT status, config_version FROM releases WHERE deployment_id = ?", (deployment_id,)
    ).fetchone()
    assert release["status"] == "pending_approval" and release["config_version"] == 1
    body = auth.client_for("dana").get(f"/api/deployments/{deployment_id}/env").get_json()
    assert body["variables"] == [] and body["pending_config_version"] == 1
    assert (
        db.execute("SELECT status FROM deployments WHERE id = ?", (deployment_id,)).fetchone()[0] == "running"
    )


def test_it_never_logs_the_secret(tmp_path):
    """The real log stream (JSON lines, as production writes them) over a save, a
    failed save, the page and the JSON."""
    from tests.conftest import PASSWORD, add_personas
    from tests.test_ops import _app_with_log_stream, _reset_logging

    app, stream = _app_with_log_stream(tmp_path, json_logs=True)
    try:
        db = connect(app.config["DATABASE"])
        users = add_personas(db)
        request_id = factories.make_request(db, owner_id=users["dana"], status="approved")
        deployment_id = factories.make_deployment(
            db, image_id=factories.make_image(db, request_id=request_id)
        )
        db.close()
        client = app.test_client()
        client.post("/login", data={"username": "dana", "password": PASSWORD})
        assert client.post(env_url(deployment_id), data=form(("API_TOKEN", SECRET, True))).status_code == 302
        assert (
            client.post(
                env_url(deployment_id), data=form(("OTHER", SECRET, True), ("1X", "y", False))
            ).status_code
            == 400
        )
        client.get(env_url(deployment_id))
        client.get(f"/api/deployments/{deployment_id}/env")
        text = stream.getvalue()
        assert "/deployments/<int:deployment_id>/env" in text  # the requests were logged...
        assert SECRET not in text  # ...without the value
    finally:
        _reset_logging()


@pytest.mark.sqlite_only
def test_it_keeps_secrets_encrypted_in_a_backup(app, saved, tmp_path):
    target = tmp_path / "backup.sqlite3"
    backup_database(app.config["DATABASE"], str(target))
    assert SECRET.encode() not in target.read_bytes()
    copy = connect(str(target))
    try:
        sealed = copy.execute("SELECT sealed_value FROM config_entries WHERE key = 'API_TOKEN'").fetchone()[0]
    finally:
        copy.close()
    assert app_keyring(app.config).open(sealed) == SECRET


def test_it_rotates_the_encryption_key(app, saved, db, runner, users):
    from tests.test_notifications import make_channel

    channel_id = make_channel(
        app, db, users, "slack", url="https://hooks.example.com/services/T/B/secretpath"
    )
    old = db.execute("SELECT sealed_value FROM config_entries WHERE key = 'API_TOKEN'").fetchone()[0]
    app.config["ENCRYPTION_KEY"] = "the-new-key"
    result = runner.invoke(args=["rotate-encryption-key"])  # the old key (derived from SECRET_KEY) opens
    assert result.exit_code == 0, result.output
    new = db.execute("SELECT sealed_value FROM config_entries WHERE key = 'API_TOKEN'").fetchone()[0]
    assert new != old
    assert (
        keyring("another-secret-key", "the-new-key").open(new) == SECRET
    )  # the secret key no longer matters
    with pytest.raises(SealError):
        keyring("test-secret-key").open(new)
    # A second rotation to a third key needs the second named as old.
    app.config["ENCRYPTION_KEY"] = "a-third-key"
    assert runner.invoke(args=["rotate-encryption-key"]).exit_code != 0
    assert db.execute("SELECT sealed_value FROM config_entries WHERE key = 'API_TOKEN'").fetchone()[0] == new
    result = runner.invoke(args=["rotate-encryption-key", "--old-key", "the-new-key"])
    assert result.exit_code == 0, result.output
    final = db.execute("SELECT sealed_value FROM config_entries WHERE key = 'API_TOKEN'").fetchone()[0]
    assert keyring("x", "a-third-key").open(final) == SECRET
    sealed_channel = db.execute(
        "SELECT sealed_settings FROM notification_channels WHERE id = ?", (channel_id,)
    ).fetchone()[0]
    assert "secretpath" in keyring("x", "a-third-key").open(sealed_channel)
    assert (
        db.execute("SELECT details FROM audit_log WHERE action = 'encryption_key_rotate'").fetchone()
        is not None
    )


def test_a_rollback_brings_back_the_old_configuration(engine, clock, auth, saved, db):
    from samosval.domain import deployments as deployment_domain

    deployment_id = saved["deployment_id"]
    engine.deploy_failure_rate = 0.0
    engine.step(clock.advance(0.1))
    engine.step(clock.advance(10))
    assert deployment_domain.get_deployment(db, deployment_id)["status"] == "running"
    auth.client_for("dana").post(env_url(deployment_id), data=form(("ONLY", "two", False)))
    engine.step(clock.advance(0.1))
    engine.step(clock.advance(10))
    numbers = [
        r[0]
        for r in db.execute(
            "SELECT number FROM releases WHERE deployment_id = ? AND config_version = 1", (deployment_id,)
        )
    ]
    response = auth.client_for("dana").post(
        f"/deployments/{deployment_id}/rollback", data={"release": str(numbers[-1])}
    )
    assert response.status_code in (302, 303), response.get_data(as_text=True)
    body = auth.client_for("dana").get(f"/api/deployments/{deployment_id}/env").get_json()
    assert body["config_version"] == 1 and [v["key"] for v in body["variables"]] == [
        "DATABASE_HOST",
        "API_TOKEN",
    ]


def test_no_page_or_json_of_the_app_shows_the_secret(engine, clock, app, auth, saved, db):
    """Every GET route an admin may open, with this deployment's ids (the live stream's
    lines are the log download's)."""
    engine.step(clock.advance(0.1))
    release_id = db.execute("SELECT MAX(id) FROM releases").fetchone()[0]
    ids = {
        "deployment_id": saved["deployment_id"],
        "request_id": saved["request_id"],
        "image_id": saved["image_id"],
        "release_id": release_id,
        "user_id": 1,
    }
    client, seen = auth.client_for("alice"), 0
    for rule in app.url_map.iter_rules():
        if (
            "GET" not in rule.methods
            or rule.endpoint in ("static", "deployments.log_stream", "auth.logout")
            or not set(rule.arguments) <= set(ids)
        ):
            continue
        url = rule.build({name: ids[name] for name in rule.arguments})[1]
        for accept in ("text/html", "application/json"):
            response = client.get(url, headers={"Accept": accept})
            assert SECRET not in response.get_data(as_text=True), url
            seen += 1
    assert seen > 40


def test_a_release_page_names_the_configuration_keys_that_changed_never_values(auth, saved, db):
    client, deployment_id = auth.client_for("dana"), saved["deployment_id"]
    replaced = "an0ther-Secret-" + "Xy7" * 5
    assert (
        client.post(
            env_url(deployment_id),
            data=form(
                ("DATABASE_HOST", "db2.internal", False),
                {"existing": "API_TOKEN", "value": replaced},
                ("LOG_LEVEL", "debug", False),
            ),
        ).status_code
        == 302
    )
    assert (
        client.post(
            env_url(deployment_id),
            data=form(("DATABASE_HOST", "db2.internal", False), ("LOG_LEVEL", "debug", False)),
        ).status_code
        == 302
    )

    def page(config_version):
        release_id = db.execute(
            "SELECT id FROM releases WHERE deployment_id = ? AND config_version = ?",
            (deployment_id, config_version),
        ).fetchone()[0]
        response = client.get(f"/releases/{release_id}")
        assert response.status_code == 200
        return response.get_data(as_text=True)

    def keys(html, kind):
        found = re.search(rf"<li data-config-{kind}>(.*?)</li>", html, re.S)
        return re.findall(r'data-key="([A-Z_]+)"', found.group(1)) if found else []

    second = page(2)
    assert keys(second, "added") == ["LOG_LEVEL"]
    assert keys(second, "changed") == ["DATABASE_HOST", "API_TOKEN"]
    assert keys(second, "removed") == []
    third = page(3)
    assert keys(third, "removed") == ["API_TOKEN"] and keys(third, "added") == keys(third, "changed") == []
    for html in (second, third):
        assert SECRET not in html and replaced not in html and "db2.internal" not in html
