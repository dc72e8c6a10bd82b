"""The production setup for real: Debian's nginx with the repository's config
(``deploy/nginx/samosval.conf``) in front of the production command. nginx is
installed by scripts/test.sh; without it this module is skipped unless
``SAMOSVAL_REQUIRE_NGINX=1`` (CI) makes that a failure."""

from __future__ import annotations

import http.client
import os
import shutil

import pytest

from tests import factories
from tests.live import AppProcess, NginxProcess, login_cookie, read_events

if shutil.which("nginx") is None:
    if os.environ.get("SAMOSVAL_REQUIRE_NGINX"):
        raise RuntimeError("nginx is not installed (scripts/test.sh installs Debian's nginx)")
    pytest.skip("nginx is not installed", allow_module_level=True)

HEARTBEAT = 20  # seconds: every line below must arrive long before a heartbeat would


@pytest.fixture
def site(tmp_path):
    app = AppProcess(
        tmp_path / "instance",
        tmp_path / "gunicorn.log",
        speed=5.0,
        production=True,
        extra_env={"SAMOSVAL_TRUSTED_PROXIES": "1", "SAMOSVAL_SSE_HEARTBEAT_SECONDS": str(HEARTBEAT)},
    )
    (tmp_path / "nginx").mkdir()
    try:
        nginx = NginxProcess(tmp_path / "nginx", app.port)
    except BaseException:
        app.stop()
        raise
    yield app, nginx
    nginx.stop()
    app.stop()


def seed(app) -> int:
    user_id = app.create_user("opsuser", "operator")
    from samosval.db import connect

    db = connect(app.target)
    try:
        request_id = factories.make_request(db, owner_id=user_id, status="approved")
        image_id = factories.make_image(db, request_id=request_id)
        return factories.make_deployment(db, image_id=image_id)
    finally:
        db.close()


def test_pages_streams_and_client_addresses_pass_through_nginx(site):
    app, nginx = site
    deployment_id = seed(app)
    # The client connects from 127.0.0.2: nginx sees that address, gunicorn sees only
    # nginx (127.0.0.1). The audit log must name the client, from X-Forwarded-For.
    cookie = login_cookie(nginx.url, "opsuser", source="127.0.0.2")
    rows = app.query("SELECT ip FROM audit_log WHERE action = 'login'")
    assert [row["ip"] for row in rows] == ["127.0.0.2"]

    conn = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=HEARTBEAT - 5)
    try:
        conn.request("GET", f"/deployments/{deployment_id}", headers={"Cookie": cookie})
        page = conn.getresponse()
        assert page.status == 200 and b"opsuser" in page.read()

        conn.request("GET", f"/api/deployments/{deployment_id}/logs/stream", headers={"Cookie": cookie})
        stream = conn.getresponse()
        assert stream.status == 200
        assert stream.getheader("Content-Type").startswith("text/event-stream")
        # The engine writes a line every few hundred ms: several must come through,
        # each as it is produced, with no heartbeat in between (a buffering proxy
        # would hold them until its buffer filled, and the read would time out).
        initial = read_events(stream, lambda found: any(e.get("event") == "status" for e in found))
        first_seen = {e["id"] for e in initial if "id" in e}
        events = read_events(
            stream, lambda found: len({e["id"] for e in found if "id" in e} - first_seen) >= 3
        )
        assert not [e for e in events if e.get("comment") == "ping"]
        stream.close()
    finally:
        conn.close()
