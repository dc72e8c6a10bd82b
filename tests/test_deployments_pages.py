"""The deployment list and detail pages, the action routes for each persona, and the
log download."""

from __future__ import annotations

import re

import pytest

from tests import factories

T0 = 1_800_000_000.0


def detail(deployment_id):
    return f"/deployments/{deployment_id}"


def action(deployment_id, name):
    return f"/deployments/{deployment_id}/{name}"


def status_of(db, deployment_id):
    row = db.execute(
        "SELECT status, stopped_by_operator FROM deployments WHERE id = ?", (deployment_id,)
    ).fetchone()
    return tuple(row) if row else None


def buttons(html: str) -> list[str]:
    return re.findall(r'data-deployment-action="(\w+)"', html)


# --- the list --------------------------------------------------------------------------


@pytest.fixture
def several(db, users, sample):
    """Besides the sample (dana's, dev, running): a stopped prod one of dana's and a
    deployment of sam's own request."""
    stopped = factories.make_deployment(
        db, image_id=sample["image_id"], name="billing-prod", environment="prod", status="stopped"
    )
    other_request = factories.make_request(
        db, owner_id=users["sam"], status="approved", image_name="sams-tool"
    )
    other_image = factories.make_image(db, request_id=other_request, name="sams-tool")
    sams = factories.make_deployment(db, image_id=other_image, name="sams-tool-dev")
    return {"stopped": stopped, "sams": sams, **sample}


def listed(response) -> list[int]:
    return [int(n) for n in re.findall(r'data-deployment-id="(\d+)"', response.get_data(as_text=True))]


def test_it_lists_every_deployment_to_staff(auth, several):
    response = auth.client_for("oleg").get("/deployments")
    assert response.status_code == 200
    assert sorted(listed(response)) == sorted([several["deployment_id"], several["stopped"], several["sams"]])


@pytest.mark.parametrize(
    "username, visible",
    [
        ("dana", {"deployment_id", "stopped"}),
        ("carl", {"deployment_id", "stopped"}),
        ("colin", {"deployment_id", "stopped"}),
        ("sam", {"sams"}),
        ("joanna", set()),
    ],
)
def test_it_lists_only_what_each_developer_may_see(auth, several, username, visible):
    response = auth.client_for(username).get("/deployments")
    assert sorted(listed(response)) == sorted(several[key] for key in visible)


def test_it_links_each_row_to_its_page(auth, several):
    html = auth.client_for("oleg").get("/deployments").get_data(as_text=True)
    for deployment_id in (several["deployment_id"], several["stopped"], several["sams"]):
        assert f'href="/deployments/{deployment_id}"' in html


@pytest.mark.parametrize(
    "query, expected",
    [
        ("?status=stopped", {"stopped"}),
        ("?environment=dev", {"deployment_id", "sams"}),
        ("?status=running&environment=prod", set()),
        ("?status=bogus", {"deployment_id", "stopped", "sams"}),
    ],
)
def test_it_filters_by_status_and_environment(auth, several, query, expected):
    response = auth.client_for("oleg").get("/deployments" + query)
    assert sorted(listed(response)) == sorted(several[key] for key in expected)


def test_it_pages_the_list(app, auth, several):
    app.config["PER_PAGE"] = 2
    client = auth.client_for("oleg")
    first = client.get("/deployments")
    second = client.get("/deployments?page=2")
    assert len(listed(first)) == 2 and len(listed(second)) == 1
    assert 'rel="next"' in first.get_data(as_text=True)
    assert set(listed(first)).isdisjoint(listed(second))


def test_it_sends_anonymous_visitors_to_the_login_page(client):
    response = client.get("/deployments")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


# --- the detail page ---------------------------------------------------------------------


def test_it_shows_the_deployment(app, auth, db, sample):
    db.execute(
        "UPDATE deployments SET last_commit = ?, needs_restart = 1, ports = '8080:80,9090:90' WHERE id = ?",
        ("0123456789abcdef", sample["deployment_id"]),
    )
    html = auth.client_for("oleg").get(detail(sample["deployment_id"])).get_data(as_text=True)
    assert 'class="badge status-running" data-status="running"' in html
    assert "billing-api:1.0.0" in html
    assert '<td data-field="environment">dev</td>' in html
    assert '<td data-field="replicas">1</td>' in html
    assert "8080:80,9090:90" in html
    assert "0123456789ab" in html
    assert re.search(r'<span class="flag" data-flag="needs_restart">', html)
    assert re.search(r'data-flag="stopped_by_operator" hidden', html)


@pytest.mark.parametrize(
    "username, expected",
    [
        ("oleg", ["stop", "restart", "delete"]),
        ("alice", ["stop", "restart", "delete"]),
        ("dana", ["stop", "restart"]),
        ("colin", []),
    ],
)
def test_it_shows_only_the_buttons_access_allows(auth, sample, username, expected):
    html = auth.client_for(username).get(detail(sample["deployment_id"])).get_data(as_text=True)
    assert buttons(html) == expected


