"""/metrics as Prometheus 3 reads it: one valid media type, counters named
``_total``, no ``_created`` duplicates, and label values from fixed sets so no
caller can grow the exposition."""

from __future__ import annotations

import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from samosval.domain import tokens

TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"  # RFC 9110 token, what Go's mime.ParseMediaType accepts


def parse_media_type(value: str) -> tuple[str, dict]:
    """A strict parser: ``type/subtype`` then ``; name=value`` pairs, each name once
    (Go's mime.ParseMediaType rejects duplicates: "mime: duplicate parameter name")."""
    parts = [p.strip() for p in value.split(";")]
    assert re.fullmatch(f"{TOKEN}/{TOKEN}", parts[0]), value
    params: dict[str, str] = {}
    for part in parts[1:]:
        name, _, val = part.partition("=")
        assert re.fullmatch(TOKEN, name) and re.fullmatch(TOKEN, val), value
        assert name.lower() not in params, f"duplicate parameter {name!r} in {value!r}"
        params[name.lower()] = val
    return parts[0], params


def families(client) -> dict:
    response = client.get("/metrics")
    assert response.status_code == 200
    return {f.name: f for f in text_string_to_metric_families(response.get_data(as_text=True))}


def test_the_content_type_is_one_media_type_with_each_parameter_once(client):
    value = client.get("/metrics").headers["Content-Type"]
    mimetype, params = parse_media_type(value)
    assert mimetype == "text/plain"
    assert params == {"version": "1.0.0", "charset": "utf-8"}


def test_the_strict_parser_refuses_what_prometheus_3_refused():
    with pytest.raises(AssertionError):
        parse_media_type("text/plain; version=1.0.0; charset=utf-8; charset=utf-8")


def test_webhook_calls_and_login_failures_are_counters(app, client, db, users):
    client.post("/login", data={"username": "dana", "password": "wrong-password"})
    client.post("/api/hooks/commit", json={"repo_url": "x"}, csrf=False)
    found = families(client)
    assert found["samosval_webhook_calls"].type == "counter"
    assert found["samosval_login_failures"].type == "counter"
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in found.values() for s in f.samples}
    assert samples[("samosval_webhook_calls_total", (("outcome", "refused"),))] == 1
    assert samples[("samosval_login_failures_total", ())] == 1


def test_there_are_no_created_series(client):
    client.get("/login")
    text = client.get("/metrics").get_data(as_text=True)
    assert "_created" not in text


def test_junk_methods_add_no_series(client):
    client.get("/login")
    before = families(client)["samosval_http_requests"]
    for i in range(50):
        client.open("/login", method=f"JUNK{i}")
        client.open(f"/no-such-page-{i}", method=f"X{i}")
    after = families(client)["samosval_http_requests"]
    methods = {s.labels["method"] for s in after.samples}
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}
    routes = {s.labels["route"] for s in after.samples}
    assert not any("no-such-page" in r for r in routes)
    assert all(re.fullmatch(r"[1-5]\d\d|other", s.labels["status"]) for s in after.samples)
    # 100 junk requests: at most a few new series (method "other" on each route seen).
    assert len(after.samples) - len(before.samples) <= 6


def test_webhook_outcomes_are_a_fixed_set(app, client, db, users):
    token = tokens.create_token(
        db, "ci", secret_key=app.secret_key, actor_id=users["alice"], now=1_800_000_000.0
    )[1]
    client.post(
        "/api/hooks/commit",
        data=b"junk",
        content_type="application/json",
        csrf=False,
        headers={"X-Samosval-Token": token},
    )
    outcomes = {s.labels["outcome"] for s in families(client)["samosval_webhook_calls"].samples}
    assert outcomes == {"processed", "no_match", "duplicate", "ignored", "pong", "refused", "invalid"}


def test_status_series_are_the_same_on_every_scrape(client, sample, db):
    """Every known status is there (0 when no row has it); anything else is "other"."""
    found = families(client)
    deployments = {s.labels["status"]: s.value for s in found["samosval_deployments"].samples}
    assert deployments == {"deploying": 0, "running": 1, "stopped": 0, "failed": 0}
    db.execute("UPDATE deployments SET status = 'weird'")
    deployments = {s.labels["status"]: s.value for s in families(client)["samosval_deployments"].samples}
    assert deployments["other"] == 1 and "weird" not in deployments
    builds = {s.labels["status"] for s in found["samosval_builds"].samples}
    assert builds == {"queued", "building", "success", "failed", "cancelled"}
