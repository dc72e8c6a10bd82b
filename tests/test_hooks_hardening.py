"""The commit hook against what real senders and hostile callers send: big pushes,
deep JSON, languages, per-token URLs, replayed bodies, scoped delivery ids, tag
pushes, and branch names git accepts."""

from __future__ import annotations

import json

import pytest

from samosval.domain import hook_parsing as parsing
from samosval.domain import tokens
from samosval.domain.repos import is_valid_branch_name
from tests import factories

SHA = "c0ffee" + "1" * 34
NOW = 1_800_000_000.0


@pytest.fixture
def token(app, db, users):
    return tokens.create_token(db, "ci billing", secret_key=app.secret_key, actor_id=users["alice"], now=NOW)


def github_push(sha=SHA, repo="acme/billing", pad: int = 0) -> bytes:
    payload = {
        "ref": "refs/heads/main",
        "before": "0" * 39 + "1",
        "after": sha,
        "deleted": False,
        "repository": {"clone_url": f"https://github.com/{repo}.git"},
        "head_commit": {"id": sha, "message": "Fix rounding"},
        "commits": [{"id": sha, "message": "x" * pad}] if pad else [],
    }
    return json.dumps(payload).encode()


def signed_post(client, body: bytes, secret: str, *, url="/api/hooks/commit", delivery="d-1", headers=None):
    return client.post(
        url,
        data=body,
        content_type="application/json",
        csrf=False,
        headers={
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": delivery,
            "X-Hub-Signature-256": tokens.github_signature(secret, body),
            **(headers or {}),
        },
    )


def deliveries(db):
    return db.execute("SELECT * FROM webhook_deliveries ORDER BY id").fetchall()


# --- 6. big pushes ----------------------------------------------------------------------------


def test_it_accepts_a_push_larger_than_the_sites_limit(client, db, sample, token):
    body = github_push(pad=3 * 1024 * 1024)
    assert len(body) > client.application.config["MAX_CONTENT_LENGTH"]
    response = signed_post(client, body, token[1])
    assert response.status_code == 200, response.json
    assert response.json["restarted_deployments"] == [sample["deployment_id"]]


def test_it_accepts_a_big_form_encoded_push(client, db, sample, token):
    """Form bodies are read raw, not through Werkzeug's form parser and its 500 KB cap."""
    from urllib.parse import urlencode

    body = urlencode({"payload": github_push(pad=3 * 1024 * 1024).decode()}).encode()
    response = client.post(
        "/api/hooks/commit",
        data=body,
        content_type="application/x-www-form-urlencoded",
        csrf=False,
        headers={"X-GitHub-Event": "push", "X-Hub-Signature-256": tokens.github_signature(token[1], body)},
    )
    assert response.status_code == 200, response.json
    assert response.json["restarted_deployments"] == [sample["deployment_id"]]


def test_it_refuses_a_push_over_25_mib(client, db, token):
    body = b"{" + b" " * (parsing.MAX_BODY + 10) + b"}"
    response = signed_post(client, body, token[1])
    assert response.status_code == 413 and response.json["error"]["reason"] == parsing.R_TOO_LARGE
    assert deliveries(db)[-1]["http_status"] == 413


def test_other_routes_keep_the_small_limit(auth, users):
    response = auth.client_for("carl").post("/requests/new", data={"image_name": "x" * (2 * 1024 * 1024)})
    assert response.status_code == 413


# --- 7. languages ------------------------------------------------------------------------------


def test_it_answers_in_english_when_no_language_is_asked_for(client, token):
    response = client.post(
        "/api/hooks/commit",
        json={"repo_url": "https://github.com/acme/none"},
        headers={"X-Samosval-Token": token[1]},
        csrf=False,
    )
    assert response.status_code == 400
    assert response.json["error"]["message"].startswith("missing fields")


