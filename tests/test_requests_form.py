"""Creating and editing image requests: validation, Dockerfile, collaborators,
needs_restart on a base image change, and the audit rows."""

from __future__ import annotations

import html
import json

import pytest

from tests import factories


def valid_form(**overrides) -> dict:
    form = {
        "image_name": "billing-api",
        "repo_url": "https://github.com/Acme/Billing.git",
        "repo_branch": "release",
        "update_mode": "continuous",
        "target_commit": "",
        "base_image": "python:3.12-slim",
        "run_commands": "pip install -r requirements.txt\n\n  python -m compileall .  ",
        "entrypoint": "gunicorn app:app",
        "ram_mb": "512",
        "vcpu": "1.5",
        "version_tag": "2.0.1",
        "collaborators": "Colin, sam,colin",
        "owner": "dana",
    }
    form.update(overrides)
    return form


def count_requests(db) -> int:
    return db.execute("SELECT COUNT(*) FROM image_requests").fetchone()[0]


def audit_rows(db, action):
    return db.execute("SELECT * FROM audit_log WHERE action = ? ORDER BY id", (action,)).fetchall()


def collaborator_rows(db, request_id):
    return sorted(
        r[0]
        for r in db.execute("SELECT username FROM request_collaborators WHERE request_id = ?", (request_id,))
    )


# --- create ----------------------------------------------------------------------


def test_it_prefills_the_owner_with_the_developer_and_sane_defaults(auth):
    page = auth.client_for("carl").get("/requests/new").get_data(as_text=True)
    assert 'name="owner" value="carl"' in page
    assert 'name="repo_branch" value="main"' in page
    assert 'data-action="add-collaborator"' in page
    assert 'list="owner-options"' in page and 'list="collaborator-options"' in page


def test_it_leaves_the_owner_empty_for_an_operator(auth):
    page = auth.client_for("oleg").get("/requests/new").get_data(as_text=True)
    assert 'name="owner" value=""' in page


def test_it_creates_a_draft_with_everything_derived(auth, db, users):
    response = auth.client_for("carl").post("/requests/new", data=valid_form())
    assert response.status_code == 302
    row = db.execute("SELECT * FROM image_requests").fetchone()
    assert response.headers["Location"].endswith(f"/requests/{row['id']}")
    assert row["status"] == "draft"
    assert row["created_by"] == users["carl"] and row["owner_id"] == users["dana"]
    assert row["collaborators"] == "colin, sam"
    assert collaborator_rows(db, row["id"]) == ["colin", "sam"]
    assert row["repo_key"] == "github.com/acme/billing"
    assert row["run_commands"] == "pip install -r requirements.txt\npython -m compileall ."
    assert row["vcpu"] == 1.5 and row["ram_mb"] == 512
    assert row["dockerfile_content"] == (
        "FROM python:3.12-slim\nWORKDIR /app\nCOPY . /app\n"
        "RUN pip install -r requirements.txt\nRUN python -m compileall .\n"
        "ENTRYPOINT gunicorn app:app\n"
    )
    [entry] = audit_rows(db, "request_create")
    assert entry["user_id"] == users["carl"] and entry["target_type"] == "request"
    assert entry["target_id"] == row["id"]
    assert json.loads(entry["details"])["status"] == "draft"


def test_it_shows_the_generated_dockerfile_on_the_request_page(auth, db):
    auth.client_for("carl").post("/requests/new", data=valid_form(entrypoint=""))
    request_id = db.execute("SELECT id FROM image_requests").fetchone()[0]
    page = auth.client_for("carl").get(f"/requests/{request_id}").get_data(as_text=True)
    assert '<pre class="dockerfile" data-dockerfile>FROM python:3.12-slim' in page
    assert "RUN python -m compileall .\n</pre>" in page  # no ENTRYPOINT line without a command


