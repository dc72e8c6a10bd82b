"""Two production processes on PostgreSQL and Redis behind nginx (issue 15), set up
the way the README's "Several processes" section tells an operator to: a role with a
password and a database it owns, ``flask --app app init-db``, two
``gunicorn -c gunicorn.conf.py wsgi:app`` on two ports, both listed in the upstream
block of ``deploy/nginx/samosval.conf``.

* Exactly one engine leads: /healthz and /metrics say which, on both processes.
* A request a developer creates on one process is on the other's pages and JSON at once.
* A viewer on the follower, one through nginx and one on the leader get the leader's
  lines in order, without a gap, under the same ids.
* Failed logins sent to either process, directly or through nginx, count against one
  limit, keyed by the client's address that nginx forwards.
* No traceback in either log; the database password appears nowhere.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import time
import urllib.parse
import uuid

import pytest

from samosval import db as db_module
from tests import factories, live
from tests.live import NginxProcess, login_cookie, read_events
from tests.reliability import CSRF_INPUT_RE, PASSWORD, AppProcess, Client, add_users, request_form
from tests.test_init_db_postgres import init_db

if shutil.which("nginx") is None:
    if os.environ.get("SAMOSVAL_REQUIRE_NGINX"):
        raise RuntimeError("nginx is not installed (scripts/test.sh installs Debian's nginx)")
    pytest.skip("nginx is not installed", allow_module_level=True)

pytestmark = pytest.mark.backend_neutral  # starts its own processes on its own database

# The role's password. Neither it nor the word "secret" may show anywhere (the logs
# of this run never have a reason to say the word).
SECRET = f"secret-{uuid.uuid4().hex[:8]}"
LINES = 30  # lines every viewer must see (speed 10: a few seconds)


def pg_tool(server, name: str) -> str:
    """A PostgreSQL client program (psql, createdb) of the server's version, as root
    would run it with ``sudo -u postgres``."""
    found = server.bin / name
    return str(found) if found.is_file() else shutil.which(name)


def run_pg(server, *command: str) -> None:
    connection = ["-h", "127.0.0.1", "-p", str(server.port), "-U", server.SUPERUSER]
    subprocess.run(
        [pg_tool(server, command[0]), *connection, *command[1:]],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture
def database_url(postgres_server):
    """The README's set-up: a role with a password, a database it owns, pg_trgm."""
    suffix = uuid.uuid4().hex[:8]
    role, name = f"samosval_{suffix}", f"cluster_{suffix}"
    run_pg(postgres_server, "psql", "-c", f"CREATE ROLE {role} LOGIN PASSWORD '{SECRET}'")
    run_pg(postgres_server, "createdb", "--owner", role, name)
    run_pg(postgres_server, "psql", "-d", name, "-c", "CREATE EXTENSION IF NOT EXISTS pg_trgm")
    yield f"postgresql://{role}:{SECRET}@127.0.0.1:{postgres_server.port}/{name}"
    db_module.close_pools()
    postgres_server.drop_database(name)
    postgres_server.execute(f"DROP ROLE IF EXISTS {role}")


