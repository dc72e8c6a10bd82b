"""Every sender, every event in tests/fixtures/webhooks/, through every content type
and signature mode the sender supports: it restarts, marks, ignores or is refused
as expected, and the delivery row names the sender and the reason."""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest

from samosval.db import dialect
from samosval.domain import hook_parsing as parsing
from samosval.domain import tokens
from tests import factories

FIXTURES = Path(__file__).parent / "fixtures" / "webhooks"
SHA = "9f2c4e6a8b0d1f3e5a7c9b1d3f5e7a9c0b2d4f6e"
NOW = 1_800_000_000.0


def hexsig(secret: str, data: bytes) -> str:
    return tokens.github_signature(secret, data)[len("sha256=") :]


@dataclass(frozen=True)
class Sender:
    repo_url: str  # what the request form holds for this repository
    forms: bool  # also sends application/x-www-form-urlencoded
    signs: bool  # can sign the body with the token as secret

    def headers(self, name: str, event: str, delivery: str, signature: str | None) -> dict:
        """The headers the sender really sends (signature: hex HMAC or None)."""
        h: dict[str, str] = {}
        if name == "github":
            h = {
                "X-GitHub-Event": event,
                "X-GitHub-Delivery": delivery,
                "X-GitHub-Hook-ID": "30",
                "User-Agent": "GitHub-Hookshot/7c3b1f2",
            }
            if signature:
                h["X-Hub-Signature-256"] = "sha256=" + signature
        elif name in ("gitea", "forgejo"):
            # Both also send Gogs' and GitHub's headers, for old receivers.
            h = {
                "X-Gitea-Event": event,
                "X-Gitea-Event-Type": event,
                "X-Gitea-Delivery": delivery,
                "X-Gogs-Event": event,
                "X-Gogs-Delivery": delivery,
                "X-GitHub-Event": event,
                "X-GitHub-Delivery": delivery,
                "User-Agent": "Go-http-client/1.1",
            }
            if signature:
                h.update(
                    {
                        "X-Gitea-Signature": signature,
                        "X-Gogs-Signature": signature,
                        "X-Hub-Signature-256": "sha256=" + signature,
                    }
                )
            if name == "forgejo":
                h.update({"X-Forgejo-Event": event, "X-Forgejo-Delivery": delivery})
                if signature:
                    h["X-Forgejo-Signature"] = signature
        elif name == "gogs":
            h = {"X-Gogs-Event": event, "X-Gogs-Delivery": delivery}
            if signature:
                h["X-Gogs-Signature"] = signature
        elif name == "gitlab":
            h = {
                "X-Gitlab-Event": event,
                "X-Gitlab-Event-UUID": delivery,
                "X-Gitlab-Instance": "https://gitlab.example.com",
                "User-Agent": "GitLab/17.5.0",
            }
        elif name == "bitbucket":
            h = {
                "X-Event-Key": event,
                "X-Hook-UUID": "{0b6e4f5a-5c1d-4e2f-8a3b-9c7d1e2f3a4b}",
                "X-Request-UUID": delivery,
                "X-Attempt-Number": "1",
                "User-Agent": "Bitbucket-Webhooks/2.0",
            }
        elif name == "bitbucket_dc":
            h = {"X-Event-Key": event, "X-Request-Id": delivery}
            if signature:
                h["X-Hub-Signature"] = "sha256=" + signature
        return h


SENDERS = {
    "generic": Sender("https://github.com/acme/billing.git", forms=False, signs=False),
    "github": Sender("https://github.com/acme/billing.git", forms=True, signs=True),
    "gitea": Sender("https://gitea.example.com/acme/billing.git", forms=True, signs=True),
    "forgejo": Sender("https://codeberg.example.org/acme/billing", forms=True, signs=True),
    "gogs": Sender("git@gogs.example.com:acme/billing.git", forms=True, signs=True),
    "gitlab": Sender("https://gitlab.example.com/acme/billing.git", forms=False, signs=False),
    "bitbucket": Sender("https://bitbucket.org/acme/billing.git", forms=False, signs=False),
    "bitbucket_dc": Sender("https://bitbucket.example.com/scm/acme/billing.git", forms=False, signs=True),
}

