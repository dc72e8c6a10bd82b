"""Direct-SQL factories for test data, so each area's tests can set up the rows they
need without going through another area's forms. Everything is committed."""

from __future__ import annotations

from samosval.domain.repos import normalize_repo_url, split_logins

NOW = "2026-01-01T00:00:00Z"


def make_request(
    db,
    *,
    owner_id,
    created_by=None,
    status="draft",
    collaborators="",
    image_name="billing-api",
    repo_url="https://github.com/acme/billing.git",
    repo_branch="main",
    update_mode="continuous",
    target_commit=None,
    base_image="python:3.12-slim",
    run_commands="pip install -r requirements.txt",
    entrypoint="gunicorn app:app",
    ram_mb=512,
    vcpu=1.0,
    version_tag="1.0.0",
) -> int:
    request_id = db.execute(
        "INSERT INTO image_requests (image_name, repo_url, repo_branch, update_mode, target_commit, "
        "base_image, run_commands, entrypoint, dockerfile_content, ram_mb, vcpu, version_tag, owner_id, "
        "status, collaborators, created_by, created_at, updated_at, repo_key) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            image_name,
            repo_url,
            repo_branch,
            update_mode,
            target_commit,
            base_image,
            run_commands,
            entrypoint,
            ram_mb,
            vcpu,
            version_tag,
            owner_id,
            status,
            collaborators,
            created_by or owner_id,
            NOW,
            NOW,
            normalize_repo_url(repo_url),
        ),
    ).lastrowid
    for login in split_logins(collaborators):
        db.execute(
            "INSERT INTO request_collaborators (request_id, username) VALUES (?, ?)", (request_id, login)
        )
    return request_id


def make_image(db, *, request_id, name="billing-api", version="1.0.0", build_number=1) -> int:
    return db.execute(
        "INSERT INTO images (request_id, name, version, image_tag, created_at, digest, build_number) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (request_id, name, version, f"{name}:{version}", NOW, "sha256:" + "ab" * 32, build_number),
    ).lastrowid


def make_build(db, *, request_id, built_by, status="queued", image_id=None) -> int:
    return db.execute(
        "INSERT INTO builds (request_id, image_id, status, build_log, built_by, created_at, updated_at) "
        "VALUES (?, ?, ?, '', ?, ?, ?)",
        (request_id, image_id, status, built_by, NOW, NOW),
    ).lastrowid


def make_deployment(
    db,
    *,
    image_id,
    status="running",
    name="billing-dev",
    environment="dev",
    replicas=1,
    ports="8000:8000",
    stopped_by_operator=0,
    needs_restart=0,
    created_by=None,
) -> int:
    return db.execute(
        "INSERT INTO deployments (image_id, name, environment, status, replicas, ports, "
        "stopped_by_operator, needs_restart, created_at, updated_at, created_by) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            image_id,
            name,
            environment,
            status,
            replicas,
            ports,
            stopped_by_operator,
            needs_restart,
            NOW,
            NOW,
            created_by,
        ),
    ).lastrowid


def make_release(
    db,
    *,
    deployment_id,
    number,
    status="running",
    created_by=None,
    commit=None,
    trigger="user",
    cause="create",
    image_tag="billing-api:1.0.0",
    created_ts=0.0,
    current=False,
    rollback_of=None,
) -> int:
    """A release row; ``current`` makes it the deployment's current release."""
    release_id = db.execute(
        "INSERT INTO releases (deployment_id, number, status, image_id, image_tag, image_digest, commit_sha, "
        "trigger_kind, cause, rollback_of, created_at, created_ts, created_by) "
        "VALUES (?, ?, ?, (SELECT image_id FROM deployments WHERE id = ?), ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            deployment_id,
            number,
            status,
            deployment_id,
            image_tag,
            "sha256:" + f"{number:02d}" * 32,
            commit,
            trigger,
            cause,
            rollback_of,
            NOW,
            created_ts,
            created_by,
        ),
    ).lastrowid
    if current:
        db.execute(
            "UPDATE deployments SET current_release_id = ?, last_commit = ? WHERE id = ?",
            (release_id, commit, deployment_id),
        )
    return release_id