def get(port: int, path: str, headers=None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def health(port: int) -> dict:
    return json.loads(get(port, "/healthz")[1])


def open_stream(port: int, cookie: str, deployment_id: int):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", f"/api/deployments/{deployment_id}/logs/stream", headers={"Cookie": cookie})
    response = conn.getresponse()
    assert response.status == 200, response.read()[:300]
    return conn, response


def seqs(events) -> list[int]:
    return [int(e["id"].rsplit("-", 1)[1]) for e in events if "id" in e]


def texts(events) -> dict[str, str]:
    return {e["id"]: json.loads(e["data"])["text"] for e in events if "id" in e}


def failed_login(way: tuple[int, bool], username: str, address: str) -> int:
    """A wrong password from client ``address``: through nginx the connection comes
    from that address; directly, it carries the X-Forwarded-For nginx would add.
    ``way``: (port, whether that port is nginx's)."""
    port, through_nginx = way
    headers = {} if through_nginx else {"X-Forwarded-For": address}
    source = (address, 0) if through_nginx else None
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20, source_address=source)
    try:
        conn.request("GET", "/login", headers=headers)
        response = conn.getresponse()
        page = response.read().decode()
        cookies = "; ".join(c.split(";", 1)[0] for c in response.msg.get_all("Set-Cookie") or [])
        form = {"username": username, "password": "not-the-password"}
        form["csrf_token"] = CSRF_INPUT_RE.search(page).group(1)
        conn.request(
            "POST",
            "/login",
            body=urllib.parse.urlencode(form),
            headers={**headers, "Cookie": cookies, "Content-Type": "application/x-www-form-urlencoded"},
        )
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def two_upstreams_site(workdir, second_port: int):
    """The repository's site with the second process listed, as the README says
    (NginxProcess then sets the first port and the listen address)."""
    site = live.NGINX_SITE.read_text()
    commented = "# server 127.0.0.1:8001;"
    assert commented in site, "deploy/nginx/samosval.conf no longer shows where a second server goes"
    edited = workdir / "samosval.conf"
    edited.write_text(site.replace(commented, f"server 127.0.0.1:{second_port};"))
    return edited


