"""What a commit does: continuous requests' running deployments restart, operator-
stopped ones are only marked, static requests are never touched; replays do
nothing; everything is in the deliveries table and the audit log."""

from __future__ import annotations

import json
import time

import pytest

from samosval.domain import tokens
from tests import factories

SHA = "deadbeef" * 5


@pytest.fixture
def token(app, db, users):
    return tokens.create_token(
        db, "ci billing", secret_key=app.secret_key, actor_id=users["alice"], now=1_800_000_000.0
    )[1]


@pytest.fixture
def hook(client, token):
    def call(repo="https://github.com/acme/billing.git", branch="main", commit=SHA, headers=None, **extra):
        body = {"repo_url": repo, "branch": branch, "commit": commit, **extra}
        return client.post(
            "/api/hooks/commit",
            json=body,
            csrf=False,
            headers={"Authorization": f"Bearer {token}", **(headers or {})},
        )

    return call


def state_of(app):
    return app.extensions["samosval"].state


def deployment(db, deployment_id):
    return db.execute("SELECT * FROM deployments WHERE id = ?", (deployment_id,)).fetchone()


def log_texts(app, deployment_id):
    return [line.text for line in state_of(app).runtime(deployment_id).logs.snapshot()]


def test_it_restarts_the_running_deployment_of_a_continuous_request(app, db, sample, hook):
    response = hook(repo="git@github.com:ACME/billing.git")
    assert response.status_code == 200
    data = response.json
    assert data["matched_requests"] == [sample["request_id"]]
    assert data["restarted_deployments"] == [sample["deployment_id"]]
    assert data["marked_deployments"] == [] and data["ignored"] is None
    assert data["outcome"] == "processed" and data["delivery_id"]
    row = deployment(db, sample["deployment_id"])
    assert row["status"] == "deploying" and row["last_commit"] == SHA and row["needs_restart"] == 0
    assert db.execute("SELECT last_commit FROM image_requests").fetchone()[0] == SHA
    assert any(
        f"commit {SHA[:12]} received from generic (ci billing)" in text
        for text in log_texts(app, sample["deployment_id"])
    )


def test_a_restarted_deployment_comes_back_to_running(app, db, sample, hook, engine, clock):
    engine.deploy_failure_rate = 0.0  # this test is about the restart, not the dice
    clock.now = time.time()  # the route stamps the restart with the real time
    hook()
    for _ in range(120):
        engine.step(clock.advance(1))
        if deployment(db, sample["deployment_id"])["status"] != "deploying":
            break
    row = deployment(db, sample["deployment_id"])
    assert row["status"] == "running" and row["last_commit"] == SHA


def test_it_only_marks_a_deployment_an_operator_stopped(app, db, users, sample, hook):
    image_id = sample["image_id"]
    stopped = factories.make_deployment(
        db, image_id=image_id, name="billing-stopped", status="stopped", stopped_by_operator=1
    )
    response = hook()
    assert response.json["restarted_deployments"] == [sample["deployment_id"]]
    assert response.json["marked_deployments"] == [stopped]
    row = deployment(db, stopped)
    assert row["status"] == "stopped" and row["needs_restart"] == 1 and row["last_commit"] is None
    assert any("stopped by an operator" in text for text in log_texts(app, stopped))
    assert response.json["reason"] is None and response.json["message"]


def test_it_never_touches_static_requests(db, users, hook):
    request_id = factories.make_request(db, owner_id=users["dana"], status="approved", update_mode="static")
    image_id = factories.make_image(db, request_id=request_id)
    deployment_id = factories.make_deployment(db, image_id=image_id)
    response = hook()
    assert response.status_code == 200
    assert response.json["matched_requests"] == [] and response.json["restarted_deployments"] == []
    assert response.json["outcome"] == "no_match"
    assert response.json["reason"].startswith("only static requests")
    assert deployment(db, deployment_id)["status"] == "running"
    assert db.execute("SELECT last_commit FROM image_requests").fetchone()[0] is None


