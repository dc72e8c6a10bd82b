"""Releases over HTTP (issue 20): the releases JSON, the releases table and release
page, rollback and unpin forms, approve/reject, the approvals list and its count,
protected environments, and the commit hook for pinned and protected deployments."""

from __future__ import annotations

import re

import pytest

from samosval.domain import releases as release_domain
from samosval.domain import tokens
from tests import factories

SHA = "deadbeef" * 5


@pytest.fixture
def history(db, sample):
    """The sample deployment with v1 (ran), v2 (current, running)."""
    deployment_id = sample["deployment_id"]
    factories.make_release(db, deployment_id=deployment_id, number=1, commit="a" * 40)
    current = factories.make_release(
        db,
        deployment_id=deployment_id,
        number=2,
        commit="b" * 40,
        trigger="webhook",
        cause="commit",
        current=True,
    )
    return {**sample, "current": current}


@pytest.fixture
def hook(client, app, db, users):
    token = tokens.create_token(
        db, "ci billing", secret_key=app.secret_key, actor_id=users["alice"], now=1_800_000_000.0
    )[1]

    def call(commit=SHA):
        return client.post(
            "/api/hooks/commit",
            csrf=False,
            headers={"Authorization": f"Bearer {token}"},
            json={"repo_url": "https://github.com/acme/billing.git", "branch": "main", "commit": commit},
        )

    return call


def english(client):
    client.post("/lang", data={"lang": "en"})
    return client


def protect_prod(auth, db, deployment_id=None):
    response = auth.client_for("root").post(
        "/admin/environments", data={"environment": "prod", "protected": "1"}
    )
    assert response.status_code == 302
    if deployment_id:
        db.execute("UPDATE deployments SET environment = 'prod' WHERE id = ?", (deployment_id,))


# --- reading -----------------------------------------------------------------------------


def test_the_json_lists_releases_newest_first_with_the_fields(auth, history):
    response = auth.client_for("colin").get(f"/api/deployments/{history['deployment_id']}/releases")
    assert response.status_code == 200
    data = response.get_json()
    assert data["pinned"] is False and data["current"] == history["current"]
    assert [item["number"] for item in data["releases"]] == [2, 1]
    newest = data["releases"][0]
    for key in (
        "number",
        "status",
        "image_tag",
        "image_digest",
        "commit",
        "trigger",
        "created_at",
        "created_by",
    ):
        assert key in newest
    assert (newest["status"], newest["commit"], newest["trigger"], newest["current"]) == (
        "running",
        "b" * 40,
        "webhook",
        True,
    )


def test_a_hidden_or_missing_deployment_has_no_releases(auth, history):
    assert (
        auth.client_for("sam").get(f"/api/deployments/{history['deployment_id']}/releases").status_code == 404
    )
    assert auth.client_for("oleg").get("/api/deployments/987654/releases").status_code == 404
    assert auth.client_for("sam").get("/releases/1").status_code == 404


def test_the_deployment_page_marks_the_current_release_and_offers_rollback(auth, history):
    html = (
        english(auth.client_for("dana"))
        .get(f"/deployments/{history['deployment_id']}")
        .get_data(as_text=True)
    )
    rows = re.findall(r'<tr data-release="(\d+)"([^>]*)>', html)
    assert [number for number, _attrs in rows] == ["2", "1"]
    assert 'aria-current="true"' in rows[0][1] and "aria-current" not in rows[1][1]
    assert re.findall(r'data-action="rollback" data-release="(\d+)"', html) == ["1"]
    # A collaborator sees the table but may not roll back.
    html = auth.client_for("colin").get(f"/deployments/{history['deployment_id']}").get_data(as_text=True)
    assert 'data-release="2"' in html and 'data-action="rollback"' not in html


def test_the_release_page_shows_what_changed_since_the_previous_one(auth, history):
    response = english(auth.client_for("dana")).get(f"/releases/{history['current']}")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'data-change="commit"' in html and "a" * 40 in html and "b" * 40 in html
    assert 'data-change="digest"' in html  # the factory gives each release its own digest
    assert "Changes since v1" in html


def test_the_pages_speak_russian_by_default(auth, history):
    html = auth.client_for("dana").get(f"/deployments/{history['deployment_id']}").get_data(as_text=True)
    assert "Релизы" in html and "Откатить к v1" in html


# --- rollback and unpin ----------------------------------------------------------------------


