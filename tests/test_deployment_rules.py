"""Deployment rules: validation, which action fits which status, who may do it, and
what each action writes (status, flags, audit, lifecycle log lines)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from samosval import permissions
from samosval.db import transaction
from samosval.domain import Refused
from samosval.domain import deployments as d
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


def user(users, name):
    return SimpleNamespace(id=users[name], username=name, role=ROLES[name], is_authenticated=True)


@pytest.fixture
def state():
    return SimulationState()


def row(db, deployment_id):
    return d.get_deployment(db, deployment_id)


@pytest.mark.parametrize(
    "status, allowed",
    [
        ("deploying", {"stop", "delete"}),
        ("running", {"stop", "restart", "delete"}),
        ("stopped", {"start", "delete"}),
        ("failed", {"start", "restart", "delete"}),
    ],
)
def test_it_knows_which_action_fits_which_status(status, allowed):
    assert {a for a in ("start", "stop", "restart", "delete") if d.action_applies(status, a)} == allowed
    assert not d.action_applies(status, "explode")


@pytest.mark.parametrize("name", ["root", "alice", "oleg", "dana", "carl", "colin", "sam"])
@pytest.mark.parametrize("stopped_by_operator", [0, 1])
def test_it_lets_each_role_do_what_spec_3_2_allows(db, users, sample, name, stopped_by_operator):
    db.execute(
        "UPDATE deployments SET stopped_by_operator = ? WHERE id = ?",
        (stopped_by_operator, sample["deployment_id"]),
    )
    deployment = row(db, sample["deployment_id"])
    allowed = {
        a
        for a in ("start", "stop", "restart", "delete")
        if permissions.can_control_deployment(user(users, name), deployment, a)
    }
    if ROLES[name] in ("admin", "operator"):
        expected = {"start", "stop", "restart", "delete"}
    elif name == "dana":  # the owner of the request
        expected = {"stop"} if stopped_by_operator else {"start", "stop", "restart"}
    else:  # creator, collaborator, stranger: look at most, never act
        expected = set()
    assert allowed == expected


def test_it_marks_a_stop_by_an_operator_and_clears_it_on_start(db, users, sample, state):
    deployment_id = sample["deployment_id"]
    assert (
        d.perform_action(db, state, row(db, deployment_id), user(users, "oleg"), "stop", 100.0) == "stopped"
    )
    stopped = row(db, deployment_id)
    assert stopped["status"] == "stopped" and stopped["stopped_by_operator"] == 1
    assert not permissions.can_control_deployment(user(users, "dana"), stopped, "start")
    assert d.perform_action(db, state, stopped, user(users, "alice"), "start", 101.0) == "deploying"
    started = row(db, deployment_id)
    assert started["status"] == "deploying" and started["stopped_by_operator"] == 0
    assert started["next_step_at"] is None and started["status_since"] == 101.0
    logs = state.runtime(deployment_id).logs
    assert [(line.level, line.text) for line in logs.snapshot()] == [
        ("EVENT", "Deployment stopped by oleg"),
        ("EVENT", "Deployment started by alice"),
    ]
    assert logs.status == "deploying"
    actions = [r[0] for r in db.execute("SELECT action FROM audit_log ORDER BY id")]
    assert actions == ["deployment_stop", "deployment_start"]


def test_a_stop_by_the_owner_does_not_lock_them_out(db, users, sample, state):
    deployment_id = sample["deployment_id"]
    d.perform_action(db, state, row(db, deployment_id), user(users, "dana"), "stop", 100.0)
    stopped = row(db, deployment_id)
    assert stopped["stopped_by_operator"] == 0
    assert permissions.can_control_deployment(user(users, "dana"), stopped, "start")
    assert d.perform_action(db, state, stopped, user(users, "dana"), "start", 101.0) == "deploying"


def test_it_clears_needs_restart_on_restart(db, users, sample, state):
    deployment_id = sample["deployment_id"]
    db.execute("UPDATE deployments SET needs_restart = 1 WHERE id = ?", (deployment_id,))
    assert (
        d.perform_action(db, state, row(db, deployment_id), user(users, "dana"), "restart", 5.0)
        == "deploying"
    )
    restarted = row(db, deployment_id)
    assert restarted["needs_restart"] == 0 and restarted["status"] == "deploying"
    assert state.runtime(deployment_id).logs.snapshot()[-1].text == "Deployment restarted by dana"


def test_it_deletes_a_deployment_and_keeps_the_story_in_the_audit_log(db, users, sample, state):
    deployment_id = sample["deployment_id"]
    runtime = state.runtime(deployment_id)
    db.execute(
        "INSERT INTO alerts (alert_type, target_type, target_id, message, resolved, created_at) "
        "VALUES ('deployment_failed', 'deployment', ?, 'x', 0, '2026-01-01T00:00:00Z')",
        (deployment_id,),
    )
    assert (
        d.perform_action(db, state, row(db, deployment_id), user(users, "oleg"), "delete", 7.0) == "deleted"
    )
    assert row(db, deployment_id) is None
    assert state.existing(deployment_id) is None and runtime.logs.closed
    audit = db.execute("SELECT * FROM audit_log WHERE action = 'deployment_delete'").fetchone()
    details = json.loads(audit["details"])
    assert audit["user_id"] == users["oleg"] and audit["target_id"] == deployment_id
    assert details["name"] == "billing-dev" and details["image"] == "billing-api:1.0.0"
    assert db.execute("SELECT resolved FROM alerts").fetchone()[0] == 1


@pytest.mark.parametrize(
    "status, action",
    [
        ("stopped", "stop"),
        ("failed", "stop"),
        ("running", "start"),
        ("deploying", "start"),
        ("stopped", "restart"),
        ("deploying", "restart"),
    ],
)
def test_it_refuses_actions_that_make_no_sense_now(db, users, sample, state, status, action):
    db.execute("UPDATE deployments SET status = ? WHERE id = ?", (status, sample["deployment_id"]))
    with pytest.raises(Refused) as refused:
        d.perform_action(db, state, row(db, sample["deployment_id"]), user(users, "oleg"), action, 1.0)
    assert refused.value.kind == "conflict" and refused.value.status == 409
    assert refused.value.message == d.REFUSALS[action]
    assert row(db, sample["deployment_id"])["status"] == status
    assert db.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0] == 0
    assert state.existing(sample["deployment_id"]) is None


def test_it_checks_the_status_current_at_write_time(db, users, sample, state):
    stale = row(db, sample["deployment_id"])  # read while running
    db.execute("UPDATE deployments SET status = 'stopped' WHERE id = ?", (sample["deployment_id"],))
    with pytest.raises(Refused):
        d.perform_action(db, state, stale, user(users, "oleg"), "stop", 1.0)


def test_it_refuses_an_unknown_action(db, users, sample, state):
    with pytest.raises(Refused) as refused:
        d.perform_action(db, state, row(db, sample["deployment_id"]), user(users, "oleg"), "explode", 1.0)
    assert (refused.value.kind, refused.value.status) == ("invalid", 400)


def restart(db, state, deployment_id, now, *, actor_id=None, reason):
    """What the commit hook does: restart inside its transaction, log after the commit."""
    with transaction(db):
        restarted = d.restart_in_transaction(db, deployment_id, now, actor_id=actor_id, reason=reason)
    if restarted:
        d.restarted_event(state, deployment_id, now, reason)
    return restarted


def test_it_restarts_automatically_for_the_webhook(db, users, sample, state):
    deployment_id = sample["deployment_id"]
    db.execute("UPDATE deployments SET needs_restart = 1 WHERE id = ?", (deployment_id,))
    assert restart(
        db, state, deployment_id, 50.0, actor_id=users["carl"], reason="new commit abc1234 on main"
    )
    restarted = row(db, deployment_id)
    assert (restarted["status"], restarted["needs_restart"], restarted["status_since"]) == (
        "deploying",
        0,
        50.0,
    )
    logs = state.runtime(deployment_id).logs
    assert logs.snapshot()[-1].text == "Restarting: new commit abc1234 on main" and logs.status == "deploying"
    audit = db.execute("SELECT * FROM audit_log WHERE action = 'deployment_restart'").fetchone()
    assert audit["user_id"] == users["carl"] and json.loads(audit["details"])["automatic"] is True
    # Deploying again is fine (the rollout starts over); stopped, failed or gone is not.
    assert restart(db, state, deployment_id, 51.0, reason="another commit")
    for status in ("stopped", "failed"):
        db.execute("UPDATE deployments SET status = ? WHERE id = ?", (status, deployment_id))
        assert not restart(db, state, deployment_id, 52.0, reason="x")
    assert not restart(db, state, 999999, 52.0, reason="x")


@pytest.mark.parametrize(
    "ports, expected",
    [
        ("8000:8000", "8000:8000"),
        (" 8000:8000 , 8001:9001 ", "8000:8000,8001:9001"),
        ("1:65535", "1:65535"),
        ("80:8080,443:8080", "80:8080,443:8080"),
        ("", None),
    ],
)
def test_it_normalises_valid_ports(ports, expected):
    assert d.parse_ports(ports) == (expected, None)


def test_it_validates_the_whole_form_at_once():
    clean, errors = d.validate_deployment_form(
        {"name": " ", "environment": "qa", "replicas": "99", "ports": "1:1,1:2"}
    )
    assert set(errors) == {"name", "environment", "replicas", "ports"}
    clean, errors = d.validate_deployment_form(
        {"name": " web ", "environment": "prod", "replicas": "20", "ports": "443:8443"}
    )
    assert errors == {} and clean == {
        "name": "web",
        "environment": "prod",
        "replicas": 20,
        "ports": "443:8443",
    }


def test_it_writes_nothing_for_an_invalid_form(db, users, sample, state):
    from samosval.domain import ValidationError

    image = db.execute("SELECT * FROM images WHERE id = ?", (sample["image_id"],)).fetchone()
    with pytest.raises(ValidationError) as invalid:
        d.create_deployment(
            db, state, image, user(users, "oleg"), {"name": "x", "environment": "dev", "replicas": "0"}, 1.0
        )
    assert set(invalid.value.errors) == {"replicas"}
    assert db.execute("SELECT COUNT(*) FROM deployments").fetchone()[0] == 1
    assert db.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0] == 0


def test_it_offers_developers_only_their_own_actions(db, users, sample):
    other = factories.make_deployment(
        db, image_id=sample["image_id"], status="stopped", stopped_by_operator=1
    )
    assert d.offered_actions(user(users, "dana"), row(db, other)) == []
    assert d.offered_actions(user(users, "oleg"), row(db, other)) == ["start", "delete"]
    assert d.offered_actions(user(users, "dana"), row(db, sample["deployment_id"])) == ["stop", "restart"]


def test_it_gives_the_request_creator_not_the_deployer_as_created_by(db, users, sample):
    deployment = row(db, sample["deployment_id"])
    assert deployment["created_by"] == users["carl"] and deployment["deployed_by"] == users["oleg"]
    assert permissions.can_view_deployment(user(users, "carl"), deployment)


@pytest.mark.parametrize("name, action", [("colin", "stop"), ("carl", "restart"), ("dana", "delete")])
def test_the_command_itself_refuses_who_may_not_act(db, users, sample, state, name, action):
    """The domain asks the same rule as the buttons: no caller can skip it."""
    with pytest.raises(Refused) as refused:
        d.perform_action(db, state, row(db, sample["deployment_id"]), user(users, name), action, 1.0)
    assert refused.value.kind == "forbidden" and refused.value.status == 403
    assert row(db, sample["deployment_id"])["status"] == "running"
    assert db.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0] == 0


def test_only_staff_may_create_a_deployment_whoever_calls(db, users, sample, state):
    """The rule lives in the domain: the image page and the JSON API share it."""
    image = db.execute("SELECT * FROM images WHERE id = ?", (sample["image_id"],)).fetchone()
    before = db.execute("SELECT COUNT(*) FROM deployments").fetchone()[0]
    with pytest.raises(Refused) as refused:
        d.create_deployment(
            db,
            state,
            image,
            user(users, "dana"),
            {"name": "mine", "environment": "dev", "replicas": "1"},
            1.0,
        )
    assert refused.value.kind == "forbidden"
    assert db.execute("SELECT COUNT(*) FROM deployments").fetchone()[0] == before