def test_it_follows_accept_language(client, token):
    response = client.post(
        "/api/hooks/commit",
        json={"repo_url": "https://github.com/acme/none"},
        headers={"X-Samosval-Token": token[1], "Accept-Language": "ru-RU,ru;q=0.9"},
        csrf=False,
    )
    assert response.status_code == 400
    assert response.json["error"]["message"].startswith("не хватает полей"), response.json
    assert response.json["error"]["reason"].startswith("missing fields")  # the stored form stays English


# --- 9. deep JSON --------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"a":' * 100_000])
def test_deeply_nested_json_is_a_400_with_a_delivery_row(client, db, token, body):
    response = client.post(
        "/api/hooks/commit",
        data=body,
        content_type="application/json",
        headers={"X-Samosval-Token": token[1]},
        csrf=False,
    )
    assert response.status_code == 400
    row = deliveries(db)[-1]
    assert (row["outcome"], row["reason"], row["http_status"]) == ("invalid", parsing.R_TOO_DEEP, 400)


def test_deeply_nested_json_from_the_button_is_a_400(auth, db, sample):
    response = auth.client_for("oleg").post(
        "/api/hooks/commit", data=b"[" * 100_000, content_type="application/json"
    )
    assert response.status_code == 400 and deliveries(db)[-1]["outcome"] == "invalid"


# --- 10. one lookup, replays --------------------------------------------------------------------


def test_a_tokens_own_url_checks_only_that_token(app, client, db, sample, users, token, monkeypatch):
    others = [
        tokens.create_token(db, f"other {i}", secret_key=app.secret_key, actor_id=users["alice"], now=NOW)
        for i in range(5)
    ]
    unsealed = []
    real_unseal = tokens.unseal
    monkeypatch.setattr(
        tokens, "unseal", lambda sealed, key: unsealed.append(sealed) or real_unseal(sealed, key)
    )
    response = signed_post(client, github_push(), token[1], url=f"/api/hooks/commit/{token[0]}")
    assert response.status_code == 200 and response.json["outcome"] == "processed"
    assert len(unsealed) == 1
    # The shared URL still works, at the cost of trying every token.
    unsealed.clear()
    response = signed_post(client, github_push(sha="d" * 40), others[2][1], delivery="d-2")
    assert response.status_code == 200 and len(unsealed) == 1 + len(others)


def test_a_tokens_own_url_refuses_other_tokens_and_sessions(auth, client, db, sample, users, token):
    other_id, other = tokens.create_token(
        db, "other", secret_key=client.application.secret_key, actor_id=users["alice"], now=NOW
    )
    url = f"/api/hooks/commit/{token[0]}"
    assert signed_post(client, github_push(), other, url=url).json["error"]["reason"] == parsing.R_SIGNATURE
    response = client.post(
        url,
        data=github_push(),
        content_type="application/json",
        csrf=False,
        headers={"Authorization": f"Bearer {other}", "X-GitHub-Event": "push"},
    )
    assert response.status_code == 401 and response.json["error"]["reason"] == parsing.R_WRONG_TOKEN
    response = auth.client_for("oleg").post(
        url, json={"repo_url": "https://github.com/acme/billing", "branch": "main", "commit": SHA}
    )
    assert response.status_code == 401 and response.json["error"]["reason"] == parsing.R_NO_CREDENTIALS
    # A missing id answers exactly like an existing one with a wrong signature: ids cannot be probed.
    missing = signed_post(client, github_push(), token[1], url="/api/hooks/commit/987654")
    wrong = signed_post(client, github_push(), other, url=url)
    assert missing.status_code == wrong.status_code == 401
    ignore = {"delivery_id"}  # each call is recorded as its own delivery
    assert {k: v for k, v in missing.json["error"].items() if k not in ignore} == {
        k: v for k, v in wrong.json["error"].items() if k not in ignore
    }
    assert missing.json["error"]["reason"] == parsing.R_SIGNATURE
    assert db.execute("SELECT status FROM deployments").fetchone()[0] == "running"


