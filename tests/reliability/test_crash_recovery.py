"""Crash recovery: builds and deployments are started over HTTP, the server is
killed with SIGKILL while they are in flight (and while a client is saving
edits), then started again on the same instance folder.

Proves: the database passes ``PRAGMA integrity_check`` and ``foreign_key_check``;
the restarted engine takes every queued/building build and deploying deployment
to a final status; every audit row that existed before the kill is still there,
unchanged; every build log still starts with what was stored before the kill;
the last edit the server confirmed before dying is not lost; sessions survive.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time

import pytest

from samosval.db import connect
from tests import factories
from tests.reliability import (
    AppProcess,
    Client,
    add_users,
    integrity,
    prepare_database,
    query,
    request_form,
    server_log_problems,
)

TRANSITIONAL_BUILDS = ("queued", "building")


def seed(db_path: str) -> dict:
    db = connect(db_path)
    try:
        ids = add_users(db, [("oleg", "operator"), ("dana", "developer")])
        submitted = [
            factories.make_request(db, owner_id=ids["dana"], status="submitted", image_name=f"crash-{n}")
            for n in range(3)
        ]
        approved = factories.make_request(db, owner_id=ids["dana"], status="approved", image_name="crash-app")
        image_id = factories.make_image(db, request_id=approved, name="crash-app")
        running = factories.make_deployment(db, image_id=image_id, name="crash-running")
        draft = factories.make_request(db, owner_id=ids["dana"], status="draft", image_name="crash-edit")
    finally:
        db.close()
    return {"submitted": submitted, "image_id": image_id, "running": running, "draft": draft}


def wait_for(predicate, timeout: float, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


class Editor(threading.Thread):
    """Saves edits of one draft back to back until the server dies. Remembers the
    last one the server confirmed."""

    def __init__(self, client: Client, request_id: int):
        super().__init__(name="crash-editor", daemon=True)
        self.client = client
        self.request_id = request_id
        self.confirmed = 0
        self.stop = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            form = request_form("crash-edit", "dana", f"echo edit {n}")
            try:
                status, headers, _b = self.client.post(f"/requests/{self.request_id}/edit", form)
            except (OSError, http.client.HTTPException):
                return  # the server is gone
            if status == 302 and headers.get("location", "").endswith(f"/requests/{self.request_id}"):
                self.confirmed = n


@pytest.mark.slow
def test_it_recovers_from_kill_9_without_losing_or_freezing_anything(tmp_path):
    instance = tmp_path / "instance"
    db_path = prepare_database(instance)
    world = seed(db_path)
    # Real-time speed: a build takes ~10 s and a rollout 3-8 s, so both are in flight at the kill.
    first = AppProcess(instance, tmp_path / "server-1.log", speed=1.0)
    editor = None
    try:
        operator = Client(first.port)
        operator.login("oleg")
        builds = []
        for request_id in world["submitted"]:
            status, _h, page = operator.get(f"/requests/{request_id}")
            assert status == 200
            operator.scrape_csrf(page)
            status, _h, _b = operator.post(f"/requests/{request_id}/status", {"status": "approved"})
            assert status == 302
            status, headers, _b = operator.post(f"/requests/{request_id}/build")
            assert status == 302 and "/builds/" in headers["location"], headers
            builds.append(int(headers["location"].rsplit("/", 1)[1]))
        placeholders = ", ".join("?" * len(builds))
        assert wait_for(
            lambda: query(
                db_path,
                f"SELECT 1 FROM builds WHERE id IN ({placeholders}) AND status = 'building' "
                "AND steps_done >= 1",
                builds,
            ),
            timeout=20,
        ), "no build got going"

        deployments = [world["running"]]
        for n in range(2):
            status, headers, _b = operator.post(
                f"/images/{world['image_id']}/create_deployment",
                {"name": f"crash-new-{n}", "environment": "dev", "replicas": "2", "ports": "8000:8000"},
            )
            assert status == 302, _b[:300]
            deployments.append(int(headers["location"].rsplit("/", 1)[1]))
        status, _h, body = operator.post(
            f"/deployments/{world['running']}/restart",
            headers={"Accept": "application/json", "X-CSRFToken": operator.csrf},
        )
        assert status == 200 and json.loads(body)["status"] == "deploying"

        editing = Client(first.port)
        editing.login("oleg")
        editor = Editor(editing, world["draft"])
        editor.start()
        assert wait_for(lambda: editor.confirmed >= 3, timeout=10)

        # What is stored right before the kill.
        audit_before = query(db_path, "SELECT * FROM audit_log ORDER BY id")
        builds_before = {
            row["id"]: row
            for row in query(
                db_path,
                f"SELECT id, status, build_log, steps_done FROM builds WHERE id IN ({placeholders})",
                builds,
            )
        }
        deployments_before = {
            row["id"]: row["status"] for row in query(db_path, "SELECT id, status FROM deployments")
        }
        first.kill()
        editor.stop.set()
        editor.join(10)
        operator.close()  # gevent kept their connections alive to the dead server
        editing.close()
    finally:
        if editor is not None:
            editor.stop.set()
        first.kill()

    transitional_builds = [b for b, row in builds_before.items() if row["status"] in TRANSITIONAL_BUILDS]
    deploying = [d for d, status in deployments_before.items() if status == "deploying"]
    assert transitional_builds and deploying, (builds_before, deployments_before)
    wal_bytes = os.path.getsize(db_path + "-wal") if os.path.exists(db_path + "-wal") else 0
    assert integrity(db_path) == ("ok", []), "the database is damaged after kill -9"

    second = AppProcess(instance, tmp_path / "server-2.log", speed=20.0)
    try:

        def settled():
            rows = query(
                db_path,
                "SELECT "
                "(SELECT COUNT(*) FROM builds WHERE status IN ('queued', 'building')) AS builds, "
                "(SELECT COUNT(*) FROM deployments WHERE status = 'deploying') AS deployments",
            )[0]
            return rows["builds"] == 0 and rows["deployments"] == 0

        started = time.monotonic()
        assert wait_for(settled, timeout=60, step=0.2), "items stayed in a transitional status"
        settle_seconds = time.monotonic() - started

        # The session cookie from before the crash still works (same secret key).
        survivor = Client(second.port)
        survivor.cookies = dict(operator.cookies)
        status, _h, body = survivor.get(f"/deployments/{deploying[0]}/logs.txt")
        assert status == 200
        assert "Engine restarted: rolling out again" in body.decode()
        status, _h, _b = survivor.get(f"/builds/{transitional_builds[0]}")
        assert status == 200
        survivor.close()  # gevent keeps the connection alive
    finally:
        exit_code = second.stop()

    assert exit_code == 0
    assert integrity(db_path) == ("ok", [])

    audit_after = {row["id"]: row for row in query(db_path, "SELECT * FROM audit_log ORDER BY id")}
    missing = [row["id"] for row in audit_before if audit_after.get(row["id"]) != row]
    assert missing == [], f"audit rows lost or changed: {missing}"
    assert len(audit_after) >= len(audit_before)
    assert max(audit_after) >= audit_before[-1]["id"]

    builds_after = {
        row["id"]: row
        for row in query(
            db_path, f"SELECT id, status, build_log FROM builds WHERE id IN ({placeholders})", builds
        )
    }
    for build_id, before in builds_before.items():
        after = builds_after[build_id]
        assert after["build_log"].startswith(before["build_log"]), f"build {build_id}: stored log changed"
        assert after["status"] in ("success", "failed"), after["status"]
    assert any(
        "Engine restarted: resuming the build" in builds_after[b]["build_log"] for b in transitional_builds
    )
    statuses_after = {
        row["id"]: row["status"] for row in query(db_path, "SELECT id, status FROM deployments")
    }
    assert all(statuses_after[d] in ("running", "failed") for d in deploying)

    # The last confirmed edit survived (or one sent later, committed as the server died).
    stored = query(db_path, "SELECT run_commands FROM image_requests WHERE id = ?", (world["draft"],))[0]
    stored_n = int(stored["run_commands"].rsplit(" ", 1)[1])
    assert stored_n >= editor.confirmed >= 3

    for log_name in ("server-1.log", "server-2.log"):
        problems = server_log_problems((tmp_path / log_name).read_text(errors="replace"))
        assert problems == {"database is locked": [], "5xx": [], "traceback": []}, (log_name, problems)

    print(
        f"\ncrash recovery: killed with {len(transitional_builds)} build(s) "
        f"({', '.join(builds_before[b]['status'] for b in transitional_builds)}) and "
        f"{len(deploying)} deployment(s) in flight, WAL {wal_bytes} bytes at the kill; "
        f"{len(audit_before)} audit rows (max id {audit_before[-1]['id']}) all intact; "
        f"{sum(len(r['build_log']) for r in builds_before.values())} bytes of build logs intact; "
        f"last confirmed edit #{editor.confirmed}, stored #{stored_n}; "
        f"everything settled {settle_seconds:.1f} s after the restart"
    )
