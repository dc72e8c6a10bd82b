"""GET /api/deployments/<id>/metrics: the arrays Chart.js draws, ?since=, visibility."""

from __future__ import annotations

import pytest

T0 = 1_800_000_000.0


def url(deployment_id, query=""):
    return f"/api/deployments/{deployment_id}/metrics{query}"


@pytest.fixture
def series(app, sample):
    metrics = app.extensions["samosval"].state.runtime(sample["deployment_id"]).metrics
    for n in range(10):
        metrics.append(T0 + n, 10.0 + n + 0.123, 50.0 - n + 0.456)
    return metrics


def test_it_returns_arrays_for_chart_js(auth, sample, series):
    body = auth.client_for("oleg").get(url(sample["deployment_id"])).get_json()
    assert body["labels"][:2] == ["08:00:00", "08:00:01"]
    assert body["ts"] == [T0 + n for n in range(10)]
    assert body["cpu"][:3] == [10.1, 11.1, 12.1]
    assert body["ram"][:3] == [50.5, 49.5, 48.5]
    assert body["latest"] == {"ts": T0 + 9, "label": "08:00:09", "cpu": 19.1, "ram": 41.5}
    assert body["status"] == "running"


def test_it_returns_only_points_after_since(auth, sample, series):
    body = auth.client_for("dana").get(url(sample["deployment_id"], f"?since={T0 + 7}")).get_json()
    assert body["ts"] == [T0 + 8, T0 + 9]
    assert len(body["labels"]) == len(body["cpu"]) == len(body["ram"]) == 2
    empty = auth.client_for("dana").get(url(sample["deployment_id"], f"?since={T0 + 9}")).get_json()
    assert empty["ts"] == [] and empty["latest"]["ts"] == T0 + 9


@pytest.mark.parametrize("since", ["yesterday", "nan", "inf", "1e999"])
def test_it_refuses_a_since_that_is_not_a_timestamp(auth, sample, since):
    response = auth.client_for("oleg").get(url(sample["deployment_id"], f"?since={since}"))
    assert response.status_code == 400
    assert "error" in response.get_json()


def test_it_answers_empty_arrays_before_the_first_point(auth, sample):
    body = auth.client_for("oleg").get(url(sample["deployment_id"])).get_json()
    assert body["labels"] == body["cpu"] == body["ram"] == body["ts"] == []
    assert body["latest"] is None


def test_it_keeps_at_most_900_points(app, auth, sample):
    metrics = app.extensions["samosval"].state.runtime(sample["deployment_id"]).metrics
    for n in range(1000):
        metrics.append(T0 + n, 1.0, 2.0)
    body = auth.client_for("oleg").get(url(sample["deployment_id"])).get_json()
    assert len(body["ts"]) == 900
    assert body["ts"][0] == T0 + 100


def test_it_serves_what_the_engine_measures(auth, sample, engine, clock):
    start = clock.now
    for _ in range(5):
        engine.step(clock.advance(1))
    body = auth.client_for("dana").get(url(sample["deployment_id"])).get_json()
    assert len(body["ts"]) >= 4
    assert all(start < ts <= clock.now for ts in body["ts"])
    assert all(0 <= value <= 100 for value in body["cpu"] + body["ram"])


@pytest.mark.parametrize(
    "username, status",
    [
        ("root", 200),
        ("alice", 200),
        ("oleg", 200),
        ("dana", 200),
        ("colin", 200),
        ("sam", 404),
        ("joanna", 404),
    ],
)
def test_it_applies_the_deployment_page_visibility(auth, sample, series, username, status):
    response = auth.client_for(username).get(url(sample["deployment_id"]))
    assert response.status_code == status
    if status != 200:
        assert response.get_json() == {"error": response.get_json()["error"]}


def test_it_answers_anonymous_callers_with_401_json(client, sample):
    response = client.get(url(sample["deployment_id"]))
    assert response.status_code == 401
    assert "error" in response.get_json()


def test_it_is_not_cached(auth, sample):
    response = auth.client_for("oleg").get(url(sample["deployment_id"]))
    assert response.headers["Cache-Control"] == "no-store"
