"""The alerts page: who sees it, open before resolved, resolving by hand (audited)
and automatically when the target recovers."""

from __future__ import annotations

import json
import re

import pytest

from samosval.db import transaction
from samosval.domain import alerts as alert_domain

JSON = {"Accept": "application/json"}


def raise_alert(
    db,
    alert_type="deployment_failed",
    target_type="deployment",
    target_id=1,
    reason="health check timed out",
    now=1_780_000_000.0,
) -> int:
    params = {"id": target_id, "reason": reason}
    if alert_type == "deployment_failed":
        params["name"] = "billing-dev"
    with transaction(db):
        return alert_domain.raise_alert(db, alert_type, target_type, target_id, params=params, now=now)


def alert_ids(page: str, section: str) -> list[int]:
    table = page.split(f'id="{section}"', 1)[1].split("</table>", 1)[0] if f'id="{section}"' in page else ""
    return [int(i) for i in re.findall(r'data-alert-id="(\d+)"', table)]


@pytest.mark.parametrize("persona", ["dana", "colin", "sam"])
def test_it_refuses_developers(auth, db, persona):
    alert_id = raise_alert(db)
    client = auth.client_for(persona)
    assert client.get("/alerts").status_code == 403
    assert client.post(f"/alerts/{alert_id}/resolve").status_code == 403
    assert client.post(f"/alerts/{alert_id}/resolve", headers=JSON).is_json
    assert alert_domain.get_alert(db, alert_id)["resolved"] == 0


def test_it_sends_anonymous_visitors_to_login(client):
    response = client.get("/alerts")
    assert response.status_code == 302 and response.location.startswith("/login")


@pytest.mark.parametrize("persona", ["oleg", "root", "alice"])
def test_it_shows_open_alerts_first_to_staff(auth, db, sample, persona):
    old_open = raise_alert(db, target_id=sample["deployment_id"], now=1_780_000_000.0)
    resolved = raise_alert(db, "build_failed", "build", 77, now=1_780_000_500.0)
    new_open = raise_alert(db, "build_failed", "build", 78, now=1_780_000_900.0)
    with transaction(db):
        db.execute("UPDATE alerts SET resolved = 1, resolved_at = created_at WHERE id = ?", (resolved,))
    response = auth.client_for(persona).get("/alerts")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert alert_ids(page, "open-alerts") == [new_open, old_open]
    assert alert_ids(page, "resolved-alerts") == [resolved]
    assert page.index('id="open-alerts"') < page.index('id="resolved-alerts"')
    # an existing target is linked, a missing one is not
    assert f'href="/deployments/{sample["deployment_id"]}" data-target-link' in page
    assert 'href="/builds/78"' not in page and "сборка #78" in page
    # the text is in the viewer's language; the technical reason is quoted as printed
    assert "Сборка #78 упала: health check timed out" in page
    assert "Развёртывание billing-dev (#" in page
    assert page.count('data-action="resolve"') == 2


def test_it_links_spec_style_alerts_without_a_target_type(auth, db, sample):
    with transaction(db):
        db.execute(
            "INSERT INTO alerts (alert_type, target_id, message, resolved, created_at) "
            "VALUES ('deployment_failed', ?, 'down', 0, '2026-03-01T00:00:00Z')",
            (sample["deployment_id"],),
        )
    page = auth.client_for("oleg").get("/alerts").get_data(as_text=True)
    assert f'href="/deployments/{sample["deployment_id"]}" data-target-link' in page


def test_it_says_when_all_is_quiet(auth):
    page = auth.client_for("oleg").get("/alerts").get_data(as_text=True)
    assert "Открытых алертов нет" in page


def test_it_resolves_an_alert_and_audits_it(auth, db, users):
    alert_id = raise_alert(db, target_id=5)
    response = auth.client_for("oleg").post(f"/alerts/{alert_id}/resolve")
    assert response.status_code == 302 and response.location == "/alerts"
    alert = alert_domain.get_alert(db, alert_id)
    assert alert["resolved"] == 1 and alert["resolved_by"] == users["oleg"] and alert["resolved_at"]
    [entry] = db.execute("SELECT * FROM audit_log WHERE action = 'alert_resolve'").fetchall()
    assert (
        entry["user_id"] == users["oleg"]
        and entry["target_type"] == "alert"
        and entry["target_id"] == alert_id
    )
    assert json.loads(entry["details"]) == {
        "alert_type": "deployment_failed",
        "target_type": "deployment",
        "target_id": 5,
    }
    page = auth.client_for("oleg").get("/alerts").get_data(as_text=True)
    assert alert_ids(page, "resolved-alerts") == [alert_id] and "oleg" in page


def test_it_refuses_resolving_twice(auth, db):
    alert_id = raise_alert(db)
    client = auth.client_for("root")
    assert client.post(f"/alerts/{alert_id}/resolve").status_code == 302
    response = client.post(f"/alerts/{alert_id}/resolve", headers=JSON)
    assert response.status_code == 409 and response.json["error"]
    response = client.post(f"/alerts/{alert_id}/resolve")
    assert response.status_code == 302
    assert "уже закрыт" in client.get("/alerts").get_data(as_text=True)
    assert db.execute("SELECT COUNT(*) FROM audit_log WHERE action = 'alert_resolve'").fetchone()[0] == 1


def test_it_answers_json_callers(auth, db):
    alert_id = raise_alert(db)
    client = auth.client_for("oleg")
    listing = client.get("/alerts", headers=JSON).json
    assert [a["id"] for a in listing["open"]] == [alert_id] and listing["resolved"] == []
    response = client.post(f"/alerts/{alert_id}/resolve", headers=JSON)
    assert response.status_code == 200 and response.json["alert"]["resolved"] is True
    assert response.json["alert"]["resolved_by"] == "oleg"


def test_it_answers_404_for_an_unknown_alert(auth):
    assert auth.client_for("oleg").post("/alerts/9999/resolve").status_code == 404


def test_it_refuses_a_resolve_without_csrf(auth, db):
    alert_id = raise_alert(db)
    assert auth.client_for("oleg").post(f"/alerts/{alert_id}/resolve", csrf=False).status_code == 400
    assert alert_domain.get_alert(db, alert_id)["resolved"] == 0


def test_it_resolves_a_targets_alerts_automatically(db):
    failed = raise_alert(db, target_id=5)
    other = raise_alert(db, target_id=6)
    build = raise_alert(db, "build_failed", "build", 5, "build failed")
    with transaction(db):
        db.execute(
            "INSERT INTO alerts (alert_type, target_id, message, resolved, created_at) "
            "VALUES ('deployment_failed', 5, 'old style', 0, '2026-03-01T00:00:00Z')"
        )
    with transaction(db):
        assert (
            alert_domain.resolve_for_target(
                db, "deployment", 5, alert_type="deployment_failed", now=1_800_000_000.0
            )
            == 2
        )
    assert alert_domain.get_alert(db, failed)["resolved"] == 1
    assert alert_domain.get_alert(db, failed)["resolved_by"] is None
    assert alert_domain.get_alert(db, other)["resolved"] == 0
    assert alert_domain.get_alert(db, build)["resolved"] == 0
    assert alert_domain.open_count(db) == 2


def test_it_counts_open_alerts_on_the_dashboard(auth, db):
    raise_alert(db)
    raise_alert(db, target_id=2)
    page = auth.client_for("oleg").get("/dashboard").get_data(as_text=True)
    assert 'data-open-alerts="2"' in page and 'href="/alerts"' in page
