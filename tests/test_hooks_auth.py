"""Who may call the commit hook: tokens (three headers), GitHub signatures, and
logged-in sessions with the CSRF header. Every refusal is a 401/403 JSON answer,
a delivery row and an audit entry, none of which contains the token."""

from __future__ import annotations

import json

import pytest

from samosval.domain import tokens

SHA = "c0ffee" + "0" * 34


def body_for(repo="https://github.com/acme/billing.git", branch="main", commit=SHA) -> bytes:
    return json.dumps({"repo_url": repo, "branch": branch, "commit": commit}).encode()


@pytest.fixture
def token(app, db, users):
    _id, plain = tokens.create_token(
        db, "ci billing", secret_key=app.secret_key, actor_id=users["alice"], now=1_800_000_000.0
    )
    return plain


def post(client, body=None, headers=None, **kwargs):
    return client.post(
        "/api/hooks/commit",
        data=body if body is not None else body_for(),
        headers=headers or {},
        content_type=kwargs.pop("content_type", "application/json"),
        csrf=kwargs.pop("csrf", False),
        **kwargs,
    )


def deliveries(db):
    return [dict(r) for r in db.execute("SELECT * FROM webhook_deliveries ORDER BY id")]


def everything_stored(db) -> str:
    rows = []
    for table in ("webhook_deliveries", "audit_log"):
        rows += [json.dumps(dict(r), default=str) for r in db.execute(f"SELECT * FROM {table}")]
    return "\n".join(rows)


@pytest.mark.parametrize("header", ["Authorization", "X-Samosval-Token", "X-Gitlab-Token"])
def test_it_accepts_a_token_in_each_header(client, db, sample, token, header):
    value = f"Bearer {token}" if header == "Authorization" else token
    response = post(client, headers={header: value})
    assert response.status_code == 200, response.json
    assert response.json["restarted_deployments"] == [sample["deployment_id"]]
    row = db.execute("SELECT last_used_at FROM webhook_tokens").fetchone()
    assert row["last_used_at"] is not None
    assert deliveries(db)[-1]["token_id"] is not None
    assert token not in everything_stored(db)


@pytest.mark.parametrize(
    "headers, reason",
    [
        ({}, "no credentials: send a token, a GitHub signature or a logged-in session"),
        ({"Authorization": "Bearer smsv_wrong"}, "unknown token"),
        ({"X-Samosval-Token": "x" * 5000}, "unknown token"),
        (
            {"Authorization": "Basic dXNlcjpwYXNz"},
            "no credentials: send a token, a GitHub signature or a logged-in session",
        ),
    ],
)
def test_it_refuses_calls_without_a_valid_token(client, db, sample, token, headers, reason):
    response = post(client, headers=headers)
    assert response.status_code == 401
    assert response.json["error"]["reason"] == reason and response.json["error"]["message"]
    (row,) = deliveries(db)
    assert (row["outcome"], row["reason"], row["http_status"]) == ("refused", reason, 401)
    audit = db.execute("SELECT * FROM audit_log WHERE action = 'commit_hook_refused'").fetchone()
    assert json.loads(audit["details"])["reason"] == reason
    assert db.execute("SELECT status FROM deployments").fetchone()["status"] == "running"
    assert "smsv_wrong" not in everything_stored(db)


def test_it_refuses_a_revoked_token(app, client, db, sample, users, token):
    token_id = db.execute("SELECT id FROM webhook_tokens").fetchone()["id"]
    tokens.revoke_token(db, token_id, actor_id=users["alice"], now=1_800_000_000.0)
    response = post(client, headers={"X-Samosval-Token": token})
    assert response.status_code == 401 and response.json["error"]["reason"] == "token revoked"
    assert deliveries(db)[-1]["token_id"] == token_id
    assert token not in everything_stored(db)


def test_it_accepts_a_github_signature_made_with_a_token(client, db, sample, token):
    body = body_for()
    response = post(client, body, headers={"X-Hub-Signature-256": tokens.github_signature(token, body)})
    assert response.status_code == 200 and response.json["restarted_deployments"] == [sample["deployment_id"]]


def test_it_verifies_the_signature_over_the_raw_form_encoded_body(client, db, sample, token):
    from urllib.parse import urlencode

    payload = {
        "ref": "refs/heads/main",
        "after": SHA,
        "repository": {"clone_url": "https://github.com/acme/billing.git"},
        "head_commit": {"message": "x"},
    }
    body = urlencode({"payload": json.dumps(payload)}).encode()
    response = post(
        client,
        body,
        content_type="application/x-www-form-urlencoded",
        headers={
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": "d-1",
            "X-Hub-Signature-256": tokens.github_signature(token, body),
        },
    )
    assert response.status_code == 200, response.json
    assert response.json["restarted_deployments"] == [sample["deployment_id"]]
    assert deliveries(db)[-1]["source"] == "github"


def test_it_refuses_a_bad_signature(client, db, sample, token):
    body = body_for()
    bad = tokens.github_signature(token, body + b"tampered")
    response = post(client, body, headers={"X-Hub-Signature-256": bad, "X-GitHub-Event": "push"})
    assert response.status_code == 401 and response.json["error"]["reason"] == "signature mismatch"
    assert deliveries(db)[-1]["source"] == "github"


def test_it_refuses_a_signature_made_with_a_revoked_token(client, db, sample, users, token):
    tokens.revoke_token(
        db,
        db.execute("SELECT id FROM webhook_tokens").fetchone()["id"],
        actor_id=users["alice"],
        now=1_800_000_000.0,
    )
    body = body_for()
    response = post(client, body, headers={"X-Hub-Signature-256": tokens.github_signature(token, body)})
    assert response.status_code == 401 and response.json["error"]["reason"] == "token revoked"