# fixture, event header value, outcome, reason, branch (or tag) recorded
EVENTS = [
    ("generic/commit.json", "commit", "processed", None, "main"),
    ("github/push.json", "push", "processed", None, "main"),
    ("github/push_tag.json", "push", "ignored", parsing.R_TAG, "v1.4.0"),
    ("github/push_delete.json", "push", "ignored", parsing.R_DELETED, "old-feature"),
    ("github/ping.json", "ping", "pong", parsing.R_PONG, None),
    ("gitea/push.json", "push", "processed", None, "main"),
    ("gitea/push_tag.json", "push", "ignored", parsing.R_TAG, "v1.4.0"),
    ("gitea/push_delete.json", "push", "ignored", parsing.R_DELETED, "old-feature"),
    ("forgejo/push.json", "push", "processed", None, "main"),
    ("forgejo/push_tag.json", "push", "ignored", parsing.R_TAG, "v1.4.0"),
    ("forgejo/push_delete.json", "push", "ignored", parsing.R_DELETED, "old-feature"),
    ("gogs/push.json", "push", "processed", None, "main"),
    ("gogs/push_skip_ci.json", "push", "ignored", parsing.R_SKIP_CI, "main"),
    ("gitlab/push.json", "Push Hook", "processed", None, "main"),
    ("gitlab/push_skip_ci.json", "Push Hook", "ignored", parsing.R_SKIP_CI, "main"),
    ("gitlab/tag_push.json", "Tag Push Hook", "ignored", parsing.R_TAG, "v1.4.0"),
    ("bitbucket/repo_push.json", "repo:push", "processed", None, "main"),
    ("bitbucket/repo_push_tag.json", "repo:push", "ignored", parsing.R_TAG, "v1.4.0"),
    ("bitbucket/repo_push_delete.json", "repo:push", "ignored", parsing.R_DELETED, "old-feature"),
    ("bitbucket_dc/refs_changed.json", "repo:refs_changed", "processed", None, "main"),
    ("bitbucket_dc/refs_changed_tag.json", "repo:refs_changed", "ignored", parsing.R_TAG, "v1.4.0"),
    (
        "bitbucket_dc/refs_changed_delete.json",
        "repo:refs_changed",
        "ignored",
        parsing.R_DELETED,
        "old-feature",
    ),
    ("bitbucket_dc/diagnostics_ping.json", "diagnostics:ping", "pong", parsing.R_PONG, None),
]


def modes_for(sender: Sender) -> list[str]:
    """How this sender can authenticate and encode. "url": the token's own hook URL."""
    modes = ["json+bearer"]
    if sender.signs:
        modes += ["json+signature", "json+signature+url"]
        if sender.forms:
            modes += ["form+signature", "form+signature+url"]
    if sender.forms:
        modes.append("form+bearer")
    return modes


def _cases():
    for fixture, event, outcome, reason, branch in EVENTS:
        name = fixture.split("/")[0]
        for mode in modes_for(SENDERS[name]):
            yield pytest.param(name, fixture, event, mode, outcome, reason, branch, id=f"{fixture}-{mode}")


@pytest.fixture
def world(app, db, users):
    token_id, token = tokens.create_token(
        db, "git host", secret_key=app.secret_key, actor_id=users["alice"], now=NOW
    )
    made = {}
    for name, sender in SENDERS.items():
        if name == "github":
            continue  # generic and github share the repository
        request_id = factories.make_request(
            db, owner_id=users["dana"], status="approved", repo_url=sender.repo_url, image_name=f"{name}-api"
        )
        image_id = factories.make_image(db, request_id=request_id, name=f"{name}-api")
        made[name] = factories.make_deployment(db, image_id=image_id, name=f"{name}-dev")
    made["github"] = made["generic"]
    return {"token_id": token_id, "token": token, "deployments": made}