def test_a_replayed_signed_body_is_a_duplicate_whatever_its_delivery_id(client, db, users, token):
    body = github_push(repo="acme/not-yet")
    first = signed_post(client, body, token[1], delivery="d-1")
    assert first.json["outcome"] == "no_match"
    # Someone who captured it sends it again once a matching request exists.
    factories.make_deployment(
        db,
        image_id=factories.make_image(
            db,
            request_id=factories.make_request(
                db, owner_id=users["dana"], status="approved", repo_url="https://github.com/acme/not-yet"
            ),
        ),
    )
    again = signed_post(client, body, token[1], delivery="d-2-changed")
    assert again.json["outcome"] == "duplicate", again.json
    assert again.json["duplicate_of"] == first.json["delivery_id"]
    assert again.json["reason"].startswith(parsing.R_REPLAY)


# --- 11. scoped delivery ids -------------------------------------------------------------------------


def test_an_idempotency_key_from_the_button_does_not_swallow_cis_delivery(
    auth, client, db, users, sample, token
):
    other = factories.make_request(
        db, owner_id=users["dana"], status="approved", repo_url="https://github.com/acme/ledger.git"
    )
    other_deployment = factories.make_deployment(db, image_id=factories.make_image(db, request_id=other))
    pressed = auth.client_for("dana").post(
        "/api/hooks/commit",
        json={"repo_url": "https://github.com/acme/billing", "branch": "main", "commit": SHA},
        headers={"Idempotency-Key": "X"},
    )
    assert pressed.json["outcome"] == "processed"
    ci = client.post(
        "/api/hooks/commit",
        json={"repo_url": "https://github.com/acme/ledger", "branch": "main", "commit": SHA},
        headers={"Idempotency-Key": "X", "X-Samosval-Token": token[1]},
        csrf=False,
    )
    assert ci.json["outcome"] == "processed", ci.json
    assert ci.json["restarted_deployments"] == [other_deployment]


def test_the_same_key_from_the_same_sender_for_the_same_repository_is_a_duplicate(client, db, sample, token):
    body = {"repo_url": "https://github.com/acme/billing", "branch": "main", "commit": SHA}
    headers = {"Idempotency-Key": "X", "X-Samosval-Token": token[1]}
    first = client.post("/api/hooks/commit", json=body, headers=headers, csrf=False)
    second = client.post("/api/hooks/commit", json={**body, "commit": "e" * 40}, headers=headers, csrf=False)
    assert first.json["outcome"] == "processed"
    assert second.json["outcome"] == "duplicate" and second.json["duplicate_of"] == first.json["delivery_id"]


def test_the_same_key_from_another_token_is_not_a_duplicate(app, client, db, users, sample, token):
    other = tokens.create_token(db, "other", secret_key=app.secret_key, actor_id=users["alice"], now=NOW)[1]
    body = {"repo_url": "https://github.com/acme/billing", "branch": "main"}
    first = client.post(
        "/api/hooks/commit",
        json={**body, "commit": SHA},
        csrf=False,
        headers={"Idempotency-Key": "X", "X-Samosval-Token": token[1]},
    )
    second = client.post(
        "/api/hooks/commit",
        json={**body, "commit": "e" * 40},
        csrf=False,
        headers={"Idempotency-Key": "X", "X-Samosval-Token": other},
    )
    assert (first.json["outcome"], second.json["outcome"]) == ("processed", "processed")


# --- 5. GitLab tag pushes ------------------------------------------------------------------------------