def test_signatures_stop_verifying_when_the_secret_key_changes(app, client, db, sample, token):
    app.secret_key = "rotated"
    app.config["SECRET_KEY"] = "rotated"
    body = body_for()
    response = post(client, body, headers={"X-Hub-Signature-256": tokens.github_signature(token, body)})
    assert response.status_code == 401
    # The bearer form keeps working: it uses the hash, not the sealed secret.
    assert post(client, headers={"X-Samosval-Token": token}).status_code == 200


@pytest.mark.parametrize("username", ["oleg", "alice", "dana"])
def test_a_session_with_the_csrf_header_may_use_the_button(auth, db, sample, username):
    response = post(auth.client_for(username), csrf=True)
    assert response.status_code == 200, response.json
    assert response.json["restarted_deployments"] == [sample["deployment_id"]]
    row = deliveries(db)[-1]
    assert (row["source"], row["user_id"], row["token_id"]) == (
        "ui",
        db.execute("SELECT id FROM users WHERE username = ?", (username,)).fetchone()[0],
        None,
    )


@pytest.mark.parametrize("username", ["carl", "colin"])
def test_the_button_obeys_the_restart_rule(auth, db, sample, username):
    """The request's creator and a collaborator see it but may not restart its
    deployments (their restart button gets 403): the commit button neither."""
    deployment = sample["deployment_id"]
    response = auth.client_for(username).post(f"/deployments/{deployment}/restart")
    assert response.status_code == 403
    response = post(auth.client_for(username), csrf=True)
    assert response.status_code == 403, response.json
    assert response.json["error"]["reason"] == "not allowed to simulate commits for this repository"
    row = db.execute("SELECT status FROM deployments WHERE id = ?", (deployment,)).fetchone()
    assert row["status"] == "running"


def test_the_owners_button_leaves_what_an_operator_stopped_alone(auth, db, sample):
    """The owner may not restart what an operator stopped: the button does not even
    mark it."""
    db.execute(
        "UPDATE deployments SET status = 'stopped', stopped_by_operator = 1 WHERE id = ?",
        (sample["deployment_id"],),
    )
    response = post(auth.client_for("dana"), csrf=True)
    assert response.status_code == 200, response.json
    assert response.json["restarted_deployments"] == [] and response.json["marked_deployments"] == []
    assert db.execute("SELECT needs_restart FROM deployments").fetchone()[0] == 0


def test_a_session_without_the_csrf_header_is_refused(auth, db, sample):
    response = post(auth.client_for("oleg"), csrf=False)
    assert response.status_code == 401
    assert response.json["error"]["reason"] == "missing or invalid CSRF token"
    assert db.execute("SELECT status FROM deployments").fetchone()["status"] == "running"


def test_a_session_with_a_forged_csrf_header_is_refused(auth, db, sample):
    response = post(auth.client_for("oleg"), headers={"X-CSRFToken": "forged"})
    assert response.status_code == 401


@pytest.mark.parametrize("repo", ["https://github.com/acme/billing.git", "https://github.com/acme/nothing"])
def test_a_developer_who_cannot_see_the_request_is_refused(auth, db, sample, repo):
    response = post(auth.client_for("sam"), body_for(repo=repo), csrf=True)
    assert response.status_code == 403
    assert response.json["error"]["reason"] == "not allowed to simulate commits for this repository"
    row = deliveries(db)[-1]
    assert (row["outcome"], row["http_status"]) == ("refused", 403)
    assert db.execute("SELECT status FROM deployments").fetchone()["status"] == "running"


def test_an_operator_simulating_an_unknown_repository_gets_zero_matches(auth, db, sample):
    response = post(auth.client_for("oleg"), body_for(repo="https://github.com/acme/nothing"), csrf=True)
    assert response.status_code == 200
    assert response.json["matched_requests"] == [] and response.json["outcome"] == "no_match"


def test_a_blocked_users_session_counts_for_nothing(app, auth, db, sample):
    client = auth.client_for("dana")
    db.execute("UPDATE users SET is_active = 0 WHERE username = 'dana'")
    response = post(client, csrf=True)
    assert response.status_code == 401


def test_it_exempts_only_the_hook_from_the_form_csrf_check(auth, sample):
    # A session POST without the header elsewhere still fails the site-wide CSRF check.
    response = auth.client_for("alice").post("/admin/tokens/create", data={"name": "x"}, csrf=False)
    assert response.status_code == 400


def test_a_valid_token_with_a_bad_payload_still_counts_as_used(client, db, token):
    response = post(client, b"{}", headers={"X-Samosval-Token": token})
    assert response.status_code == 400
    assert db.execute("SELECT last_used_at FROM webhook_tokens").fetchone()[0] is not None


def test_it_rate_limits_webhook_calls_per_address(app, client, db):
    app.config["HOOK_RATE_LIMIT"] = "3 per minute"
    body = {"repo_url": "https://github.com/acme/billing.git", "branch": "main", "commit": "a" * 40}
    codes = [client.post("/api/hooks/commit", json=body, csrf=False).status_code for _ in range(4)]
    assert codes[:3] == [401, 401, 401]
    assert codes[3] == 429
    # the refused fourth call wrote no delivery row
    assert db.execute("SELECT COUNT(*) FROM webhook_deliveries").fetchone()[0] == 3
