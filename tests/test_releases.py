"""Releases (issue 20): numbering, what each rollout records, outcomes, rollback and
pinning, protected environments, four eyes, expiry on a fake clock, rejection."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from samosval import permissions
from samosval.domain import Refused, approvals, environments
from samosval.domain import deployments as d
from samosval.domain import releases as r
from samosval.domain.digests import image_digest
from samosval.simulator.state import SimulationState
from tests import factories

ROLES = {
    "root": "admin",
    "alice": "admin",
    "oleg": "operator",
    "dana": "developer",
    "carl": "developer",
    "colin": "developer",
    "sam": "developer",
}
SHA1, SHA2 = "1" * 40, "2" * 40


def user(users, name):
    return SimpleNamespace(id=users[name], username=name, role=ROLES[name], is_authenticated=True)


@pytest.fixture
def state():
    return SimulationState()


def image_row(db, image_id):
    return db.execute("SELECT * FROM images WHERE id = ?", (image_id,)).fetchone()


def create(db, state, users, image_id, now=100.0, environment="dev", by="oleg"):
    form = {"name": f"billing-{environment}", "environment": environment, "replicas": "1", "ports": ""}
    return d.create_deployment(db, state, image_row(db, image_id), user(users, by), form, now)


def numbers(db, deployment_id):
    return [(row["number"], row["status"]) for row in r.list_releases(db, deployment_id)]


def deployment(db, deployment_id):
    return d.get_deployment(db, deployment_id)


def settle(db, state, deployment_id, now, outcome="running"):
    since = deployment(db, deployment_id)["status_since"]
    if outcome == "running":
        assert d.mark_running(db, state, deployment_id, since=since, now=now)
    else:
        assert d.mark_failed(db, state, deployment_id, "image pull back-off", since=since, now=now)


def webhook_restart(db, state, deployment_id, commit, now, actor_id=None):
    with d.transaction(db):
        outcome = d.restart_in_transaction(
            db, deployment_id, now, actor_id=actor_id, reason="commit", commit=commit
        )
    return outcome


def actions(db):
    return [row[0] for row in db.execute("SELECT action FROM audit_log ORDER BY id")]


# --- numbering and content ---------------------------------------------------------------


def test_creating_a_deployment_is_release_v1_with_the_image_and_its_digest(db, users, sample, state):
    deployment_id = create(db, state, users, sample["image_id"])
    (release,) = r.list_releases(db, deployment_id)
    image = image_row(db, sample["image_id"])
    assert (release["number"], release["status"], release["trigger_kind"], release["cause"]) == (
        1,
        "deploying",
        "user",
        "create",
    )
    assert release["image_tag"] == image["image_tag"] and release["image_digest"] == image["digest"]
    assert release["created_by"] == users["oleg"] and release["created_ts"] == 100.0
    assert release["config_version"] is None  # no configurations yet (issue 21 plugs in)
    assert deployment(db, deployment_id)["current_release_id"] == release["id"]


def test_each_rollout_gets_the_next_number_per_deployment(db, users, sample, state):
    first = create(db, state, users, sample["image_id"])
    second = create(db, state, users, sample["image_id"], environment="staging")
    settle(db, state, first, 101.0)
    webhook_restart(db, state, first, SHA1, 102.0)
    webhook_restart(db, state, first, SHA2, 103.0)
    assert [n for n, _s in numbers(db, first)] == [3, 2, 1]
    assert [n for n, _s in numbers(db, second)] == [1]
    newest = r.list_releases(db, first)[0]
    assert (newest["commit_sha"], newest["trigger_kind"], newest["cause"]) == (SHA2, "webhook", "commit")


def test_a_simulated_digest_is_stable_and_a_real_one_wins():
    assert image_digest("billing:1", 4) == image_digest("billing:1", 4)
    assert image_digest("billing:1", 4) != image_digest("billing:1", 5)
    assert image_digest("billing:1", 4).startswith("sha256:") and len(image_digest("billing:1", 4)) == 71
    assert image_digest("billing:1", 4, "sha256:" + "ab" * 32) == "sha256:" + "ab" * 32


def test_the_outcome_is_running_or_failed_with_the_reason(db, users, sample, state):
    deployment_id = create(db, state, users, sample["image_id"])
    settle(db, state, deployment_id, 105.0)
    assert numbers(db, deployment_id) == [(1, "running")]
    webhook_restart(db, state, deployment_id, SHA1, 106.0)
    settle(db, state, deployment_id, 110.0, outcome="failed")
    newest = r.list_releases(db, deployment_id)[0]
    assert (newest["status"], newest["failure_reason"]) == ("failed", "image pull back-off")
    assert newest["finished_at"] is not None


def test_a_restart_with_nothing_new_rolls_the_current_release_out_again(db, users, sample, state):
    deployment_id = create(db, state, users, sample["image_id"])
    settle(db, state, deployment_id, 101.0, outcome="failed")
    d.perform_action(db, state, deployment(db, deployment_id), user(users, "oleg"), "restart", 102.0)
    assert numbers(db, deployment_id) == [(1, "deploying")]
    assert r.list_releases(db, deployment_id)[0]["failure_reason"] is None


def test_a_deployment_from_before_releases_gets_v1_at_its_next_start(db, users, sample, state):
    deployment_id = sample["deployment_id"]  # a factory row: no release
    d.perform_action(db, state, deployment(db, deployment_id), user(users, "oleg"), "restart", 50.0)
    assert numbers(db, deployment_id) == [(1, "deploying")]
    assert deployment(db, deployment_id)["current_release_id"] is not None


def test_a_stop_during_a_rollout_fails_that_release_with_the_reason(db, users, sample, state):
    deployment_id = create(db, state, users, sample["image_id"])
    d.perform_action(db, state, deployment(db, deployment_id), user(users, "oleg"), "stop", 101.0)
    release = r.list_releases(db, deployment_id)[0]
    assert (release["status"], release["failure_reason"]) == ("failed", r.STOPPED)


def test_a_newer_rollout_abandons_one_still_in_progress(db, users, sample, state):
    deployment_id = create(db, state, users, sample["image_id"])
    webhook_restart(db, state, deployment_id, SHA1, 101.0)
    assert numbers(db, deployment_id) == [(2, "deploying"), (1, "failed")]
    assert r.list_releases(db, deployment_id)[1]["failure_reason"] == r.ABANDONED


def test_the_changes_since_the_previous_release(db, users, sample, state):
    deployment_id = create(db, state, users, sample["image_id"])
    settle(db, state, deployment_id, 101.0)
    webhook_restart(db, state, deployment_id, SHA1, 102.0)
    newest, first = r.list_releases(db, deployment_id)
    assert r.previous_release(db, newest)["id"] == first["id"]
    assert r.changes(first, newest) == [{"field": "commit", "before": first["commit_sha"], "after": SHA1}]
    assert r.previous_release(db, first) is None
    assert {c["field"] for c in r.changes(None, first)} == {"image", "digest"}


# --- rollback and pinning -------------------------------------------------------------------


def _two_releases(db, state, users, sample):
    deployment_id = create(db, state, users, sample["image_id"])
    settle(db, state, deployment_id, 101.0)
    webhook_restart(db, state, deployment_id, SHA1, 102.0)
    settle(db, state, deployment_id, 103.0)
    return deployment_id


def test_a_rollback_rolls_the_old_image_and_commit_out_as_a_new_release_and_pins(db, users, sample, state):
    deployment_id = _two_releases(db, state, users, sample)
    v1 = r.get_by_number(db, deployment_id, 1)
    release_id, pending = r.rollback(
        db, state, deployment(db, deployment_id), user(users, "dana"), "1", 200.0
    )
    assert not pending
    v3 = r.get_release(db, release_id)
    assert (v3["number"], v3["status"], v3["trigger_kind"], v3["rollback_of"]) == (
        3,
        "deploying",
        "rollback",
        1,
    )
    assert (v3["image_tag"], v3["image_digest"], v3["commit_sha"]) == (
        v1["image_tag"],
        v1["image_digest"],
        v1["commit_sha"],
    )
    assert r.label(v3) == "v3: rollback to v1"
    row = deployment(db, deployment_id)
    assert row["status"] == "deploying" and row["last_commit"] == v1["commit_sha"]
    assert row["current_release_id"] == release_id
    assert row["pinned_at"] is not None and row["pinned_by_name"] == "dana"
    audit = db.execute("SELECT * FROM audit_log WHERE action = 'deployment_rollback'").fetchone()
    assert (
        audit["user_id"] == users["dana"] and json.loads(audit["details"])["release"] == "v3: rollback to v1"
    )
    assert "v3: rollback to v1 by dana; the deployment is pinned" in [
        line.text for line in state.runtime(deployment_id).logs.snapshot()
    ]


@pytest.mark.parametrize(
    "name, allowed",
    [("oleg", True), ("alice", True), ("dana", True), ("carl", False), ("colin", False), ("sam", False)],
)
def test_whoever_may_restart_may_roll_back(db, users, sample, state, name, allowed):
    deployment_id = _two_releases(db, state, users, sample)
    row = deployment(db, deployment_id)
    assert permissions.can_rollback(user(users, name), row) == allowed
    assert permissions.can_rollback(user(users, name), row) == permissions.can_control_deployment(
        user(users, name), row, "restart"
    )
    if not allowed:
        with pytest.raises(Refused) as refused:
            r.rollback(db, state, row, user(users, name), "1", 200.0)
        assert refused.value.kind == "forbidden"


@pytest.mark.parametrize(
    "raw, kind",
    [
        ("", "invalid"),
        ("v1", "invalid"),
        ("1.5", "invalid"),
        (None, "invalid"),
        ("0", "invalid"),
        (str(2**63), "invalid"),  # beyond SQLite's integers: no 500
        ("9" * 30, "invalid"),
        ("9", "not_found"),
        ("2", "conflict"),
    ],
)
def test_a_rollback_to_no_such_or_the_current_release_is_refused(db, users, sample, state, raw, kind):
    deployment_id = _two_releases(db, state, users, sample)
    with pytest.raises(Refused) as refused:
        r.rollback(db, state, deployment(db, deployment_id), user(users, "oleg"), raw, 200.0)
    assert refused.value.kind == kind
    assert len(r.list_releases(db, deployment_id)) == 2


def test_only_a_release_that_ran_can_be_rolled_back_to(db, users, sample, state):
    deployment_id = create(db, state, users, sample["image_id"])
    settle(db, state, deployment_id, 101.0)
    webhook_restart(db, state, deployment_id, SHA1, 102.0)
    with pytest.raises(Refused) as refused:
        r.rollback(db, state, deployment(db, deployment_id), user(users, "oleg"), "1", 103.0)
    assert refused.value.kind == "conflict"  # v2 is rolling out: wait
    webhook_restart(db, state, deployment_id, SHA2, 104.0)  # v2 abandoned: it never ran
    settle(db, state, deployment_id, 105.0)
    with pytest.raises(Refused) as refused:
        r.rollback(db, state, deployment(db, deployment_id), user(users, "oleg"), "2", 106.0)
    assert refused.value.message == "Only a release that ran can be rolled back to."


def test_unpinning_lets_commits_restart_again_and_is_audited(db, users, sample, state):
    deployment_id = _two_releases(db, state, users, sample)
    r.rollback(db, state, deployment(db, deployment_id), user(users, "oleg"), "1", 200.0)
    with pytest.raises(Refused) as refused:
        r.unpin(db, state, deployment(db, deployment_id), user(users, "carl"), 201.0)
    assert refused.value.kind == "forbidden"
    r.unpin(db, state, deployment(db, deployment_id), user(users, "dana"), 201.0)
    assert deployment(db, deployment_id)["pinned_at"] is None
    assert actions(db)[-1] == "deployment_unpin"
    with pytest.raises(Refused) as refused:
        r.unpin(db, state, deployment(db, deployment_id), user(users, "dana"), 202.0)
    assert refused.value.kind == "conflict"


# --- protected environments and approvals ---------------------------------------------------------


def protect(db, users, environment="prod"):
    assert environments.set_protected(db, user(users, "alice"), environment, True, 1.0)


def test_nothing_is_protected_on_a_fresh_install_and_only_admins_protect(db, users):
    assert environments.protected_environments(db) == set()
    with pytest.raises(Refused) as refused:
        environments.set_protected(db, user(users, "oleg"), "prod", True, 1.0)
    assert refused.value.kind == "forbidden"
    with pytest.raises(Refused) as refused:
        environments.set_protected(db, user(users, "alice"), "moon", True, 1.0)
    assert refused.value.kind == "invalid"
    protect(db, users)
    assert not environments.set_protected(db, user(users, "alice"), "prod", True, 2.0)  # no change
    assert environments.is_protected(db, "prod") and not environments.is_protected(db, "dev")
    assert environments.set_protected(db, user(users, "alice"), "prod", False, 3.0)
    assert actions(db) == ["environment_protect", "environment_unprotect"]


def test_a_new_deployment_in_a_protected_environment_waits_stopped(db, users, sample, state):
    protect(db, users)
    deployment_id = create(db, state, users, sample["image_id"], environment="prod", by="alice")
    row = deployment(db, deployment_id)
    assert row["status"] == "stopped" and row["current_release_id"] is None and row["awaiting_release"]
    assert numbers(db, deployment_id) == [(1, "pending_approval")]
    assert d.offered_actions(user(users, "oleg"), row) == ["delete"]  # nothing to start yet
    with pytest.raises(Refused) as refused:
        d.perform_action(db, state, row, user(users, "oleg"), "start", 101.0)
    assert refused.value.kind == "conflict"
    assert "release_request" in actions(db)


def test_an_approval_by_someone_else_rolls_it_out(db, users, sample, state):
    protect(db, users)
    deployment_id = create(db, state, users, sample["image_id"], environment="prod", by="oleg")
    pending = r.list_releases(db, deployment_id)[0]
    with pytest.raises(Refused) as refused:  # four eyes: not the requester
        approvals.approve(db, state, pending, user(users, "oleg"), 101.0)
    assert refused.value.kind == "forbidden" and "someone else" in refused.value.message
    with pytest.raises(Refused) as refused:  # developers never decide
        approvals.approve(db, state, pending, user(users, "dana"), 101.0)
    assert refused.value.message == permissions.FORBIDDEN
    approvals.approve(db, state, pending, user(users, "alice"), 102.0)
    row = deployment(db, deployment_id)
    assert row["status"] == "deploying" and row["current_release_id"] == pending["id"]
    release = r.get_release(db, pending["id"])
    assert (release["status"], release["decided_by_name"]) == ("deploying", "alice")
    with pytest.raises(Refused) as refused:  # decided once
        approvals.approve(db, state, release, user(users, "root"), 103.0)
    assert refused.value.kind == "conflict"
    assert actions(db)[-1] == "release_approve"


def test_a_commit_in_a_protected_environment_leaves_the_running_release_running(db, users, sample, state):
    deployment_id = create(db, state, users, sample["image_id"], environment="prod")
    settle(db, state, deployment_id, 101.0)
    protect(db, users)
    release_id, pending = webhook_restart(db, state, deployment_id, SHA1, 102.0)
    assert pending
    row = deployment(db, deployment_id)
    assert row["status"] == "running" and row["last_commit"] != SHA1
    assert numbers(db, deployment_id) == [(2, "pending_approval"), (1, "running")]
    # A newer request replaces the older one: only the newest counts.
    newer_id, _ = webhook_restart(db, state, deployment_id, SHA2, 103.0)
    assert numbers(db, deployment_id) == [(3, "pending_approval"), (2, "cancelled"), (1, "running")]
    approvals.approve(db, state, r.get_release(db, newer_id), user(users, "oleg"), 104.0)
    assert deployment(db, deployment_id)["last_commit"] == SHA2


def test_a_rejection_needs_a_reason_and_changes_nothing_that_runs(db, users, sample, state):
    deployment_id = create(db, state, users, sample["image_id"], environment="prod")
    settle(db, state, deployment_id, 101.0)
    protect(db, users)
    release_id, _ = webhook_restart(db, state, deployment_id, SHA1, 102.0, actor_id=users["dana"])
    pending = r.get_release(db, release_id)
    for reason in ("", "   ", "x" * 501):
        with pytest.raises(Refused) as refused:
            approvals.reject(db, state, pending, user(users, "oleg"), reason, 103.0)
        assert refused.value.kind == "invalid"
    with pytest.raises(Refused):
        approvals.reject(db, state, pending, user(users, "dana"), "mine", 103.0)
    approvals.reject(db, state, pending, user(users, "oleg"), "  freeze   week ", 103.0)
    rejected = r.get_release(db, release_id)
    assert (rejected["status"], rejected["decision_reason"], rejected["decided_by_name"]) == (
        "rejected",
        "freeze week",
        "oleg",
    )
    row = deployment(db, deployment_id)
    assert (
        row["status"] == "running"
        and row["current_release_id"] == r.get_by_number(db, deployment_id, 1)["id"]
    )
    audit = db.execute("SELECT * FROM audit_log WHERE action = 'release_reject'").fetchone()
    assert json.loads(audit["details"])["reason"] == "freeze week"


def test_a_rollback_in_a_protected_environment_waits_and_pins_when_approved(db, users, sample, state):
    deployment_id = _two_releases(db, state, users, sample)
    db.execute("UPDATE deployments SET environment = 'prod' WHERE id = ?", (deployment_id,))
    protect(db, users)
    release_id, pending = r.rollback(
        db, state, deployment(db, deployment_id), user(users, "dana"), "1", 200.0
    )
    assert pending and deployment(db, deployment_id)["pinned_at"] is None
    assert deployment(db, deployment_id)["status"] == "running"
    approvals.approve(db, state, r.get_release(db, release_id), user(users, "oleg"), 201.0)
    row = deployment(db, deployment_id)
    assert row["pinned_at"] is not None and row["pinned_by_name"] == "dana"  # the requester's pin
    assert row["current_release_id"] == release_id


def test_pending_releases_expire_on_the_fake_clock_with_a_reason(db, users, sample, state):
    protect(db, users)
    deployment_id = create(db, state, users, sample["image_id"], now=1000.0, environment="prod")
    assert approvals.expire(db, state, 1000.0 + 24 * 3600 - 1, 24) == 0
    assert approvals.expire(db, state, 1000.0 + 24 * 3600 + 1, 24) == 1
    release = r.list_releases(db, deployment_id)[0]
    assert (release["status"], release["decision_reason"]) == ("expired", approvals.EXPIRED)
    assert actions(db)[-1] == "release_expire"
    assert approvals.expire(db, state, 1e12, 24) == 0  # once


def test_the_pending_list_shows_only_visible_deployments(db, users, sample, state):
    protect(db, users)
    create(db, state, users, sample["image_id"], environment="prod")
    other_request = factories.make_request(
        db, owner_id=users["sam"], status="approved", repo_url="https://github.com/acme/other.git"
    )
    other_image = factories.make_image(db, request_id=other_request, name="other")
    d.create_deployment(
        db,
        state,
        image_row(db, other_image),
        user(users, "oleg"),
        {"name": "other-prod", "environment": "prod", "replicas": "1", "ports": ""},
        100.0,
    )
    assert r.pending_count(db, user(users, "oleg")) == 2
    assert r.pending_count(db, user(users, "dana")) == 1
    assert r.pending_count(db, user(users, "colin")) == 1  # a collaborator sees it, cannot decide
    assert not permissions.can_see_approvals(user(users, "dana"))


@pytest.mark.parametrize(
    "requester, decider, allowed",
    [
        ("oleg", "oleg", False),
        ("oleg", "alice", True),
        ("dana", "oleg", True),
        ("dana", "dana", False),
        (None, "oleg", True),
        (None, "carl", False),
    ],
)
def test_four_eyes(users, requester, decider, allowed):
    release = {"created_by": users[requester] if requester else None}
    assert permissions.can_decide_release(user(users, decider), release) == allowed


def test_the_upgrade_gives_every_existing_deployment_its_v1(tmp_path):
    from samosval.db import connect as connect_db
    from samosval.db import init_db_if_needed
    from tests.test_migrations import v2_database

    old = tmp_path / "v2.sqlite3"
    v2_database(old)
    assert 6 in init_db_if_needed(str(old))["migrated_to"]
    db = connect_db(str(old))
    try:
        for deployment_id in (1, 7):
            (release,) = r.list_releases(db, deployment_id)
            assert (release["number"], release["status"], release["image_tag"]) == (1, "running", "api:v1")
            assert release["image_digest"] == image_digest("api:v1", 1)  # the old image had none
            assert d.get_deployment(db, deployment_id)["current_release_id"] == release["id"]
    finally:
        db.close()