def test_it_defaults_the_branch_to_main_and_accepts_a_static_commit(auth, db):
    form = valid_form(
        repo_branch="",
        update_mode="static",
        target_commit="ABCDEF1",
        repo_url="git@gitlab.example.com:team/app.git",
        collaborators="",
    )
    assert auth.client_for("dana").post("/requests/new", data=form).status_code == 302
    row = db.execute("SELECT * FROM image_requests").fetchone()
    assert row["repo_branch"] == "main"
    assert row["target_commit"] == "abcdef1"
    assert row["repo_key"] == "gitlab.example.com/team/app"
    assert row["collaborators"] is None and collaborator_rows(db, row["id"]) == []


@pytest.mark.parametrize(
    "field, value",
    [
        ("image_name", ""),
        ("image_name", "Billing API"),
        ("image_name", "-billing"),
        ("repo_url", ""),
        ("repo_url", "ftp://example.com/repo.git"),
        ("repo_url", "not a url"),
        ("repo_url", "https://github.com"),
        ("repo_url", "/srv/git/repo"),
        ("repo_branch", "a..b"),
        ("repo_branch", "with space"),
        ("repo_branch", "-rf"),
        ("repo_branch", "feature/"),
        ("update_mode", "sometimes"),
        ("update_mode", ""),
        ("target_commit", "xyz1234"),
        ("target_commit", "abc12"),
        ("target_commit", "a" * 41),
        ("base_image", ""),
        ("base_image", "python 3"),
        ("base_image", "python\nRUN curl evil"),
        ("run_commands", "\n".join(["echo hi"] * 101)),
        ("entrypoint", "run\x01me"),  # a NUL is refused before any field: tests/test_nul_input.py
        ("entrypoint", "x" * 501),
        ("ram_mb", ""),
        ("ram_mb", "abc"),
        ("ram_mb", "0"),
        ("ram_mb", "-5"),
        ("ram_mb", "1.5"),
        ("ram_mb", "999999"),
        ("vcpu", ""),
        ("vcpu", "abc"),
        ("vcpu", "0"),
        ("vcpu", "-1"),
        ("vcpu", "nan"),
        ("vcpu", "inf"),
        ("vcpu", "65"),
        ("version_tag", ""),
        ("version_tag", "1.0 beta"),
        ("version_tag", "v1:latest"),
        ("collaborators", "colin, nosuchuser"),
        ("owner", ""),
        ("owner", "nosuchuser"),
        ("owner", "oleg"),
        ("owner", "alice"),
        ("owner", "bob"),
    ],
)
def test_it_refuses_a_bad_field_keeping_every_value(auth, db, field, value):
    form = valid_form(**{field: value})
    response = auth.client_for("carl").post("/requests/new", data=form)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert f'data-error-for="{field}"' in page
    assert page.count('data-error-for="') == 1, "only the bad field is marked"
    for name, kept in form.items():
        if name == "run_commands":
            assert html.escape(kept.strip("\n "), quote=False) in page
        elif name != "update_mode" and "\x01" not in kept and "\n" not in kept:
            assert f'value="{html.escape(kept.strip())}"' in page, name
    assert count_requests(db) == 0
    assert audit_rows(db, "request_create") == []


def test_it_requires_a_commit_in_static_mode(auth, db):
    response = auth.client_for("carl").post(
        "/requests/new", data=valid_form(update_mode="static", target_commit="")
    )
    assert response.status_code == 400
    assert 'data-error-for="target_commit"' in response.get_data(as_text=True)
    assert count_requests(db) == 0


def test_it_lists_the_unknown_collaborators(auth):
    page = (
        auth.client_for("carl")
        .post("/requests/new", data=valid_form(collaborators="colin, ghost, <b>x</b>"))
        .get_data(as_text=True)
    )
    assert "ghost, &lt;b&gt;x&lt;/b&gt;" in page


def test_it_keeps_a_percent_sign_in_a_refused_value(auth):
    response = auth.client_for("carl").post("/requests/new", data=valid_form(collaborators="50%"))
    assert response.status_code == 400
    assert "50%" in response.get_data(as_text=True)


def test_it_refuses_a_post_without_csrf(auth, db):
    response = auth.client_for("carl").post("/requests/new", data=valid_form(), csrf=False)
    assert response.status_code == 400
    assert count_requests(db) == 0


