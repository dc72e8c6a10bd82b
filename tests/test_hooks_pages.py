"""The deliveries page, the admin token pages, and the "Simulate new commit"
button on the request and image pages."""

from __future__ import annotations

import json
import re

import pytest

from samosval.domain import tokens
from tests import factories

SHA = "feedface" * 5


def call_hook(client, token, **body):
    payload = {"repo_url": "https://github.com/acme/billing.git", "branch": "main", "commit": SHA, **body}
    return client.post("/api/hooks/commit", json=payload, csrf=False, headers={"X-Samosval-Token": token})


@pytest.fixture
def token(app, db, users):
    return tokens.create_token(
        db, "ci billing", secret_key=app.secret_key, actor_id=users["alice"], now=1_800_000_000.0
    )[1]


# --- deliveries ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "username, status", [("oleg", 200), ("alice", 200), ("root", 200), ("dana", 403), ("sam", 403)]
)
def test_only_staff_see_the_deliveries(auth, username, status):
    assert auth.client_for(username).get("/webhooks").status_code == status


def test_strangers_are_sent_to_log_in(client):
    response = client.get("/webhooks")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_the_deliveries_page_says_what_happened_and_why(app, auth, client, db, sample, token):
    stopped = factories.make_deployment(
        db, image_id=sample["image_id"], name="b2", status="stopped", stopped_by_operator=1
    )
    call_hook(client, token)
    client.post("/api/hooks/commit", json={}, csrf=False, headers={"X-Hub-Signature-256": "sha256=00"})
    call_hook(client, token, repo_url="https://github.com/acme/other")
    page = auth.client_for("oleg").get("/webhooks?lang=en", headers={"Accept-Language": "en"})
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    rows = re.findall(r'<tr data-delivery-id="\d+" data-outcome="(\w+)"', html)
    assert rows == ["no_match", "refused", "processed"]
    assert token not in html
    assert f'data-deployment-id="{sample["deployment_id"]}"' in html
    assert f'data-deployment-id="{stopped}"' in html
    assert "ci billing" in html and SHA[:12] in html


@pytest.mark.parametrize(
    "locale, words",
    [
        (
            "en",
            [
                "restarted 1, marked 1",
                "signature mismatch",
                "no continuous request for this repository and branch",
            ],
        ),
        ("ru", ["перезапущено: 1, помечено: 1", "подпись не совпадает"]),
    ],
)
def test_the_reasons_read_in_plain_words(auth, client, db, sample, token, locale, words):
    factories.make_deployment(
        db, image_id=sample["image_id"], name="b2", status="stopped", stopped_by_operator=1
    )
    call_hook(client, token)
    client.post("/api/hooks/commit", json={}, csrf=False, headers={"X-Hub-Signature-256": "sha256=00"})
    call_hook(client, token, repo_url="https://github.com/acme/other")
    oleg = auth.client_for("oleg")
    db.execute("UPDATE users SET locale = ? WHERE username = 'oleg'", (locale,))
    html = oleg.get("/webhooks").get_data(as_text=True)
    for word in words:
        assert word in html


def test_the_deliveries_page_filters_and_paginates(app, auth, client, db, sample, token):
    app.config["PER_PAGE"] = 2
    for n in range(3):
        call_hook(client, token, commit=f"{n:07d}")
    oleg = auth.client_for("oleg")
    first = oleg.get("/webhooks").get_data(as_text=True)
    assert first.count("data-delivery-id=") == 2 and 'rel="next"' in first
    second = oleg.get("/webhooks?page=2").get_data(as_text=True)
    assert second.count("data-delivery-id=") == 1
    refused = oleg.get("/webhooks?outcome=refused").get_data(as_text=True)
    assert "data-delivery-id=" not in refused
    assert oleg.get("/webhooks?outcome=bogus&page=x").status_code == 200


# --- tokens ----------------------------------------------------------------------------


@pytest.mark.parametrize("username, status", [("alice", 200), ("root", 200), ("oleg", 403), ("dana", 403)])
def test_only_admins_manage_tokens(auth, username, status):
    client = auth.client_for(username)
    assert client.get("/admin/tokens").status_code == status
    if status == 403:
        assert client.post("/admin/tokens/create", data={"name": "x"}).status_code == 403


def test_a_new_token_is_shown_once(auth, db):
    alice = auth.client_for("alice")
    response = alice.post("/admin/tokens/create", data={"name": "GitHub acme/billing"})
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    html = response.get_data(as_text=True)
    token = re.search(r'<pre class="token-value" id="new-token">(smsv_[\w-]+)</pre>', html).group(1)
    row = db.execute("SELECT * FROM webhook_tokens").fetchone()
    assert row["token_hash"] == tokens.hash_token(token) and token.startswith(row["token_prefix"])
    assert token not in row["sealed_secret"]
    again = alice.get("/admin/tokens").get_data(as_text=True)
    assert token not in again and row["token_prefix"] in again
    audit = db.execute("SELECT * FROM audit_log WHERE action = 'token_create'").fetchone()
    assert token not in audit["details"] and json.loads(audit["details"])["name"] == "GitHub acme/billing"


def test_a_token_needs_a_name(auth, db):
    response = auth.client_for("alice").post("/admin/tokens/create", data={"name": "  "})
    assert response.status_code == 400 and 'data-error-for="name"' in response.get_data(as_text=True)
    assert db.execute("SELECT COUNT(*) FROM webhook_tokens").fetchone()[0] == 0


def test_an_admin_revokes_a_token(auth, client, db, sample, token):
    token_id = db.execute("SELECT id FROM webhook_tokens").fetchone()["id"]
    call_hook(client, token)
    alice = auth.client_for("alice")
    listing = alice.get("/admin/tokens").get_data(as_text=True)
    assert "never" not in listing.split(f'data-token-id="{token_id}"')[1].split("</tr>")[0]
    response = alice.post(f"/admin/tokens/{token_id}/revoke")
    assert response.status_code == 302
    assert db.execute("SELECT revoked_at FROM webhook_tokens").fetchone()[0] is not None
    assert db.execute("SELECT COUNT(*) FROM audit_log WHERE action = 'token_revoke'").fetchone()[0] == 1
    assert call_hook(client, token, commit="1234567").status_code == 401
    assert alice.post(f"/admin/tokens/{token_id}/revoke").status_code == 302  # flashed "already"
    assert alice.post("/admin/tokens/999/revoke").status_code == 404
    assert alice.post(f"/admin/tokens/{token_id}/revoke", csrf=False).status_code == 400


# --- the button --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "username, shown", [("oleg", True), ("alice", True), ("dana", True), ("colin", False), ("carl", False)]
)
def test_the_request_page_offers_the_button(auth, sample, username, shown):
    """Only to those whose restart button works: staff and the owner."""
    html = auth.client_for(username).get(f"/requests/{sample['request_id']}").get_data(as_text=True)
    assert ("data-simulate-commit" in html) is shown
    assert ('data-repo-url="https://github.com/acme/billing.git"' in html) is shown
    assert ("js/simulate_commit.js" in html) is shown


def test_the_image_page_offers_the_button(auth, sample):
    html = auth.client_for("dana").get(f"/images/{sample['image_id']}").get_data(as_text=True)
    assert "data-simulate-commit" in html


def test_the_button_notes_that_static_requests_are_not_restarted(auth, db, users):
    request_id = factories.make_request(db, owner_id=users["dana"], update_mode="static")
    html = auth.client_for("dana").get(f"/requests/{request_id}?lang=en").get_data(as_text=True)
    assert "data-simulate-commit" in html
