"""Failures explain themselves: the reason at the top of the page, in the viewer's
language, said to be simulated; empty charts say why they are empty (issue 19)."""

from __future__ import annotations

from samosval.domain import builds as build_domain
from samosval.domain import deployments as deployment_domain
from tests import factories


def test_a_failed_deployment_shows_its_reason_at_the_top_and_says_it_was_simulated(app, auth, db, sample):
    deployment_id = sample["deployment_id"]
    state = app.extensions["samosval"].state
    db.execute("UPDATE deployments SET status = 'deploying' WHERE id = ?", (deployment_id,))
    db.commit()
    assert deployment_domain.mark_failed(
        db, state, deployment_id, "port already allocated on the node", now=1_800_000_000.0
    )
    html = auth.client_for("oleg").get(f"/deployments/{deployment_id}").get_data(as_text=True)
    top = html.index("data-failure-reason")
    assert top < html.index('data-card="details"') < html.index('data-card="logs"')
    box = html[top : html.index("</div>", top)]
    assert "Развёртывание упало." in box and "port already allocated on the node" in box
    assert "Это симуляция" in box
    assert "Метрик нет: развёртывание ещё не работало" in html
    english = auth.client_for("oleg")
    english.post("/lang", data={"lang": "en", "next": "/"})
    html = english.get(f"/deployments/{deployment_id}").get_data(as_text=True)
    assert "failed: port already allocated on the node" in html and "Simulated:" in html


def test_a_running_deployment_has_no_failure_box(auth, sample):
    html = auth.client_for("oleg").get(f"/deployments/{sample['deployment_id']}").get_data(as_text=True)
    assert "data-failure-reason" not in html


def test_a_failed_build_shows_its_error_and_says_it_was_simulated(auth, db, users, sample):
    build_id = factories.make_build(
        db, request_id=sample["request_id"], built_by=users["oleg"], status="building"
    )
    assert build_domain.finish_failure(
        db, build_id, "", "step 3/7: npm ERR! code ELIFECYCLE", now=1_800_000_000.0
    )
    html = auth.client_for("oleg").get(f"/builds/{build_id}").get_data(as_text=True)
    box = html[html.index('id="build-error-box"') :]
    assert box.index("npm ERR! code ELIFECYCLE") < box.index("Это симуляция") < box.index("</div>")
    assert 'id="build-error-box" hidden' not in html