def test_it_sends_anonymous_users_to_the_login(client):
    response = client.get("/requests/new")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


# --- edit ------------------------------------------------------------------------


def test_it_prefills_the_edit_form(auth, db, users):
    request_id = factories.make_request(
        db, owner_id=users["dana"], created_by=users["carl"], collaborators="colin", vcpu=0.5
    )
    page = auth.client_for("carl").get(f"/requests/{request_id}/edit").get_data(as_text=True)
    assert 'name="owner" value="dana"' in page
    assert 'name="vcpu" value="0.5"' in page
    assert 'name="collaborators" value="colin"' in page
    assert f'action="/requests/{request_id}/edit"' in page


def test_it_saves_an_edit_and_audits_the_changed_fields(auth, db, users):
    request_id = factories.make_request(
        db, owner_id=users["dana"], created_by=users["carl"], collaborators="colin"
    )
    form = valid_form(
        image_name="billing-api",
        repo_url="https://github.com/acme/billing.git",
        repo_branch="main",
        base_image="python:3.12-slim",
        run_commands="pip install -r requirements.txt",
        entrypoint="gunicorn app:app",
        ram_mb="1024",
        vcpu="1",
        version_tag="1.0.0",
        collaborators="sam",
        owner="carl",
    )
    response = auth.client_for("carl").post(f"/requests/{request_id}/edit", data=form)
    assert response.status_code == 302
    row = db.execute("SELECT * FROM image_requests WHERE id = ?", (request_id,)).fetchone()
    assert row["ram_mb"] == 1024 and row["owner_id"] == users["carl"]
    assert row["collaborators"] == "sam" and collaborator_rows(db, request_id) == ["sam"]
    assert row["dockerfile_content"].startswith("FROM python:3.12-slim\n")
    assert row["updated_at"] != factories.NOW
    [entry] = audit_rows(db, "request_edit")
    details = json.loads(entry["details"])
    assert sorted(details["fields"]) == ["collaborators", "owner", "ram_mb"]
    assert details["changes"]["owner"] == {"old": "dana", "new": "carl"}
    assert details["changes"]["ram_mb"] == {"old": 512, "new": 1024}
    # colin is no longer a collaborator, so the request disappears for him
    assert auth.client_for("colin").get(f"/requests/{request_id}").status_code == 404


def test_it_writes_nothing_when_nothing_changed(auth, db, users):
    request_id = factories.make_request(
        db, owner_id=users["dana"], created_by=users["carl"], collaborators="colin"
    )
    form = valid_form(
        repo_url="https://github.com/acme/billing.git",
        repo_branch="main",
        run_commands="pip install -r requirements.txt",
        vcpu="1",
        ram_mb="512",
        version_tag="1.0.0",
        collaborators="colin",
    )
    auth.client_for("carl").post(f"/requests/{request_id}/edit", data=form)
    row = db.execute("SELECT * FROM image_requests WHERE id = ?", (request_id,)).fetchone()
    assert row["updated_at"] == factories.NOW
    assert row["dockerfile_content"] is not None  # still regenerated for an old row
    assert audit_rows(db, "request_edit") == []


@pytest.mark.parametrize("status", ["submitted", "in_review", "approved"])
def test_it_refuses_a_developer_edit_outside_draft_and_rejected(auth, db, users, status):
    request_id = factories.make_request(db, owner_id=users["dana"], created_by=users["carl"], status=status)
    for login in ("carl", "dana"):
        client = auth.client_for(login)
        assert client.get(f"/requests/{request_id}/edit").status_code == 403
        assert client.post(f"/requests/{request_id}/edit", data=valid_form()).status_code == 403
        page = client.get(f"/requests/{request_id}").get_data(as_text=True)
        assert 'data-action="edit"' not in page
    assert db.execute("SELECT image_name, version_tag FROM image_requests").fetchone()[:] == (
        "billing-api",
        "1.0.0",
    )
    assert audit_rows(db, "request_edit") == []


