"""Live log streams through the app with ``REDIS_URL`` set (issue 15).

The stream tests of tests/test_sse.py run here again on the Redis state (rows in
this pass's database, live data in the session's redis-server under a prefix of the
test's own), so resume, ``missed``, ``reset``, caps and access re-checks keep their
meaning. Then what only a shared store does: two app instances on one database and
one Redis (two processes, as far as the state is concerned) show a viewer the same
lines under the same ids, a logout on one ends the stream on the other, and a Redis
that cannot be reached answers 503 with Retry-After, never a 500."""

from __future__ import annotations

import inspect
import itertools
import json
import os

import pytest

from samosval import create_app
from tests import conftest
from tests import test_sse as sse_tests
from tests.live import free_port
from tests.test_sse import Stream, append, line_ids

_numbers = itertools.count()


@pytest.fixture
def database_config(tmp_path, databases, redis_server):
    """The pass's database, and Redis under a prefix of this test's own."""
    config = databases.config(tmp_path)
    config["REDIS_URL"] = redis_server.url
    config["REDIS_PREFIX"] = f"redis-sse-{os.getpid()}-{next(_numbers)}:"
    yield config
    databases.discard(config["DATABASE"])


@pytest.fixture(autouse=True)
def close_states(app, request):
    """Stop each app's Redis reader and writer at the end of the test."""
    apps = [app]
    request.node.redis_apps = apps
    yield
    for app in apps:
        app.extensions["samosval"].state.close()


live = sse_tests.live

# The app-level stream tests of test_sse.py, on the Redis state. The PostgreSQL pass
# already runs test_sse.py itself with Redis: not twice there.
if not conftest.ON_POSTGRES:
    for _name, _test in inspect.getmembers(sse_tests, inspect.isfunction):
        if _name.startswith("test_") and {"live", "app", "client"} & set(inspect.signature(_test).parameters):
            globals()[_name] = _test


def second_app(app, request, tmp_path):
    """Another app on the same database and Redis prefix: another process, as far
    as the live state is concerned (its own reader, writer and registry)."""
    keys = ("TESTING", "SECRET_KEY", "DATABASE", "REDIS_URL", "REDIS_PREFIX", "CHARTJS_URL", "CHARTJS_SRI")
    other = create_app(
        {**{key: app.config[key] for key in keys}, "SIMULATOR_AUTOSTART": False},
        instance_path=str(tmp_path / "instance-2"),
    )
    other.test_client_class = conftest.CSRFClient
    request.node.redis_apps.append(other)
    return other