def test_it_offers_no_start_to_the_owner_after_an_operator_stop(auth, db, sample):
    db.execute(
        "UPDATE deployments SET status = 'stopped', stopped_by_operator = 1 WHERE id = ?",
        (sample["deployment_id"],),
    )
    assert buttons(auth.client_for("dana").get(detail(sample["deployment_id"])).get_data(as_text=True)) == []
    assert buttons(auth.client_for("oleg").get(detail(sample["deployment_id"])).get_data(as_text=True)) == [
        "start",
        "delete",
    ]


def test_it_asks_before_deleting(auth, sample):
    html = auth.client_for("oleg").get(detail(sample["deployment_id"])).get_data(as_text=True)
    assert re.search(r'data-deployment-action="delete" data-confirm="[^"]+"', html)
    assert "js/confirm.js" in html


def test_it_hides_the_page_from_strangers(auth, sample):
    assert auth.client_for("sam").get(detail(sample["deployment_id"])).status_code == 404
    assert auth.client_for("oleg").get(detail(99999)).status_code == 404


def test_it_renders_the_last_200_log_lines_and_where_they_stop(app, auth, sample):
    logs = app.extensions["samosval"].state.runtime(sample["deployment_id"]).logs
    for n in range(250):
        logs.append(T0 + n, "WARN" if n % 10 == 0 else "INFO", f"line <{n + 1}>")
    html = auth.client_for("dana").get(detail(sample["deployment_id"])).get_data(as_text=True)
    seqs = [int(s) for s in re.findall(r'data-seq="(\d+)"', html)]
    assert seqs == list(range(51, 251))
    assert 'data-last-seq="250"' in html
    assert "line &lt;250&gt;" in html  # escaped, never markup
    assert 'class="log-line log-WARN"' in html


def test_it_loads_charts_and_scripts_without_inline_code(app, auth, sample):
    html = auth.client_for("oleg").get(detail(sample["deployment_id"])).get_data(as_text=True)
    assert 'canvas id="chart-cpu"' in html and 'canvas id="chart-ram"' in html
    assert '<script src="/static/vendor/chart.umd.min.js" defer></script>' in html
    for tag in re.findall(r"<script[^>]*>", html):
        assert "src=" in tag or 'type="application/json"' in tag, tag
    assert not re.search(r"\son\w+=", html), "inline event handler"
    assert " style=" not in html
    assert 'data-action="realtime-toggle"' in html and 'data-conn="off"' in html
    assert f'href="/deployments/{sample["deployment_id"]}/logs.txt"' in html


def test_it_pins_chart_js_with_its_integrity_hash(app, auth, sample):
    app.config["CHARTJS_URL"] = "https://cdn.example.org/chart.umd.min.js"
    app.config["CHARTJS_SRI"] = "sha384-abc"
    html = auth.client_for("oleg").get(detail(sample["deployment_id"])).get_data(as_text=True)
    assert (
        '<script src="https://cdn.example.org/chart.umd.min.js" integrity="sha384-abc" '
        'crossorigin="anonymous" defer></script>'
    ) in html


def test_it_shows_the_latest_values_as_text(app, auth, sample):
    app.extensions["samosval"].state.runtime(sample["deployment_id"]).metrics.append(T0, 42.04, 63.5)
    html = auth.client_for("dana").get(detail(sample["deployment_id"])).get_data(as_text=True)
    assert '<td class="big-value" data-latest="cpu">42.0 %</td>' in html
    assert '<td class="big-value" data-latest="ram">63.5 %</td>' in html


# --- actions -----------------------------------------------------------------------------


def test_it_lets_an_operator_stop_and_start(auth, db, sample):
    client = auth.client_for("oleg")
    response = client.post(action(sample["deployment_id"], "stop"))
    assert response.status_code == 302 and response.headers["Location"].endswith(
        detail(sample["deployment_id"])
    )
    assert status_of(db, sample["deployment_id"]) == ("stopped", 1)
    client.post(action(sample["deployment_id"], "start"))
    assert status_of(db, sample["deployment_id"]) == ("deploying", 0)


@pytest.mark.parametrize("name, expected", [("stop", "stopped"), ("restart", "deploying")])
def test_it_lets_the_owner_control_her_deployment(auth, db, sample, name, expected):
    response = auth.client_for("dana").post(action(sample["deployment_id"], name))
    assert response.status_code == 302
    assert status_of(db, sample["deployment_id"]) == (expected, 0)


def test_it_lets_the_owner_start_what_she_stopped(auth, db, sample):
    client = auth.client_for("dana")
    client.post(action(sample["deployment_id"], "stop"))
    client.post(action(sample["deployment_id"], "start"))
    assert status_of(db, sample["deployment_id"]) == ("deploying", 0)


