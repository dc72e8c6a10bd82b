"""Reading the commit hook's payloads: generic JSON, GitHub push (JSON and
form-encoded), GitLab push hooks, events that change nothing, bad input; URL
normalisation; GitHub's HMAC test vector."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

from samosval.domain import hook_parsing as hooks
from samosval.domain import tokens
from samosval.domain.repos import normalize_repo_url

SHA = "a" * 40


def github_push(**overrides) -> dict:
    payload = {
        "ref": "refs/heads/main",
        "before": "0" * 40,
        "after": SHA,
        "deleted": False,
        "repository": {
            "full_name": "acme/billing",
            "clone_url": "https://github.com/acme/billing.git",
            "html_url": "https://github.com/acme/billing",
            "ssh_url": "git@github.com:acme/billing.git",
        },
        "head_commit": {"id": SHA, "message": "Fix rounding"},
    }
    payload.update(overrides)
    return payload


def gitlab_push(**overrides) -> dict:
    payload = {
        "object_kind": "push",
        "ref": "refs/heads/main",
        "before": "0" * 40,
        "after": SHA,
        "checkout_sha": SHA,
        "project": {
            "git_http_url": "https://gitlab.example.com/acme/billing.git",
            "git_ssh_url": "git@gitlab.example.com:acme/billing.git",
            "web_url": "https://gitlab.example.com/acme/billing",
        },
        "commits": [{"id": "b" * 40, "message": "older"}, {"id": SHA, "message": "Fix rounding"}],
    }
    payload.update(overrides)
    return payload


def parse(body, headers=None, content_type="application/json"):
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    return hooks.parse(headers or {}, body, content_type)


def test_it_reads_the_generic_payload():
    event = parse({"repo_url": "https://github.com/Acme/Billing", "branch": "main", "commit": SHA.upper()})
    assert (event.source, event.repo_keys, event.branch, event.commit, event.ignored) == (
        "generic",
        ["github.com/acme/billing"],
        "main",
        SHA,
        None,
    )
    assert event.repo_url == "https://github.com/Acme/Billing"


def test_it_accepts_a_full_ref_as_the_generic_branch():
    event = parse(
        {"repo_url": "git@github.com:acme/billing.git", "branch": "refs/heads/release/2", "commit": "abc1234"}
    )
    assert event.branch == "release/2" and event.commit == "abc1234"


def test_it_reads_a_github_push_sent_as_json():
    event = parse(github_push(), {"X-GitHub-Event": "push", "X-GitHub-Delivery": "guid-1"})
    assert event.source == "github" and event.event == "push"
    assert event.repo_keys == ["github.com/acme/billing"]
    assert (event.branch, event.commit, event.delivery_key) == ("main", SHA, "github:guid-1")


def test_it_reads_a_github_push_sent_form_encoded():
    body = urlencode({"payload": json.dumps(github_push())}).encode()
    event = parse(body, {"X-GitHub-Event": "push"}, "application/x-www-form-urlencoded")
    assert (event.branch, event.commit, event.repo_key) == ("main", SHA, "github.com/acme/billing")


def test_it_reads_a_gitlab_push_hook():
    event = parse(
        gitlab_push(), {"X-Gitlab-Event": "Push Hook", "Idempotency-Key": "k-1", "X-Gitlab-Event-UUID": "u-1"}
    )
    assert event.source == "gitlab"
    assert event.repo_keys == ["gitlab.example.com/acme/billing"]
    assert (event.branch, event.commit, event.delivery_key) == ("main", SHA, "gitlab:k-1")


def test_it_uses_the_gitlab_event_uuid_without_an_idempotency_key():
    event = parse(gitlab_push(), {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Event-UUID": "u-1"})
    assert event.delivery_key == "gitlab:u-1"


@pytest.mark.parametrize(
    "body, headers, reason",
    [
        ({"zen": "Keep it simple", "hook_id": 1}, {"X-GitHub-Event": "ping"}, hooks.R_PONG),
        (github_push(ref="refs/tags/v1.0"), {"X-GitHub-Event": "push"}, hooks.R_TAG),
        (github_push(deleted=True, after="0" * 40), {"X-GitHub-Event": "push"}, hooks.R_DELETED),
        (
            github_push(head_commit={"id": SHA, "message": "docs [skip ci]"}),
            {"X-GitHub-Event": "push"},
            hooks.R_SKIP_CI,
        ),
        (
            github_push(head_commit={"id": SHA, "message": "wip [Skip Deploy]"}),
            {"X-GitHub-Event": "push"},
            hooks.R_SKIP_DEPLOY,
        ),
        ({"action": "opened"}, {"X-GitHub-Event": "pull_request"}, hooks.R_NOT_PUSH),
        (gitlab_push(ref="refs/tags/v1"), {"X-Gitlab-Event": "Tag Push Hook"}, hooks.R_TAG),
        (gitlab_push(checkout_sha=None, after="0" * 40), {"X-Gitlab-Event": "Push Hook"}, hooks.R_DELETED),
        (
            gitlab_push(commits=[{"id": SHA, "message": "chore [skip ci]"}]),
            {"X-Gitlab-Event": "Push Hook"},
            hooks.R_SKIP_CI,
        ),
        ({"object_kind": "issue"}, {"X-Gitlab-Event": "Issue Hook"}, hooks.R_NOT_PUSH),
        (
            {
                "repo_url": "https://github.com/acme/billing",
                "branch": "main",
                "commit": SHA,
                "message": "bump [skip deploy]",
            },
            {},
            hooks.R_SKIP_DEPLOY,
        ),
    ],
)
def test_it_ignores_events_that_change_nothing(body, headers, reason):
    event = parse(body, headers)
    assert event.ignored == reason
    assert event.pong == (reason == hooks.R_PONG)


@pytest.mark.parametrize(
    "body, content_type, reason, missing",
    [
        (b"not json", "application/json", hooks.R_NOT_JSON, []),
        (b"", "application/json", hooks.R_NOT_JSON, []),
        (b"\xff\xfe", "application/json", hooks.R_NOT_JSON, []),
        (b"[1, 2]", "application/json", hooks.R_NOT_OBJECT, []),
        (b'{"branch": "main"}', "application/json", hooks.R_MISSING, ["repo_url", "commit"]),
        (
            b'{"repo_url": "", "branch": " ", "commit": 5}',
            "application/json",
            hooks.R_MISSING,
            ["repo_url", "branch", "commit"],
        ),
        (
            b'{"repo_url": "not a url", "branch": "main", "commit": "abcdef1"}',
            "application/json",
            hooks.R_BAD_URL,
            [],
        ),
        (
            b'{"repo_url": "https://github.com/a/b", "branch": "main", "commit": "xyz"}',
            "application/json",
            hooks.R_BAD_COMMIT,
            [],
        ),
        (
            b'{"repo_url": "https://github.com/a/b", "branch": "ma in", "commit": "abcdef1"}',
            "application/json",
            hooks.R_BAD_BRANCH,
            [],
        ),
        (b"other=1", "application/x-www-form-urlencoded", hooks.R_NO_PAYLOAD, ["payload"]),
    ],
)
def test_it_names_what_is_wrong_with_bad_input(body, content_type, reason, missing):
    with pytest.raises(hooks.PayloadError) as caught:
        hooks.parse({}, body, content_type)
    assert caught.value.reason == reason
    assert caught.value.missing == missing


def test_it_names_missing_github_fields():
    with pytest.raises(hooks.PayloadError) as caught:
        parse({"ref": "refs/heads/main"}, {"X-GitHub-Event": "push"})
    assert caught.value.missing == ["after", "repository.clone_url"]


def test_stored_reasons_split_back_into_text_and_detail():
    stored = hooks.join_reason(hooks.R_MISSING, "repo_url, commit")
    assert hooks.split_reason(stored) == (hooks.R_MISSING, "repo_url, commit")
    assert hooks.split_reason(hooks.R_SKIP_CI) == (hooks.R_SKIP_CI, None)
    assert hooks.split_reason(None) == (None, None)


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/Org/Repo",
        "https://github.com/org/repo.git",
        "git@github.com:org/repo.git",
        "ssh://git@github.com/org/repo",
        "https://GitHub.com/org/repo/",
        "ssh://git@github.com:22/org/repo.git",
        "http://github.com/org/repo.git/",
        "git://github.com/org/repo",
        "https://user@github.com/org/repo.git",
    ],
)
def test_it_normalises_every_form_of_one_repository(url):
    assert normalize_repo_url(url) == "github.com/org/repo"


@pytest.mark.parametrize(
    "url",
    [
        "https://gitlab.com/org/repo",
        "https://github.com/org/repo2",
        "https://github.com/other/repo",
        "https://github.com/org/repo/sub",
        "git@github.example.com:org/repo.git",
    ],
)
def test_it_tells_different_repositories_apart(url):
    assert normalize_repo_url(url) != "github.com/org/repo"


@pytest.mark.parametrize("url", ["", None, "repo", "https://github.com/", "/local/path", "ftp://x/y"])
def test_it_rejects_what_is_not_a_repository_url(url):
    assert normalize_repo_url(url) is None


def test_it_verifies_githubs_published_test_vector():
    secret, body = "It's a Secret to Everybody", b"Hello, World!"
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert tokens.github_signature(secret, body) == expected
    assert tokens.verify_signature(secret, body, expected)
    assert not tokens.verify_signature(secret, body + b" ", expected)
    assert not tokens.verify_signature("another secret", body, expected)
    assert not tokens.verify_signature(secret, body, None)
    assert not tokens.verify_signature(secret, body, "sha256=ü")


def test_sealed_secrets_open_only_with_the_same_key():
    sealed = tokens.seal("smsv_secret", "key-one")
    assert "smsv_secret" not in sealed
    assert tokens.unseal(sealed, "key-one") == "smsv_secret"
    assert tokens.unseal(sealed, "key-two") is None


@pytest.mark.parametrize(
    "url, stored",
    [
        (
            "https://gitlab-ci-token:glcbt-secret@gitlab.example.com/acme/billing.git",
            "https://gitlab.example.com/acme/billing.git",
        ),
        ("https://x-access-token@github.com/acme/billing", "https://github.com/acme/billing"),
        ("ssh://git@github.com/acme/billing", "ssh://git@github.com/acme/billing"),
        ("git@github.com:acme/billing.git", "git@github.com:acme/billing.git"),
    ],
)
def test_it_never_keeps_credentials_from_a_repository_url(url, stored):
    event = parse({"repo_url": url, "branch": "main", "commit": SHA})
    assert event.repo_url == stored
    assert event.repo_keys[0].endswith("/acme/billing")