def open_stream(client, deployment_id, headers=None):
    response = client.get(
        f"/api/deployments/{deployment_id}/logs/stream", headers=headers or {}, buffered=False
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return Stream(response)


def test_a_viewer_of_another_process_gets_every_line_under_the_same_ids(app, auth, sample, request, tmp_path):
    app.config["SSE_HEARTBEAT_SECONDS"] = 0.05
    other = second_app(app, request, tmp_path)
    other.config["SSE_HEARTBEAT_SECONDS"] = 0.05
    deployment_id = sample["deployment_id"]
    logs = app.extensions["samosval"].state.runtime(deployment_id).logs  # the engine's process
    append(logs, 5)
    here = open_stream(auth.client_for("oleg"), deployment_id)
    there = open_stream(conftest.Auth(other).client_for("oleg"), deployment_id)
    append(logs, 20, start=5)
    got_here = here.read_until(lambda e: 25 in line_ids(e))
    got_there = there.read_until(lambda e: 25 in line_ids(e))
    assert line_ids(got_there) == list(range(1, 26))  # in order, no gap

    def ids(events):
        return [e["id"] for e in events if "id" in e]

    assert ids(got_there) == ids(got_here)
    # A viewer coming back to the other process resumes exactly after its last id.
    resumed = open_stream(
        conftest.Auth(other).client_for("dana"), deployment_id, headers={"Last-Event-ID": ids(got_here)[19]}
    )
    assert line_ids(resumed.read_until(lambda e: 25 in line_ids(e))) == [21, 22, 23, 24, 25]
    for stream in (here, there, resumed):
        stream.close()


def test_a_status_change_on_one_process_reaches_viewers_on_another(
    app, auth, sample, request, tmp_path, db, users
):
    from samosval.domain import deployments as deployment_domain

    app.config["SSE_HEARTBEAT_SECONDS"] = 0.05
    other = second_app(app, request, tmp_path)
    other.config["SSE_HEARTBEAT_SECONDS"] = 0.05
    stream = open_stream(conftest.Auth(other).client_for("dana"), sample["deployment_id"])
    stream.read_until(lambda e: stream.statuses())
    row = deployment_domain.get_deployment(db, sample["deployment_id"])
    state = app.extensions["samosval"].state
    deployment_domain.perform_action(
        db, state, row, sse_tests.as_user(db, users["oleg"]), "stop", sse_tests.T0
    )
    events = stream.read_until(lambda e: len(stream.statuses()) >= 2)
    assert stream.statuses()[-1]["status"] == "stopped"
    texts = [json.loads(e["data"])["text"] for e in events if "id" in e]
    assert texts[-1] == "Deployment stopped by oleg"  # the line before its status
    stream.close()


def test_a_logout_on_one_process_ends_the_stream_on_another(app, sample, users, request, tmp_path):
    app.config["SSE_HEARTBEAT_SECONDS"] = 30  # only the shared wake-up can end it quickly
    other = second_app(app, request, tmp_path)
    other.config["SSE_HEARTBEAT_SECONDS"] = 30
    browser = conftest.Auth(other).client_for("dana")
    stream = open_stream(browser, sample["deployment_id"])
    stream.read_until(lambda e: stream.statuses())
    same_browser = app.test_client()  # the same cookie, sent to the first process
    same_browser.set_cookie("session", browser.get_cookie("session").value)
    assert same_browser.post("/logout").status_code == 302
    events = stream.read_until(lambda e: any(x.get("event") == "end" for x in e), limit=50)
    assert json.loads(events[-1]["data"]) == {"reason": "logged_out"}
    assert stream.ended()


def test_stream_caps_count_the_streams_of_every_process(app, auth, sample, request, tmp_path):
    app.config["SSE_MAX_STREAMS_PER_USER"] = 2
    other = second_app(app, request, tmp_path)
    other.config["SSE_MAX_STREAMS_PER_USER"] = 2
    first = open_stream(auth.client_for("dana"), sample["deployment_id"])
    second = open_stream(conftest.Auth(other).client_for("dana"), sample["deployment_id"])
    refused = auth.client_for("dana").get(f"/api/deployments/{sample['deployment_id']}/logs/stream")
    assert refused.status_code == 429 and refused.headers["Retry-After"]
    second.close()
    open_stream(auth.client_for("dana"), sample["deployment_id"]).close()
    first.close()


def test_an_unreachable_redis_answers_503_with_retry_after_never_500(app, auth, sample):
    client = auth.client_for("oleg")
    assert client.get(f"/api/deployments/{sample['deployment_id']}/metrics").status_code == 200
    assert client.get("/healthz").get_json()["live"] == "redis"
    deployment_id = sample["deployment_id"]
    state = app.extensions["samosval"].state
    state.close()
    state.redis.connection_pool.reset()
    state.redis.connection_pool.connection_kwargs["port"] = free_port()  # Redis is away
    for url in (
        f"/api/deployments/{deployment_id}/logs/stream",
        f"/api/deployments/{deployment_id}/metrics",
        f"/api/v1/deployments/{deployment_id}/logs",
    ):
        response = client.get(url)
        assert response.status_code == 503, url
        assert response.headers["Retry-After"] and "error" in response.get_json()
    page = client.get(f"/deployments/{deployment_id}")
    assert page.status_code == 503 and page.headers["Retry-After"]
    assert client.get("/deployments").status_code == 200  # pages without live data are untouched
    assert state.open_stream_count() == 0  # the refused stream gave its slot back
    health = client.get("/healthz").get_json()  # (503 here only because no engine runs in tests)
    assert health["live"] == "redis unavailable" and "live" not in health.get("failing", [])


def test_logins_and_pages_work_while_redis_is_away(app, request, tmp_path, users):
    """The limiter falls back to this process's memory; nothing else needs Redis."""
    keys = ("TESTING", "SECRET_KEY", "DATABASE", "CHARTJS_URL", "CHARTJS_SRI")
    away = create_app(
        {
            **{key: app.config[key] for key in keys},
            "SIMULATOR_AUTOSTART": False,
            "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        },
        instance_path=str(tmp_path / "instance-away"),
    )
    away.test_client_class = conftest.CSRFClient
    request.node.redis_apps.append(away)
    client = away.test_client()
    try:
        assert (
            client.post("/login", data={"username": "oleg", "password": conftest.PASSWORD}).status_code == 302
        )
        assert client.get("/deployments").status_code == 200
        assert client.get("/", follow_redirects=True).status_code == 200
    finally:
        conftest.limiter.init_app(app)  # the limiter is one object: back to a reachable storage