def test_it_matches_on_the_exact_branch(db, sample, hook):
    response = hook(branch="Main")
    assert response.json["matched_requests"] == []
    assert response.json["reason"] == "no continuous request for this repository and branch"
    assert deployment(db, sample["deployment_id"])["status"] == "running"


def test_it_restarts_every_continuous_request_on_the_repository(db, users, sample, hook):
    other = factories.make_request(
        db, owner_id=users["sam"], status="approved", repo_url="https://github.com/Acme/Billing"
    )
    other_deployment = factories.make_deployment(
        db, image_id=factories.make_image(db, request_id=other), name="billing-sam"
    )
    response = hook()
    assert response.json["matched_requests"] == [sample["request_id"], other]
    assert response.json["restarted_deployments"] == [sample["deployment_id"], other_deployment]


def test_a_replayed_commit_does_nothing_the_second_time(db, sample, hook):
    first = hook()
    db.execute("UPDATE deployments SET status = 'running'")
    second = hook(repo="https://github.com/acme/billing")  # same repository, other URL form
    assert second.status_code == 200
    assert second.json["outcome"] == "duplicate"
    assert second.json["duplicate_of"] == first.json["delivery_id"]
    assert second.json["restarted_deployments"] == []
    assert deployment(db, sample["deployment_id"])["status"] == "running"
    assert hook(commit="1234567").json["outcome"] == "processed"  # a new commit is new


def test_a_replayed_delivery_id_does_nothing_the_second_time(db, sample, hook):
    hook(headers={"Idempotency-Key": "abc"}, commit="1111111")
    db.execute("UPDATE deployments SET status = 'running'")
    second = hook(headers={"Idempotency-Key": "abc"}, commit="2222222")
    assert second.json["outcome"] == "duplicate"
    assert deployment(db, sample["deployment_id"])["status"] == "running"


def test_a_delivery_refused_first_may_be_redelivered(client, db, sample, token):
    body = json.dumps({"repo_url": "https://github.com/acme/billing", "branch": "main", "commit": SHA})
    headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": "guid-9"}
    refused = client.post(
        "/api/hooks/commit",
        data=body,
        content_type="application/json",
        csrf=False,
        headers={**headers, "X-Hub-Signature-256": "sha256=" + "0" * 64},
    )
    assert refused.status_code == 401
    payload = json.dumps(
        {
            "ref": "refs/heads/main",
            "after": SHA,
            "repository": {"clone_url": "https://github.com/acme/billing.git"},
        }
    ).encode()
    again = client.post(
        "/api/hooks/commit",
        data=payload,
        content_type="application/json",
        csrf=False,
        headers={**headers, "X-Hub-Signature-256": tokens.github_signature(token, payload)},
    )
    assert again.json["outcome"] == "processed"


def test_ignored_events_answer_2xx_and_change_nothing(client, db, sample, token):
    headers = {"X-Samosval-Token": token, "X-GitHub-Event": "ping", "X-GitHub-Delivery": "p-1"}
    pong = client.post("/api/hooks/commit", json={"zen": "hi"}, csrf=False, headers=headers)
    assert pong.status_code == 200 and pong.json["outcome"] == "pong" and pong.json["message"] == "pong"
    skipped = client.post(
        "/api/hooks/commit",
        csrf=False,
        headers={"X-Samosval-Token": token},
        json={
            "repo_url": "https://github.com/acme/billing",
            "branch": "main",
            "commit": SHA,
            "message": "docs [skip ci]",
        },
    )
    assert skipped.status_code == 200 and skipped.json["ignored"] == "skipped by [skip ci]"
    assert deployment(db, sample["deployment_id"])["status"] == "running"
    outcomes = [r[0] for r in db.execute("SELECT outcome FROM webhook_deliveries ORDER BY id")]
    assert outcomes == ["pong", "ignored"]