@pytest.mark.parametrize("status", ["draft", "rejected"])
def test_it_lets_the_creator_and_owner_edit_a_draft_or_rejected_request(auth, db, users, status):
    request_id = factories.make_request(db, owner_id=users["dana"], created_by=users["carl"], status=status)
    for login, tag in (("carl", "1.1"), ("dana", "1.2")):
        response = auth.client_for(login).post(
            f"/requests/{request_id}/edit", data=valid_form(version_tag=tag)
        )
        assert response.status_code == 302
        assert db.execute("SELECT version_tag FROM image_requests").fetchone()[0] == tag


def test_it_refuses_a_collaborator_edit(auth, db, users):
    request_id = factories.make_request(
        db, owner_id=users["dana"], created_by=users["carl"], collaborators="colin"
    )
    assert auth.client_for("colin").post(f"/requests/{request_id}/edit", data=valid_form()).status_code == 403


def test_it_lets_an_operator_correct_an_approved_request(auth, db, users):
    request_id = factories.make_request(
        db, owner_id=users["dana"], created_by=users["carl"], status="approved"
    )
    response = auth.client_for("oleg").post(f"/requests/{request_id}/edit", data=valid_form(ram_mb="2048"))
    assert response.status_code == 302
    row = db.execute("SELECT ram_mb, status FROM image_requests").fetchone()
    assert row[:] == (2048, "approved")
    [entry] = audit_rows(db, "request_edit")
    assert entry["user_id"] == users["oleg"]


def test_it_rerenders_an_invalid_edit_and_writes_nothing(auth, db, users):
    request_id = factories.make_request(db, owner_id=users["dana"], created_by=users["carl"])
    response = auth.client_for("carl").post(
        f"/requests/{request_id}/edit", data=valid_form(ram_mb="0", image_name="renamed")
    )
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert 'data-error-for="ram_mb"' in page and 'value="renamed"' in page
    assert db.execute("SELECT image_name FROM image_requests").fetchone()[0] == "billing-api"
    assert audit_rows(db, "request_edit") == []


# --- base image change ---------------------------------------------------------------


def _edit_form_for_sample(**overrides):
    return valid_form(
        **{
            "image_name": "billing-api",
            "repo_url": "https://github.com/acme/billing.git",
            "repo_branch": "main",
            "run_commands": "pip install -r requirements.txt",
            "ram_mb": "512",
            "vcpu": "1",
            "version_tag": "1.0.0",
            "collaborators": "colin",
            **overrides,
        }
    )


def test_it_marks_deployments_for_restart_when_the_base_image_changes(auth, db, users, sample):
    stopped = factories.make_deployment(
        db, image_id=sample["image_id"], status="stopped", name="billing-stopped"
    )
    other_request = factories.make_request(db, owner_id=users["sam"], status="approved")
    other_image = factories.make_image(db, request_id=other_request, name="other")
    untouched = factories.make_deployment(db, image_id=other_image, name="other-dev")
    response = auth.client_for("oleg").post(
        f"/requests/{sample['request_id']}/edit", data=_edit_form_for_sample(base_image="python:3.13-slim")
    )
    assert response.status_code == 302
    flags = dict(db.execute("SELECT id, needs_restart FROM deployments").fetchall())
    assert flags == {sample["deployment_id"]: 1, stopped: 1, untouched: 0}
    details = json.loads(audit_rows(db, "request_edit")[0]["details"])
    assert details["changes"]["base_image"] == {"old": "python:3.12-slim", "new": "python:3.13-slim"}
    assert details["needs_restart_marked"] == 2
    dockerfile = db.execute(
        "SELECT dockerfile_content FROM image_requests WHERE id = ?", (sample["request_id"],)
    ).fetchone()[0]
    assert dockerfile.startswith("FROM python:3.13-slim\n")


def test_it_leaves_deployments_alone_when_the_base_image_stays(auth, db, sample):
    auth.client_for("oleg").post(
        f"/requests/{sample['request_id']}/edit", data=_edit_form_for_sample(ram_mb="1024")
    )
    assert db.execute("SELECT needs_restart FROM deployments").fetchone()[0] == 0
    assert "needs_restart_marked" not in json.loads(audit_rows(db, "request_edit")[0]["details"])