def send(
    client,
    name: str,
    fixture: str,
    event: str,
    mode: str,
    world,
    *,
    tamper: bool = False,
    token_id: int | None = None,
):
    payload = (FIXTURES / fixture).read_bytes()
    sender = SENDERS[name]
    form = mode.startswith("form")
    body = urlencode({"payload": payload.decode()}).encode() if form else payload
    content_type = "application/x-www-form-urlencoded" if form else "application/json"
    signature = None
    if "signature" in mode:
        # Gitea, Forgejo and Gogs sign the JSON payload, even inside a form.
        signed = payload if name in parsing.GITEA_LIKE else body
        signature = hexsig(world["token"] + ("x" if tamper else ""), signed)
    headers = sender.headers(name, event, str(uuid.uuid4()), signature)
    url = "/api/hooks/commit"
    if mode.endswith("+url"):
        url += f"/{token_id or world['token_id']}"
    if "bearer" in mode:
        if name == "gitlab":
            headers["X-Gitlab-Token"] = world["token"]
        elif name == "bitbucket":
            url += f"?token={world['token']}"  # Bitbucket Cloud sets no headers
        else:
            headers["Authorization"] = f"Bearer {world['token']}"
    return client.post(url, data=body, content_type=content_type, headers=headers, csrf=False)


def last_delivery(db):
    return db.execute("SELECT * FROM webhook_deliveries ORDER BY id DESC LIMIT 1").fetchone()


@pytest.mark.parametrize("name, fixture, event, mode, outcome, reason, branch", list(_cases()))
def test_each_sender_and_event_does_what_it_should(
    app, client, db, world, name, fixture, event, mode, outcome, reason, branch
):
    response = send(client, name, fixture, event, mode, world)
    assert response.status_code == 200, response.json
    data = response.json
    assert (data["outcome"], data["reason"]) == (outcome, reason)
    row = last_delivery(db)
    assert (row["source"], row["outcome"], row["reason"], row["branch"]) == (name, outcome, reason, branch)
    assert row["token_id"] == world["token_id"]
    deployment = world["deployments"][name]
    status = db.execute("SELECT status, last_commit FROM deployments WHERE id = ?", (deployment,)).fetchone()
    if outcome == "processed":
        assert data["restarted_deployments"] == [deployment]
        assert row["commit_sha"] == SHA and tuple(status) == ("deploying", SHA)
        assert row["repo_key"] == parsing.normalize_repo_url(SENDERS[name].repo_url)
    else:
        assert data["restarted_deployments"] == [] and status["status"] == "running"
    if outcome == "ignored":
        # Tag pushes, deletions and [skip ci] are recorded with their repository.
        assert row["repo_key"] is not None


@pytest.mark.parametrize(
    "name, fixture, event, mode",
    [
        pytest.param(n, f, e, m, id=f"{f}-{m}")
        for f, e, o, _r, _b in EVENTS
        if o == "processed"
        for n in [f.split("/")[0]]
        for m in modes_for(SENDERS[n])
        if "signature" in m
    ],
)
def test_a_wrong_signature_is_refused_and_labelled_by_sender(client, db, world, name, fixture, event, mode):
    response = send(client, name, fixture, event, mode, world, tamper=True)
    assert response.status_code == 401
    assert response.json["error"]["reason"] == parsing.R_SIGNATURE
    row = last_delivery(db)
    assert (row["source"], row["outcome"], row["http_status"]) == (name, "refused", 401)
    status = db.execute(
        "SELECT status FROM deployments WHERE id = ?", (world["deployments"][name],)
    ).fetchone()
    assert status[0] == "running"


@pytest.mark.parametrize(
    "name, fixture, event", [(f.split("/")[0], f, e) for f, e, o, _r, _b in EVENTS if o == "processed"]
)
def test_a_call_without_credentials_is_refused_and_labelled_by_sender(
    client, db, world, name, fixture, event
):
    response = client.post(
        "/api/hooks/commit",
        data=(FIXTURES / fixture).read_bytes(),
        content_type="application/json",
        headers=SENDERS[name].headers(name, event, "d-1", None),
        csrf=False,
    )
    assert response.status_code == 401
    assert (last_delivery(db)["source"], last_delivery(db)["reason"]) == (name, parsing.R_NO_CREDENTIALS)