def test_a_rollback_from_the_form_pins_and_the_deployment_json_says_so(auth, db, history):
    client = english(auth.client_for("dana"))
    deployment_id = history["deployment_id"]
    response = client.post(f"/deployments/{deployment_id}/rollback", data={"release": "1"})
    assert response.status_code == 302 and response.headers["Location"].endswith(
        f"/deployments/{deployment_id}"
    )
    html = client.get(f"/deployments/{deployment_id}").get_data(as_text=True)
    assert "data-pinned" in html and "by dana" in html and 'data-action="unpin"' in html
    assert "v3: rollback to v1" in html
    data = client.get(f"/api/deployments/{deployment_id}/releases").get_json()
    assert data["pinned"] is True and data["releases"][0]["trigger"] == "rollback"
    stopped = client.post(f"/deployments/{deployment_id}/stop", headers={"Accept": "application/json"})
    assert stopped.get_json()["pinned"] is True  # the deployment's own JSON


def test_a_rollback_answers_json_and_refuses_clearly(auth, history):
    client = english(auth.client_for("oleg"))
    url = f"/deployments/{history['deployment_id']}/rollback"
    headers = {"Accept": "application/json"}
    for data, status in (
        ({}, 400),
        ({"release": "x"}, 400),
        ({"release": "44"}, 404),
        ({"release": "2"}, 409),
    ):
        response = client.post(url, data=data, headers=headers)
        assert response.status_code == status and response.get_json()["error"]
    response = client.post(url, data={"release": "1"}, headers=headers)
    body = response.get_json()
    assert response.status_code == 200 and body["pinned"] is True
    assert (body["release"]["number"], body["release"]["rollback_of"]) == (3, 1)
    # Exactly what v1 ran: its digest and commit, not whatever the image says now.
    assert (body["release"]["image_digest"], body["release"]["commit"]) == ("sha256:" + "01" * 32, "a" * 40)
    assert client.post(url, data={"release": "1"}, headers=headers).status_code == 409  # rolling out now


def test_unpin_needs_the_restart_right(auth, db, history):
    deployment_id = history["deployment_id"]
    auth.client_for("oleg").post(f"/deployments/{deployment_id}/rollback", data={"release": "1"})
    assert auth.client_for("colin").post(f"/deployments/{deployment_id}/unpin").status_code == 403
    response = auth.client_for("dana").post(
        f"/deployments/{deployment_id}/unpin", headers={"Accept": "application/json"}
    )
    assert response.get_json() == {"id": deployment_id, "pinned": False}


# --- the commit hook ---------------------------------------------------------------------------


def test_the_hook_restarts_nothing_pinned_and_says_so(auth, db, history, hook):
    deployment_id = history["deployment_id"]
    auth.client_for("oleg").post(f"/deployments/{deployment_id}/rollback", data={"release": "1"})
    db.execute("UPDATE deployments SET status = 'running' WHERE id = ?", (deployment_id,))
    response = hook()
    data = response.get_json()
    assert data["restarted_deployments"] == [] and data["pinned_deployments"] == [deployment_id]
    assert "pinned" in data["message"]
    assert len(release_domain.list_releases(db, deployment_id)) == 3  # no new release
    delivery = db.execute("SELECT reason FROM webhook_deliveries ORDER BY id DESC").fetchone()[0]
    assert delivery.startswith("pinned after a rollback") and f"#{deployment_id}" in delivery
    page = english(auth.client_for("oleg")).get("/webhooks").get_data(as_text=True)
    assert "pinned after a rollback: not restarted" in page
    # Unpinned, the next commit restarts it again.
    auth.client_for("oleg").post(f"/deployments/{deployment_id}/unpin")
    assert hook(commit="c0ffee" * 6 + "aaaa").get_json()["restarted_deployments"] == [deployment_id]


def test_the_hook_leaves_a_protected_deployment_running_with_a_pending_release(auth, db, history, hook):
    deployment_id = history["deployment_id"]
    protect_prod(auth, db, deployment_id)
    data = hook().get_json()
    assert data["restarted_deployments"] == [] and data["pending_deployments"] == [deployment_id]
    row = db.execute("SELECT status, last_commit FROM deployments WHERE id = ?", (deployment_id,)).fetchone()
    assert row["status"] == "running" and row["last_commit"] == "b" * 40
    pending = release_domain.list_releases(db, deployment_id)[0]
    assert (pending["status"], pending["commit_sha"], pending["trigger_kind"]) == (
        "pending_approval",
        SHA,
        "webhook",
    )
    assert pending["delivery_id"] == data["delivery_id"] and pending["created_by"] is None