def test_two_gunicorn_processes_behind_nginx_share_postgres_and_redis(
    tmp_path, database_url, redis_server, monkeypatch
):
    printed = init_db(database_url, tmp_path / "init")
    assert "Database created at postgresql://" in printed and SECRET not in printed, printed
    assert "Traceback" not in printed, printed
    db = db_module.connect(database_url)
    try:
        ids = add_users(db, [("oleg", "operator"), ("dana", "developer")])
        request_id = factories.make_request(
            db, owner_id=ids["dana"], status="approved", image_name="pg-cluster"
        )
        image_id = factories.make_image(db, request_id=request_id, name="pg-cluster")
        deployment_id = factories.make_deployment(db, image_id=image_id, name="pg-cluster-running")
    finally:
        db.close()
    shared = {
        "SAMOSVAL_DATABASE_URL": database_url,
        "SAMOSVAL_REDIS_URL": redis_server.url,
        "SAMOSVAL_REDIS_PREFIX": f"pg-cluster-{uuid.uuid4().hex[:8]}:",
        "SAMOSVAL_TRUSTED_PROXIES": "1",
        "SAMOSVAL_LOGIN_RATE_LIMIT_USER": "4 per minute",  # per username and address
        "SAMOSVAL_LOGIN_RATE_LIMIT_IP": "6 per minute",
        "SAMOSVAL_LOGIN_DELAY_AFTER_FAILURES": "1000",  # the limiter alone answers 429 here
    }
    processes, streams, nginx = [], [], None
    try:
        for name in ("a", "b"):
            processes.append(
                AppProcess(
                    tmp_path / name, tmp_path / f"{name}.log", speed=10.0, production=True, extra_env=shared
                )
            )
        a, b = processes
        (tmp_path / "nginx").mkdir()
        monkeypatch.setattr(live, "NGINX_SITE", two_upstreams_site(tmp_path, b.port))
        nginx = NginxProcess(tmp_path / "nginx", a.port)

        # 1. Exactly one engine leads, and both processes name the same lease holder.
        found = {}
        for _attempt in range(100):
            found = {p.port: health(p.port) for p in processes}
            if sum(h["leader"] for h in found.values()) == 1 and all(h.get("lease") for h in found.values()):
                break
            time.sleep(0.1)
        leader, follower = sorted(processes, key=lambda p: not found[p.port]["leader"])
        assert found[leader.port]["leader"] and not found[follower.port]["leader"], found
        assert (found[leader.port]["engine"], found[follower.port]["engine"]) == ("running", "following")
        holders = {found[p.port]["lease"]["holder"] for p in processes}
        assert holders == {found[leader.port]["holder"]}, found
        assert (leader.metric("samosval_engine_leader"), follower.metric("samosval_engine_leader")) == (1, 0)
        # nginx sends requests to both processes.
        through = {health(nginx.port)["holder"] for _ in range(6)}
        assert through == {found[p.port]["holder"] for p in processes}, through

        # 2. A developer's request created on the leader is on the follower at once.
        dana = Client(leader.port)
        dana.login("dana")
        _status, _h, page = dana.get("/requests/new")
        dana.scrape_csrf(page)
        status, headers, body = dana.post("/requests/new", request_form("made-on-a", "dana", "echo hi"))
        assert status == 302 and "/requests/" in headers["location"], body[:300]
        made = int(headers["location"].rsplit("/", 1)[1])
        dana.close()
        oleg = Client(follower.port)
        oleg.login("oleg")
        status, _h, page = oleg.get("/requests")
        assert status == 200 and b"made-on-a" in page
        status, _h, listed = oleg.get("/requests", headers={"Accept": "application/json"})
        assert status == 200 and made in [item["id"] for item in json.loads(listed)["items"]]
        assert oleg.get(f"/requests/{made}")[0] == 200
        oleg.close()

        # 3. Viewers on the follower, through nginx and on the leader: the same lines.
        viewers = {}
        for name, port in (("follower", follower.port), ("nginx", nginx.port), ("leader", leader.port)):
            conn, response = open_stream(
                port, login_cookie(f"http://127.0.0.1:{port}", "oleg", PASSWORD), deployment_id
            )
            streams.append(conn)
            viewers[name] = response
        got = {
            "follower": read_events(viewers["follower"], lambda found: len(seqs(found)) >= LINES, limit=2000)
        }
        last = seqs(got["follower"])[-1]
        for name in ("nginx", "leader"):
            got[name] = read_events(viewers[name], lambda found: last in seqs(found), limit=2000)
        for name, events in got.items():
            numbers = seqs(events)
            assert numbers == list(range(numbers[0], numbers[-1] + 1)), (name, numbers)
        # Each viewer starts at the oldest line kept (the same one for all).
        assert len({seqs(events)[0] for events in got.values()}) == 1, {
            n: seqs(e)[:3] for n, e in got.items()
        }
        common = set.intersection(*(set(texts(events)) for events in got.values()))
        assert len(common) >= LINES
        reference = texts(got["leader"])
        for name in ("follower", "nginx"):
            assert {i: texts(got[name])[i] for i in common} == {i: reference[i] for i in common}, name

        # 4. One login limit across both processes, directly or through nginx.
        ways = [(a.port, False), (b.port, False), (nginx.port, True)]
        # Per username and address (4 a minute): dana from 127.0.0.3.
        statuses = [failed_login(ways[n % 3], "dana", "127.0.0.3") for n in range(6)]
        assert statuses == [401] * 4 + [429] * 2, statuses
        # Per address (6 a minute), whatever the username: from 127.0.0.4.
        statuses = [failed_login(ways[n % 3], f"nobody{n}", "127.0.0.4") for n in range(7)]
        assert statuses == [401] * 6 + [429], statuses
        # Another client address is not limited: nginx passes the client's, not its own.
        assert failed_login((nginx.port, True), "dana", "127.0.0.5") == 401

        # 5. The password is in no answer.
        for port in (a.port, b.port, nginx.port):
            for path in ("/healthz", "/metrics"):
                status, body = get(port, path)
                assert status == 200 and b"secret" not in body.lower(), (port, path)
        for conn in streams:
            conn.close()
        nginx.stop()
        for process in processes:
            assert process.stop() == 0
    finally:
        for conn in streams:
            conn.close()
        if nginx is not None:
            nginx.stop()
        for process in processes:
            process.stop()
    # 5. ... and in neither log (read after a clean stop); no traceback either.
    for process in processes:
        text = process.log_text()
        assert "Traceback" not in text, text[-3000:]
        assert "secret" not in text.lower()