def test_gitea_form_deliveries_are_not_checked_over_the_form_body(client, db, world):
    """The issue's 401: a receiver that HMACs the form body never matches Gitea."""
    payload = (FIXTURES / "gitea/push.json").read_bytes()
    body = urlencode({"payload": payload.decode()}).encode()
    headers = SENDERS["gitea"].headers("gitea", "push", "d-1", hexsig(world["token"], body))
    response = client.post(
        "/api/hooks/commit",
        data=body,
        content_type="application/x-www-form-urlencoded",
        headers=headers,
        csrf=False,
    )
    assert response.status_code == 401 and response.json["error"]["reason"] == parsing.R_SIGNATURE


def test_the_deliveries_page_names_each_sender(auth, client, db, world):
    for fixture, event, outcome, _reason, _branch in EVENTS:
        if outcome == "processed":
            name = fixture.split("/")[0]
            db.execute("DELETE FROM webhook_deliveries")  # the same commit would be a duplicate
            assert send(client, name, fixture, event, "json+bearer", world).status_code == 200
            page = auth.client_for("oleg").get("/webhooks").get_data(as_text=True)
            label = {
                "generic": None,
                "github": "GitHub",
                "gitea": "Gitea",
                "forgejo": "Forgejo",
                "gogs": "Gogs",
                "gitlab": "GitLab",
                "bitbucket": "Bitbucket Cloud",
                "bitbucket_dc": "Bitbucket Data Center",
            }[name]
            if label:
                assert f'data-source="{name}"' in page and label in page, name


# --- the pure parts, without the app -----------------------------------------------------------


@pytest.mark.parametrize("fixture, event, outcome, reason, branch", EVENTS, ids=[e[0] for e in EVENTS])
def test_parsing_needs_no_database(fixture, event, outcome, reason, branch):
    name = fixture.split("/")[0]
    headers = SENDERS[name].headers(name, event, "d-1", None)
    parsed = parsing.parse(headers, (FIXTURES / fixture).read_bytes(), "application/json")
    assert (parsed.source, parsed.branch, parsed.ignored) == (
        name,
        branch,
        reason if outcome != "processed" else None,
    )
    if outcome == "processed":
        assert parsed.commit == SHA
        assert parsing.normalize_repo_url(SENDERS[name].repo_url) in parsed.repo_keys


@contextmanager
def read_only(db):
    """A transaction in which any write fails (on either database), rolled back."""
    if dialect(db) == "postgresql":
        db.execute("BEGIN READ ONLY")
    else:
        db.execute("BEGIN")
        db.execute("PRAGMA query_only = ON")
    try:
        yield
    finally:
        db.execute("ROLLBACK")
        if dialect(db) == "sqlite":
            db.execute("PRAGMA query_only = OFF")


def test_a_plan_is_made_without_writing(app, db, world):
    from samosval.domain import hook_auth, hook_effects

    event = parsing.parse(
        {"X-GitHub-Event": "push"}, (FIXTURES / "github/push.json").read_bytes(), "application/json"
    )
    db.execute(
        "UPDATE deployments SET status = 'stopped', stopped_by_operator = 1 WHERE id = ?",
        (world["deployments"]["gitlab"],),
    )
    with read_only(db):
        plan = hook_effects.plan_commit(
            db, event, hook_auth.Caller(token_id=world["token_id"], token_name="git host")
        )
    assert (plan.outcome, plan.restart, plan.mark) == ("processed", [world["deployments"]["github"]], [])
    gitlab = parsing.parse(
        {"X-Gitlab-Event": "Push Hook"}, (FIXTURES / "gitlab/push.json").read_bytes(), "application/json"
    )
    plan = hook_effects.plan_commit(db, gitlab, hook_auth.Caller(token_id=world["token_id"]))
    assert plan.restart == [] and plan.mark == [
        (world["deployments"]["gitlab"], "it was stopped by an operator")
    ]