# --- approvals -----------------------------------------------------------------------------------


def _pending(auth, db, history, by="dana"):
    protect_prod(auth, db, history["deployment_id"])
    auth.client_for(by).post(f"/deployments/{history['deployment_id']}/rollback", data={"release": "1"})
    return release_domain.list_releases(db, history["deployment_id"])[0]


def test_pending_releases_show_in_the_navigation_the_dashboard_and_the_list(auth, db, history):
    pending = _pending(auth, db, history)
    assert pending["status"] == "pending_approval"
    staff = english(auth.client_for("oleg"))
    assert 'data-pending-approvals="1"' in staff.get(f"/deployments/{history['deployment_id']}").get_data(
        as_text=True
    )
    assert f'data-pending-release="{pending["id"]}"' in staff.get("/dashboard").get_data(as_text=True)
    listing = staff.get("/approvals").get_data(as_text=True)
    assert f'data-pending-release="{pending["id"]}"' in listing and 'data-action="approve"' in listing
    assert "data-pending-approvals" not in auth.client_for("dana").get("/dashboard").get_data(as_text=True)
    auth.client_for("root").post(f"/releases/{pending['id']}/reject", data={"reason": "no"})
    page = staff.get("/dashboard").get_data(as_text=True)
    assert 'data-nav="approvals"' in page and "data-pending-approvals" not in page  # none left: no count
    assert auth.client_for("dana").get("/approvals").status_code == 403


def test_the_requester_cannot_approve_their_own_and_is_told_why(auth, db, history):
    pending = _pending(auth, db, history, by="oleg")
    client = english(auth.client_for("oleg"))
    page = client.get(f"/releases/{pending['id']}").get_data(as_text=True)
    assert 'data-action="approve"' not in page and "someone else must approve" in page
    response = client.post(f"/releases/{pending['id']}/approve", headers={"Accept": "application/json"})
    assert response.status_code == 403 and "someone else" in response.get_json()["error"]
    response = english(auth.client_for("root")).post(
        f"/releases/{pending['id']}/approve", headers={"Accept": "application/json"}
    )
    assert response.status_code == 200 and response.get_json()["release"]["status"] == "deploying"
    assert response.get_json()["pinned"] is True  # an approved rollback pins


def test_a_rejection_needs_a_reason_and_is_shown(auth, db, history):
    pending = _pending(auth, db, history)
    client = english(auth.client_for("oleg"))
    response = client.post(
        f"/releases/{pending['id']}/reject", data={"reason": " "}, headers={"Accept": "application/json"}
    )
    assert response.status_code == 400 and response.get_json()["error"] == "Say why the release is rejected."
    response = client.post(f"/releases/{pending['id']}/reject", data={"reason": "change freeze"})
    assert response.status_code == 302
    page = client.get(f"/releases/{pending['id']}").get_data(as_text=True)
    assert "change freeze" in page and 'data-status="rejected"' in page
    assert client.post(f"/releases/{pending['id']}/approve").status_code == 302  # a conflict: flash and back
    assert release_domain.get_release(db, pending["id"])["status"] == "rejected"


def test_environments_page_for_admins_only(auth, db, history):
    assert auth.client_for("oleg").get("/admin/environments").status_code == 403
    assert 'data-action="environments"' not in auth.client_for("oleg").get("/approvals").get_data(
        as_text=True
    )
    client = english(auth.client_for("root"))
    assert 'data-action="environments"' in client.get("/approvals").get_data(
        as_text=True
    )  # how admins get there
    assert 'data-protected="0"' in client.get("/admin/environments").get_data(as_text=True)
    response = client.post(
        "/admin/environments",
        data={"environment": "prod", "protected": "1"},
        headers={"Accept": "application/json"},
    )
    assert response.get_json() == {"environment": "prod", "protected": True}
    page = client.get("/admin/environments").get_data(as_text=True)
    assert re.search(r'data-environment="prod">\s*<td>prod</td>\s*<td data-protected="1"', page)
    assert (
        client.post("/admin/environments", data={"environment": "mars", "protected": "1"}).status_code == 400
    )
    db.execute("UPDATE deployments SET environment = 'prod' WHERE id = ?", (history["deployment_id"],))
    assert "data-protected-environment" in client.get(f"/deployments/{history['deployment_id']}").get_data(
        as_text=True
    )
