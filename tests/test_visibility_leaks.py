"""Small leaks closed: an image page never points at another team's newer build, and
an operator's dashboard shows no admin events (the audit page's rule)."""

from __future__ import annotations

import re

from tests import factories


def newer_link(html: str):
    match = re.search(r'data-newer="(\d+)"', html)
    return int(match.group(1)) if match else None


def test_it_never_links_a_developer_to_another_teams_newer_build(auth, db, users, sample):
    # sam's team builds the same name and version later: same image_tag, newer id.
    other = factories.make_request(db, owner_id=users["sam"], image_name="billing-api", status="approved")
    hidden = factories.make_image(db, request_id=other)
    html = auth.client_for("dana").get(f"/images/{sample['image_id']}").get_data(as_text=True)
    assert newer_link(html) is None and 'data-newest="1"' in html
    assert f"/images/{hidden}" not in html
    # Staff see both, so the link is right for them.
    assert (
        newer_link(auth.client_for("oleg").get(f"/images/{sample['image_id']}").get_data(as_text=True))
        == hidden
    )


def test_it_marks_the_newest_build_among_what_the_viewer_sees_in_lists(auth, db, users, sample):
    other = factories.make_request(db, owner_id=users["sam"], image_name="billing-api", status="approved")
    hidden = factories.make_image(db, request_id=other)
    dana = auth.client_for("dana")
    listed = dana.get("/images").get_data(as_text=True)
    assert f'data-image-id="{hidden}"' not in listed and listed.count('data-newest="1"') == 1
    request_page = dana.get(f"/requests/{sample['request_id']}").get_data(as_text=True)
    assert "flag-newest" in request_page  # not demoted by a build dana cannot see
    staff = auth.client_for("oleg").get("/images").get_data(as_text=True)
    row = staff[staff.index(f'data-image-id="{sample["image_id"]}"') :]
    assert 'data-newest="1"' not in row.split("</tr>", 1)[0]  # staff see the newer one


def test_it_still_links_to_a_newer_build_the_viewer_may_see(auth, db, users, sample):
    rebuilt = factories.make_image(db, request_id=sample["request_id"], build_number=2)
    html = auth.client_for("dana").get(f"/images/{sample['image_id']}").get_data(as_text=True)
    assert newer_link(html) == rebuilt


ADMIN_EVENTS = ("user_password_reset", "user_role_change", "user_block", "login", "token_create")


def dashboard_actions(client) -> set[str]:
    return set(re.findall(r'<tr data-action="([a-z_]+)"', client.get("/dashboard").get_data(as_text=True)))


def test_it_shows_operators_no_admin_events(auth, db, users, sample):
    root = auth.client_for("root")
    root.post(f"/admin/users/{users['sam']}/reset_password")
    root.post(f"/admin/users/{users['ann']}/role", data={"role": "operator"})
    db.execute(
        "INSERT INTO audit_log (user_id, action, target_type, target_id, created_at) "
        "VALUES (?, 'deployment_start', 'deployment', ?, '2026-11-01T00:00:00Z')",
        (users["oleg"], sample["deployment_id"]),
    )
    seen = dashboard_actions(auth.client_for("oleg"))
    assert not seen & set(ADMIN_EVENTS), seen
    assert "deployment_start" in seen  # operational events stay
    admin_seen = dashboard_actions(root)
    assert {"user_password_reset", "user_role_change"} <= admin_seen


def test_it_hides_admin_events_from_operators_in_one_place():
    from samosval import audit, permissions

    class Operator:
        is_authenticated, role, id, username = True, "operator", 1, "oleg"

    class Admin(Operator):
        role = "admin"

    hidden = permissions.hidden_event_actions(Operator())
    assert hidden <= set(audit.ACTIONS)  # every name is a real action
    assert {a for a in audit.ACTIONS if a.startswith(("user_", "token_", "session"))} <= hidden
    assert permissions.hidden_event_actions(Admin()) == frozenset()