def test_a_gitlab_push_restarts_with_the_gitlab_token_header(client, db, users, token):
    request_id = factories.make_request(
        db, owner_id=users["dana"], status="approved", repo_url="git@gitlab.example.com:acme/billing.git"
    )
    deployment_id = factories.make_deployment(db, image_id=factories.make_image(db, request_id=request_id))
    response = client.post(
        "/api/hooks/commit",
        csrf=False,
        json={
            "object_kind": "push",
            "ref": "refs/heads/main",
            "after": SHA,
            "checkout_sha": SHA,
            "project": {"git_http_url": "https://gitlab.example.com/acme/billing.git"},
            "commits": [],
        },
        headers={"X-Gitlab-Token": token, "X-Gitlab-Event": "Push Hook"},
    )
    assert response.status_code == 200 and response.json["restarted_deployments"] == [deployment_id]


def test_it_audits_the_commit_and_the_restarts(db, sample, hook):
    delivery_id = hook().json["delivery_id"]
    received = db.execute("SELECT * FROM audit_log WHERE action = 'commit_hook_received'").fetchone()
    details = json.loads(received["details"])
    assert details["repo"] == "https://github.com/acme/billing.git"
    assert (details["branch"], details["sha"], details["source"], details["token"]) == (
        "main",
        SHA,
        "generic",
        "ci billing",
    )
    assert (received["target_type"], received["target_id"]) == ("delivery", delivery_id)
    restarted = db.execute("SELECT * FROM audit_log WHERE action = 'deployments_restarted'").fetchone()
    assert json.loads(restarted["details"])["ids"] == [sample["deployment_id"]]


def test_the_token_never_reaches_audit_deliveries_or_logs(app, db, sample, hook, token):
    hook()
    hook(headers={"Authorization": f"Bearer {token}x"})
    stored = [
        json.dumps(dict(r), default=str)
        for t in ("webhook_deliveries", "audit_log", "webhook_tokens")
        for r in db.execute(f"SELECT * FROM {t}")
    ]
    assert not any(token in row for row in stored)
    assert not any(token in text for text in log_texts(app, sample["deployment_id"]))


def test_a_delivery_row_records_the_outcome_in_plain_words(db, sample, hook):
    hook()
    row = db.execute("SELECT * FROM webhook_deliveries").fetchone()
    assert (row["source"], row["branch"], row["commit_sha"], row["outcome"], row["http_status"]) == (
        "generic",
        "main",
        SHA,
        "processed",
        200,
    )
    assert json.loads(row["restarted_ids"]) == [sample["deployment_id"]]
    assert row["repo_key"] == "github.com/acme/billing"


@pytest.mark.parametrize(
    "body, content_type, missing",
    [
        (b"{not json", "application/json", None),
        (b'{"repo_url": "https://github.com/acme/billing"}', "application/json", ["branch", "commit"]),
        (b"commit=abc", "text/plain", None),
    ],
)
def test_bad_input_is_a_400_naming_what_is_wrong(client, db, token, body, content_type, missing):
    response = client.post(
        "/api/hooks/commit",
        data=body,
        content_type=content_type,
        csrf=False,
        headers={"X-Samosval-Token": token},
    )
    assert response.status_code == 400
    assert response.json["error"]["message"] and response.json["error"]["outcome"] == "invalid"
    if missing:
        assert response.json["error"]["missing"] == missing
        assert "branch, commit" in response.json["error"]["message"]
    assert db.execute("SELECT outcome FROM webhook_deliveries").fetchone()[0] == "invalid"


def test_an_oversize_body_is_a_413_json(client, db, sample, token):
    body = b'{"repo_url": "' + b"x" * (25 * 1024 * 1024) + b'"}'
    response = client.post(
        "/api/hooks/commit",
        data=body,
        content_type="application/json",
        csrf=False,
        headers={"X-Samosval-Token": token},
    )
    assert response.status_code == 413
    assert response.is_json and response.json["error"]
    row = db.execute("SELECT outcome, http_status FROM webhook_deliveries").fetchone()
    assert tuple(row) == ("refused", 413)


def test_get_is_not_allowed(client):
    response = client.get("/api/hooks/commit")
    assert response.status_code == 405 and response.is_json
