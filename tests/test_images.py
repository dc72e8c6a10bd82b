"""Image pages and creating a deployment from an image."""

from __future__ import annotations

import json

import pytest

from tests import factories

GOOD = {"name": "billing-staging", "environment": "staging", "replicas": "3", "ports": "8000:8000, 8001:8001"}


def deployments_count(db):
    return db.execute("SELECT COUNT(*) FROM deployments").fetchone()[0]


def test_it_lists_visible_images_newest_first_and_marks_the_newest_of_a_tag(auth, db, users, sample):
    rebuilt = factories.make_image(db, request_id=sample["request_id"], build_number=2)
    db.execute("UPDATE images SET digest = ? WHERE id = ?", ("sha256:" + "cd" * 32, rebuilt))
    other = factories.make_request(db, owner_id=users["sam"], image_name="secret", status="approved")
    hidden = factories.make_image(db, request_id=other, name="secret")
    html = auth.client_for("dana").get("/images").get_data(as_text=True)
    assert html.index(f'data-image-id="{rebuilt}"') < html.index(f'data-image-id="{sample["image_id"]}"')
    assert f'data-image-id="{hidden}"' not in html
    assert html.count('data-newest="1"') == 1
    row = html[html.index(f'data-image-id="{rebuilt}"') : html.index(f'data-image-id="{sample["image_id"]}"')]
    assert 'data-newest="1"' in row and "cdcdcdcdcdcd" in row
    html = auth.client_for("oleg").get("/images").get_data(as_text=True)
    assert f'data-image-id="{hidden}"' in html and html.count('data-newest="1"') == 2
    html = auth.client_for("oleg").get("/images?q=secret").get_data(as_text=True)
    assert f'data-image-id="{hidden}"' in html and f'data-image-id="{rebuilt}"' not in html
    html = auth.client_for("oleg").get("/images?q=SeCrEt").get_data(as_text=True)  # any case
    assert f'data-image-id="{hidden}"' in html and f'data-image-id="{rebuilt}"' not in html


def test_it_shows_an_image_with_its_deployments(auth, db, users, sample):
    client = auth.client_for("colin")
    html = client.get(f"/images/{sample['image_id']}").get_data(as_text=True)
    assert "billing-api:1.0.0" in html and "sha256:" + "ab" * 32 in html
    assert f'href="/deployments/{sample["deployment_id"]}"' in html
    assert 'data-newest="1"' in html
    # The hook's button follows the restart rule: the owner's, not a collaborator's.
    assert "data-simulate-commit" not in html
    assert "data-simulate-commit" in auth.client_for("dana").get(f"/images/{sample['image_id']}").get_data(
        as_text=True
    )
    assert 'data-form="create-deployment"' not in html  # developers do not deploy
    newer = factories.make_image(db, request_id=sample["request_id"], build_number=2)
    html = client.get(f"/images/{sample['image_id']}").get_data(as_text=True)
    assert f'data-newer="{newer}"' in html
    assert auth.client_for("sam").get(f"/images/{sample['image_id']}").status_code == 404
    assert auth.client_for("oleg").get("/images/424242").status_code == 404


def test_it_shows_the_deployment_form_to_staff(auth, sample):
    html = auth.client_for("oleg").get(f"/images/{sample['image_id']}").get_data(as_text=True)
    assert 'data-form="create-deployment"' in html and 'value="billing-api-dev"' in html


def test_it_creates_a_deployment_and_redirects_to_it(app, auth, db, users, sample):
    response = auth.client_for("oleg").post(f"/images/{sample['image_id']}/create_deployment", data=GOOD)
    row = db.execute("SELECT * FROM deployments ORDER BY id DESC LIMIT 1").fetchone()
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/deployments/{row['id']}")
    assert (row["name"], row["environment"], row["replicas"], row["ports"], row["status"]) == (
        "billing-staging",
        "staging",
        3,
        "8000:8000,8001:8001",
        "deploying",
    )
    assert row["created_by"] == users["oleg"] and row["next_step_at"] is None and row["status_since"]
    audit = db.execute("SELECT * FROM audit_log WHERE action = 'deployment_create'").fetchone()
    assert audit["target_id"] == row["id"] and json.loads(audit["details"])["image"] == "billing-api:1.0.0"
    logs = app.extensions["samosval"].state.runtime(row["id"]).logs
    assert logs.status == "deploying" and logs.snapshot()[0].level == "EVENT"


def test_it_accepts_a_deployment_without_ports(auth, db, sample):
    auth.client_for("alice").post(
        f"/images/{sample['image_id']}/create_deployment", data={**GOOD, "ports": "  "}
    )
    assert db.execute("SELECT ports FROM deployments ORDER BY id DESC LIMIT 1").fetchone()[0] is None


@pytest.mark.parametrize(
    "field, value",
    [
        ("name", ""),
        ("name", "x" * 81),
        ("name", "bad\x07name"),
        ("environment", "qa"),
        ("environment", ""),
        ("replicas", "0"),
        ("replicas", "21"),
        ("replicas", "two"),
        ("replicas", "1.5"),
        ("replicas", ""),
        ("ports", "8000"),
        ("ports", "0:80"),
        ("ports", "80:0"),
        ("ports", "70000:80"),
        ("ports", "80:65536"),
        ("ports", "8000:8000,8000:9000"),
        ("ports", "a:b"),
        ("ports", "8000:8000,"),
        ("ports", "-1:80"),
    ],
)
def test_it_rerenders_the_form_with_an_inline_error(auth, db, sample, field, value):
    before = deployments_count(db)
    response = auth.client_for("oleg").post(
        f"/images/{sample['image_id']}/create_deployment", data={**GOOD, field: value}
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert f'data-error-for="{field}"' in html
    assert html.count("data-error-for=") == 1
    assert 'value="billing-staging"' in html or field == "name"  # the other values are kept
    assert deployments_count(db) == before


@pytest.mark.parametrize("username, status", [("dana", 403), ("colin", 403), ("sam", 404)])
def test_it_refuses_deployments_by_developers(auth, db, sample, username, status):
    before = deployments_count(db)
    response = auth.client_for(username).post(f"/images/{sample['image_id']}/create_deployment", data=GOOD)
    assert response.status_code == status
    assert deployments_count(db) == before


def test_it_needs_the_csrf_token_to_deploy(auth, db, sample):
    before = deployments_count(db)
    response = auth.client_for("oleg").post(
        f"/images/{sample['image_id']}/create_deployment", data=GOOD, csrf=False
    )
    assert response.status_code == 400 and deployments_count(db) == before


def test_it_deploys_a_freshly_built_image_until_it_runs(auth, db, sample, engine, clock):
    engine.build_failure_rate = engine.deploy_failure_rate = 0
    client = auth.client_for("oleg")
    build_id = int(
        client.post(f"/requests/{sample['request_id']}/build").headers["Location"].rsplit("/", 1)[1]
    )
    for _ in range(100):
        engine.step(clock.advance(0.5))
    image_id = db.execute("SELECT image_id FROM builds WHERE id = ?", (build_id,)).fetchone()[0]
    location = client.post(f"/images/{image_id}/create_deployment", data=GOOD).headers["Location"]
    deployment_id = int(location.rsplit("/", 1)[1])
    for _ in range(20):
        engine.step(clock.advance(0.5))
    assert (
        db.execute("SELECT status FROM deployments WHERE id = ?", (deployment_id,)).fetchone()[0] == "running"
    )
    html = client.get(f"/images/{image_id}").get_data(as_text=True)
    assert f'data-deployment-id="{deployment_id}"' in html and 'data-status="running"' in html
    assert 'data-newest="1"' in html