def test_a_gitlab_tag_push_is_recorded_with_its_repository_and_tag(client, db, token):
    payload = {
        "object_kind": "tag_push",
        "ref": "refs/tags/v2.0.0",
        "before": "0" * 40,
        "after": SHA,
        "checkout_sha": SHA,
        "project": {"git_http_url": "https://gitlab.example.com/acme/billing.git"},
    }
    response = client.post(
        "/api/hooks/commit",
        json=payload,
        csrf=False,
        headers={"X-Gitlab-Event": "Tag Push Hook", "X-Gitlab-Token": token[1]},
    )
    assert response.status_code == 200 and response.json["outcome"] == "ignored"
    row = deliveries(db)[-1]
    assert (row["source"], row["repo_key"], row["branch"], row["reason"]) == (
        "gitlab",
        "gitlab.example.com/acme/billing",
        "v2.0.0",
        parsing.R_TAG,
    )


# --- 8. branch names --------------------------------------------------------------------------------------

ACCEPTED = ["main", "fix/issue#42", "feature/релиз-2", "renovate/@types/node", "release+1", "v1.2", "a.b/c_d"]
REFUSED = [
    "a..b",
    "x.lock",
    "a/x.lock/b",
    "-x",
    "@",
    "a//b",
    "a/",
    "a.",
    "/a",
    ".a",
    "a/.b",
    "a\x01b",
    "a\x7fb",
    "a~b",
    "a^b",
    "a:b",
    "a?b",
    "a*b",
    "a[b",
    "a\\b",
    "a b",
    "a@{1}",
    "",
    "x" * 256,
]


@pytest.mark.parametrize("name", ACCEPTED)
def test_it_accepts_every_branch_git_accepts(name):
    assert is_valid_branch_name(name)


@pytest.mark.parametrize("name", REFUSED)
def test_it_refuses_what_git_check_ref_format_refuses(name):
    assert not is_valid_branch_name(name)


@pytest.mark.parametrize("name", ["fix/issue#42", "feature/релиз-2", "renovate/@types/node", "release+1"])
def test_the_hook_matches_such_branches(client, db, users, token, name):
    request_id = factories.make_request(db, owner_id=users["dana"], status="approved", repo_branch=name)
    deployment = factories.make_deployment(db, image_id=factories.make_image(db, request_id=request_id))
    response = client.post(
        "/api/hooks/commit",
        json={"repo_url": "https://github.com/acme/billing", "branch": name, "commit": SHA},
        headers={"X-Samosval-Token": token[1]},
        csrf=False,
    )
    assert response.json["restarted_deployments"] == [deployment], response.json


@pytest.mark.parametrize(
    "name, accepted",
    [(n, True) for n in ("fix/issue#42", "feature/релиз-2", "renovate/@types/node", "release+1")]
    + [(n, False) for n in ("a..b", "x.lock", "-x", "@", "a//b", "a/", "a.", "a b", "a~b")],
)
def test_the_request_form_validates_branches_as_git_does(auth, db, users, name, accepted):
    from tests.test_requests_form import valid_form

    response = auth.client_for("carl").post("/requests/new", data=valid_form(repo_branch=name))
    assert (response.status_code == 302) is accepted, response.status_code
    stored = db.execute("SELECT repo_branch FROM image_requests").fetchone()
    assert (stored is not None and stored[0] == name) is accepted


def test_it_bounds_the_active_tokens(app, db, users, monkeypatch):
    from samosval.domain import Refused

    monkeypatch.setattr(tokens, "MAX_ACTIVE_TOKENS", 2)
    first = [
        tokens.create_token(db, f"ci {i}", secret_key=app.secret_key, actor_id=users["alice"], now=NOW)
        for i in range(2)
    ]
    with pytest.raises(Refused) as refused:
        tokens.create_token(db, "one too many", secret_key=app.secret_key, actor_id=users["alice"], now=NOW)
    assert refused.value.kind == "conflict"
    assert db.execute("SELECT COUNT(*) FROM webhook_tokens").fetchone()[0] == 2
    tokens.revoke_token(db, first[0][0], actor_id=users["alice"], now=NOW)
    tokens.create_token(db, "in its place", secret_key=app.secret_key, actor_id=users["alice"], now=NOW)
