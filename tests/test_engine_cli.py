"""``flask sim-step``: the engine's step() on a fake clock, from the terminal."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from samosval.domain import builds as build_domain
from samosval.domain import requests as request_domain
from tests import factories


def test_it_steps_the_engine_from_the_command_line(runner, db, users):
    request_id = factories.make_request(db, owner_id=users["dana"], status="approved")
    operator = SimpleNamespace(id=users["oleg"], username="oleg", role="operator")
    build_id = build_domain.start_build(db, request_domain.get_request(db, request_id), operator, time.time())
    result = runner.invoke(args=["sim-step", "--seed", "4", "--seconds", "60", "--verbose"])
    assert result.exit_code == 0, result.output
    assert "600 step(s) over 60 fake second(s), seed 4:" in result.output
    assert "builds_finished: 1" in result.output
    status = db.execute("SELECT status FROM builds WHERE id = ?", (build_id,)).fetchone()[0]
    assert status in ("success", "failed")


@pytest.mark.parametrize("rate, outcome", [(1.0, "failed"), (0.0, "success")])
def test_it_runs_the_servers_odds(app, runner, db, users, rate, outcome):
    """The command builds its engine like the server does: the configured failure
    rate decides how the build ends."""
    app.config["SIM_BUILD_FAILURE_RATE"] = rate
    request_id = factories.make_request(db, owner_id=users["dana"], status="approved")
    operator = SimpleNamespace(id=users["oleg"], username="oleg", role="operator")
    build_id = build_domain.start_build(db, request_domain.get_request(db, request_id), operator, time.time())
    result = runner.invoke(args=["sim-step", "--seed", "4", "--seconds", "60"])
    assert result.exit_code == 0, result.output
    assert db.execute("SELECT status FROM builds WHERE id = ?", (build_id,)).fetchone()[0] == outcome


def test_it_refuses_a_bad_tick(runner, users):
    result = runner.invoke(args=["sim-step", "--tick", "0"])
    assert result.exit_code != 0 and "--tick" in result.output