def test_it_refuses_the_owner_a_start_after_an_operator_stop(auth, db, sample):
    auth.client_for("oleg").post(action(sample["deployment_id"], "stop"))
    response = auth.client_for("dana").post(action(sample["deployment_id"], "start"))
    assert response.status_code == 403
    assert status_of(db, sample["deployment_id"]) == ("stopped", 1)


@pytest.mark.parametrize("username, code", [("colin", 403), ("carl", 403), ("sam", 404)])
@pytest.mark.parametrize("name", ["start", "stop", "restart", "delete"])
def test_it_refuses_everyone_else(auth, db, sample, username, code, name):
    response = auth.client_for(username).post(action(sample["deployment_id"], name))
    assert response.status_code == code
    assert status_of(db, sample["deployment_id"]) == ("running", 0)


def test_it_lets_only_staff_delete(auth, db, sample):
    assert auth.client_for("dana").post(action(sample["deployment_id"], "delete")).status_code == 403
    response = auth.client_for("oleg").post(action(sample["deployment_id"], "delete"))
    assert response.status_code == 302 and response.headers["Location"].endswith("/deployments")
    assert status_of(db, sample["deployment_id"]) is None
    audit = db.execute(
        "SELECT user_id FROM audit_log WHERE action = 'deployment_delete' AND target_id = ?",
        (sample["deployment_id"],),
    ).fetchone()
    assert audit is not None
    assert auth.client_for("oleg").get(detail(sample["deployment_id"])).status_code == 404


def test_it_explains_an_action_the_status_does_not_allow(auth, db, sample):
    client = auth.client_for("oleg")
    client.post(action(sample["deployment_id"], "stop"))
    response = client.post(action(sample["deployment_id"], "stop"), follow_redirects=True)
    assert response.status_code == 200
    assert 'class="flash flash-error"' in response.get_data(as_text=True)
    assert status_of(db, sample["deployment_id"]) == ("stopped", 1)


def test_it_answers_json_to_scripts(auth, db, sample):
    client = auth.client_for("oleg")
    response = client.post(action(sample["deployment_id"], "stop"), headers={"Accept": "application/json"})
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "stopped" and body["stopped_by_operator"] is True
    assert body["actions"] == ["start", "delete"]
    refused = client.post(action(sample["deployment_id"], "stop"), headers={"Accept": "application/json"})
    assert refused.status_code == 409 and refused.get_json()["error"]
    forbidden = auth.client_for("dana").post(
        action(sample["deployment_id"], "start"), headers={"Accept": "application/json"}
    )
    assert forbidden.status_code == 403 and "error" in forbidden.get_json()
    gone = client.post(action(sample["deployment_id"], "delete"), headers={"Accept": "application/json"})
    assert gone.get_json() == {"status": "deleted", "id": sample["deployment_id"]}


def test_it_writes_the_action_into_the_deployments_log(app, auth, sample):
    auth.client_for("dana").post(action(sample["deployment_id"], "stop"))
    lines = app.extensions["samosval"].state.runtime(sample["deployment_id"]).logs.snapshot()
    assert any(line.level == "EVENT" and "dana" in line.text for line in lines)


def test_it_requires_the_csrf_token(auth, db, sample):
    response = auth.client_for("oleg").post(action(sample["deployment_id"], "stop"), csrf=False)
    assert response.status_code == 400
    assert status_of(db, sample["deployment_id"]) == ("running", 0)


def test_it_accepts_only_post_and_known_actions(auth, sample):
    client = auth.client_for("oleg")
    assert client.get(action(sample["deployment_id"], "stop")).status_code == 405
    assert client.post(action(sample["deployment_id"], "explode")).status_code == 404


# --- log download ------------------------------------------------------------------------


def test_it_downloads_the_whole_buffer_as_text(app, auth, sample):
    logs = app.extensions["samosval"].state.runtime(sample["deployment_id"]).logs
    for n in range(1100):
        logs.append(T0 + n, "INFO", f"line {n + 1}")
    response = auth.client_for("colin").get(f"/deployments/{sample['deployment_id']}/logs.txt")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert response.headers["Content-Disposition"].startswith("attachment;")
    lines = response.get_data(as_text=True).splitlines()
    assert len(lines) == 1000
    assert lines[0].endswith("INFO  line 101") and lines[-1].endswith("line 1100")
    assert lines[0].startswith("2027-01-15T08:01:40Z")


def test_it_names_the_download_safely(auth, db, sample):
    db.execute("UPDATE deployments SET name = ? WHERE id = ?", ('биллинг "prod"; x', sample["deployment_id"]))
    response = auth.client_for("oleg").get(f"/deployments/{sample['deployment_id']}/logs.txt")
    assert response.status_code == 200
    assert (
        response.headers["Content-Disposition"]
        == f'attachment; filename="deployment-{sample["deployment_id"]}-_________prod___x.log.txt"'
    )


def test_it_hides_the_download_from_strangers(auth, sample):
    assert auth.client_for("sam").get(f"/deployments/{sample['deployment_id']}/logs.txt").status_code == 404
