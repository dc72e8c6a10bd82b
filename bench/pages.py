"""Pages at volume: server time of every page on a company-scale database, and the
query plan of every SQL statement each page runs.

    python bench/pages.py [--runs 30] [--scale 1] [--only SUBSTRING] [--keep-db] [--db PATH]
                          [--backend sqlite|postgres] [--database-url URL] [--output NAME]

The database comes from ``bench/seed.py`` (at ``--scale 1``: 200 users, 10,000
requests, 2,000 images and builds, 2,000 deployments, 100,000 audit rows, 5,000
webhook deliveries; ``--scale 10`` multiplies them all by ten), plus 500 alerts and
a few tokens added here. The app runs in this process
(no engine thread, no network) and is called through Flask's test client as an
admin, an operator and a developer (the one with the most visible requests). One
deployment gets full in-memory buffers (1,000 lines, 900 points) so its detail
page, log download and metrics JSON are measured at their largest.

Per page: 3 warm-up calls, then --runs timed calls (median and p95 wall time of
``client.get``: the whole server side plus ~0.3 ms of test-client overhead). One
more call runs with ``sqlite3.Connection.set_trace_callback`` on (through a
wrapped ``samosval.db.connect``) to collect its statements; each distinct
statement goes through ``EXPLAIN QUERY PLAN``. A "full scan" is a ``SCAN`` of a
large table without an index; ``SCAN ... USING INDEX`` (an ordered walk bounded
by the page's LIMIT) is listed separately. Results go to bench/pages.json.

PostgreSQL (issue 15): ``--backend postgres`` starts a throw-away server
(``tests.servers.PostgresServer``, loopback only, stopped at the end) and seeds a
database there; ``--database-url URL`` seeds an existing empty database instead.
The same seed, pages and personas; the in-memory log buffers (no Redis: pages read
PostgreSQL only). Statements are captured by wrapping the connection's ``execute``
and planned with ``EXPLAIN``; a ``Seq Scan`` of a large table is listed, but the
verdict is wall time p95 < 50 ms (the issue's target; the thread's CPU time misses
the PostgreSQL server's own work). Results go to bench/pages_postgres.json.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import DATA_DIR, percentile, table, verdict, write_json

import samosval.db as db_module
from samosval import create_app
from samosval.security import limiter

TARGETS_P95_MS = {1: 20.0, 10: 25.0}  # by --scale (issue 23); other scales use the larger
POSTGRES_TARGET_P95_MS = 50.0  # issue 15: wall time, on PostgreSQL
QUIET_LOAD = 1.5  # 1-minute load average below which wall times are trusted
# Tables with thousands of rows or more in the seeded database.
LARGE_TABLES = {
    "image_requests",
    "images",
    "builds",
    "deployments",
    "audit_log",
    "request_collaborators",
    "webhook_deliveries",
}
PASSWORD = "password123"

# --- SQL capture ----------------------------------------------------------------------

_captured: list | None = None  # SQLite: statements; PostgreSQL: (statement, params)
_original_connect = db_module.connect


def _traced_connect(target: str):
    conn = _original_connect(target)
    if db_module.dialect(conn) == "sqlite":
        conn.set_trace_callback(_trace)
    else:
        execute = conn.execute

        def traced(sql, params=()):
            if _captured is not None:
                _captured.append((sql, params))
            return execute(sql, params)

        conn.execute = traced  # this connection only; back in the pool it is a plain one again
    return conn


def _trace(statement: str) -> None:
    if _captured is not None:
        _captured.append(statement)


db_module.connect = _traced_connect  # get_db() looks the name up in samosval.db at call time

ALIAS_RE = re.compile(
    r"\b(?:FROM|JOIN)\s+(\w+)(?:\s+(?:AS\s+)?(?!ON\b|WHERE\b|JOIN\b|LEFT\b|ORDER\b|GROUP\b|"
    r"LIMIT\b|INNER\b|UNION\b|USING\b)(\w+))?",
    re.IGNORECASE,
)
SCAN_RE = re.compile(r"^SCAN (\w+)(?: USING (COVERING )?INDEX (\w+))?")


def explain(plan_db: sqlite3.Connection, statement: str) -> dict:
    """Plan lines of one statement, with full scans and index walks picked out."""
    aliases = {}
    for table_name, alias in ALIAS_RE.findall(statement):
        aliases[table_name.lower()] = table_name.lower()
        if alias:
            aliases[alias.lower()] = table_name.lower()
    try:
        rows = plan_db.execute("EXPLAIN QUERY PLAN " + statement).fetchall()
    except sqlite3.Error as exc:
        return {"plan": [f"(not explained: {exc})"], "full_scans": [], "index_scans": []}
    plan = [row[3] for row in rows]
    # "SCAN t" with ORDER BY t.id, a LIMIT and no sort step walks the table in rowid
    # order and stops after LIMIT + OFFSET rows: a walk, like SCAN ... USING INDEX.
    ordered = re.search(r"ORDER BY\s+(?:(\w+)\.)?id\b", statement, re.IGNORECASE)
    rowid_walk = (
        bool(ordered)
        and " LIMIT " in statement.upper()
        and not any("TEMP B-TREE FOR ORDER BY" in detail for detail in plan)
    )
    full, walks = [], []
    for detail in plan:
        match = SCAN_RE.match(detail)
        if not match:
            continue
        table_name = aliases.get(match.group(1).lower(), match.group(1).lower())
        if table_name not in LARGE_TABLES:
            continue
        if match.group(3):
            walks.append(f"{table_name} via {match.group(3)}")
        elif rowid_walk and (ordered.group(1) or table_name).lower() in (match.group(1).lower(), table_name):
            walks.append(f"{table_name} in rowid order")
        else:
            full.append(table_name)
    return {"plan": plan, "full_scans": full, "index_scans": walks}


PG_SCAN_RE = re.compile(r"\b(Seq Scan|Index Scan|Index Only Scan|Bitmap Heap Scan) on (\w+)")


def explain_postgres(plan_db, statement: str, params) -> dict:
    """``EXPLAIN`` of one captured statement with its parameters: sequential scans of
    large tables and index scans picked out (the planner's choice for this data)."""
    try:
        rows = plan_db.execute("EXPLAIN " + statement, params).fetchall()
    except db_module.DatabaseError as exc:
        return {"plan": [f"(not explained: {exc})"], "full_scans": [], "index_scans": []}
    plan = [row[0] for row in rows]
    full, walks = [], []
    for line in plan:
        for kind, table_name in PG_SCAN_RE.findall(line):
            if table_name not in LARGE_TABLES:
                continue
            if kind == "Seq Scan":
                full.append(table_name)
            else:
                walks.append(f"{table_name} via {kind}")
    return {"plan": plan, "full_scans": full, "index_scans": walks}


# --- the database ---------------------------------------------------------------------


def build_database(path, scale: int = 1) -> dict:
    """Seed ``path`` (a SQLite file or a PostgreSQL URL) and add alerts and tokens."""
    from seed import scaled, seed

    counts = seed(str(path), **scaled(scale))
    db = _original_connect(str(path))
    now = time.time()

    def stamp(ts: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))

    with db_module.transaction(db):
        _add_alerts_and_tokens(db, now, stamp)
    db.execute("ANALYZE")
    counts.update(alerts=500)
    db.close()
    return counts


def _add_alerts_and_tokens(db, now, stamp) -> None:
    db.executemany(
        "INSERT INTO alerts (alert_type, target_type, target_id, message, resolved, created_at) "
        "VALUES (?, 'deployment', ?, ?, ?, ?)",
        [
            (
                ("deployment_failed", "build_failed")[i % 2],
                1 + i % 2000,
                f"failure {i}",
                int(i >= 40),
                stamp(now - 500 * 600 + i * 600),
            )
            for i in range(500)
        ],
    )
    db.executemany(
        "INSERT INTO webhook_tokens (name, token_prefix, token_hash, sealed_secret, created_at) "
        "VALUES (?, ?, ?, 'x', ?)",
        [(f"ci-{i}", f"smv_{i:04d}", f"hash{i}", stamp(now)) for i in range(5)],
    )


def pick_personas(path) -> dict:
    db = _original_connect(str(path))
    try:
        admin = db.execute(
            "SELECT id, username FROM users WHERE role = 'admin' AND username LIKE 'user%' "
            "ORDER BY id LIMIT 1"
        ).fetchone()
        operator = db.execute(
            "SELECT id, username FROM users WHERE role = 'operator' ORDER BY id LIMIT 1"
        ).fetchone()
        developer = db.execute(
            "SELECT u.id, u.username, (SELECT COUNT(*) FROM image_requests r WHERE r.owner_id = u.id "
            "OR r.created_by = u.id OR r.id IN (SELECT request_id FROM request_collaborators c "
            "WHERE c.username = u.username)) AS n FROM users u WHERE u.role = 'developer' "
            "AND u.username LIKE 'user%' ORDER BY n DESC LIMIT 1"
        ).fetchone()
        dev_request = db.execute(
            "SELECT r.id FROM image_requests r JOIN images i ON i.request_id = r.id "
            "JOIN deployments d ON d.image_id = i.id WHERE d.status = 'running' AND (r.owner_id = ? OR "
            "r.created_by = ?) ORDER BY r.id LIMIT 1",
            (developer["id"], developer["id"]),
        ).fetchone()["id"]
        ids = {}
        for key, request_id in (("admin", 7), ("developer", dev_request)):
            image = db.execute(
                "SELECT id FROM images WHERE request_id = ? ORDER BY id LIMIT 1", (request_id,)
            ).fetchone()["id"]
            ids[key] = {
                "request": request_id,
                "image": image,
                "build": db.execute(
                    "SELECT id FROM builds WHERE request_id = ? LIMIT 1", (request_id,)
                ).fetchone()["id"],
                "deployment": db.execute(
                    "SELECT id FROM deployments WHERE image_id = ? ORDER BY status = 'running' DESC, id "
                    "LIMIT 1",
                    (image,),
                ).fetchone()["id"],
            }
        old_audit_id = db.execute("SELECT MIN(id) + 2000 FROM audit_log").fetchone()[0]
        busy_user = db.execute(
            "SELECT u.username FROM audit_log a JOIN users u ON u.id = a.user_id "
            "GROUP BY u.id, u.username ORDER BY COUNT(*) DESC, u.id LIMIT 1"
        ).fetchone()[0]
        dates = db.execute(
            "SELECT substr(MIN(created_at), 1, 10), substr(MAX(created_at), 1, 10) FROM audit_log"
        ).fetchone()
    finally:
        db.close()
    return {
        "admin": admin["username"],
        "operator": operator["username"],
        "developer": developer["username"],
        "developer_visible_requests": developer["n"],
        "ids": ids,
        "old_audit_id": old_audit_id,
        "busy_user": busy_user,
        "first_day": dates[0],
        "last_day": dates[1],
    }


def pages(p: dict) -> list[tuple[str, str, str]]:
    """(persona, name, url) for every page measured."""
    a, d = p["ids"]["admin"], p["ids"]["developer"]
    rows = [("anonymous", "login form", "/login")]
    for persona in ("admin", "operator", "developer"):
        rows.append((persona, "dashboard", "/dashboard"))
    for persona, deep in (("admin", 200), ("operator", 200), ("developer", 5)):
        rows += [
            (persona, "requests", "/requests"),
            (persona, f"requests page {deep}", f"/requests?page={deep}"),
            (persona, "requests status=approved", "/requests?status=approved"),
            (
                persona,
                f"requests status=approved page {max(2, deep // 5)}",
                f"/requests?status=approved&page={max(2, deep // 5)}",
            ),
            (persona, "requests q=service-12", "/requests?q=service-12"),
            (persona, "requests mine=1", "/requests?mine=1"),
            (persona, "builds", "/builds"),
            (persona, "builds status=success", "/builds?status=success"),
            (persona, "images", "/images"),
            (persona, "images q=service-1", "/images?q=service-1"),
            (persona, "deployments", "/deployments"),
            (persona, "deployments status=running env=prod", "/deployments?status=running&environment=prod"),
            (persona, "/api/users/search q=user01", "/api/users/search?q=user01"),
        ]
    rows += [
        ("admin", "requests owner=<developer>", f"/requests?owner={p['developer']}"),
        ("admin", "builds page 40", "/builds?page=40"),
        ("admin", "builds status=success page 40", "/builds?status=success&page=40"),
        ("admin", "images page 40", "/images?page=40"),
        ("admin", "images q=service-1 page 5", "/images?q=service-1&page=5"),
        ("admin", "deployments page 40", "/deployments?page=40"),
        ("admin", "deployments status=running page 10", "/deployments?status=running&page=10"),
        ("admin", "/api/users/search role=developer", "/api/users/search?q=user&role=developer"),
        ("admin", "admin users", "/admin/users"),
        ("admin", "admin users role=developer q=01", "/admin/users?role=developer&q=01"),
        ("admin", "admin users page 4", "/admin/users?page=4"),
        ("admin", "admin users (JSON, all 202)", "json:/admin/users"),
        ("admin", "requests (JSON)", "json:/requests"),
        ("admin", "builds status=failed (none)", "/builds?status=failed"),
        ("admin", "deployments status=failed env=dev", "/deployments?status=failed&environment=dev"),
        ("admin", "webhooks outcome=invalid (none)", "/webhooks?outcome=invalid"),
        ("admin", "audit", "/admin/audit"),
        ("admin", "audit deep (before=old id)", f"/admin/audit?before={p['old_audit_id']}"),
        ("admin", "audit newer (after=old id)", f"/admin/audit?after={p['old_audit_id']}"),
        ("admin", "audit user=<busy>", f"/admin/audit?user={p['busy_user']}"),
        ("admin", "audit action=login", "/admin/audit?action=login"),
        ("admin", "audit action=login deep", f"/admin/audit?action=login&before={p['old_audit_id']}"),
        ("admin", "audit q=event 4242", "/admin/audit?q=event+4242"),
        ("admin", "audit q=nothing-matches", "/admin/audit?q=nothing-matches"),
        ("admin", "audit date range", f"/admin/audit?from={p['first_day']}&to={p['first_day']}"),
        ("admin", "audit target request #42", "/admin/audit?target_type=request&target_id=42"),
        (
            "admin",
            "audit user+action+dates",
            (f"/admin/audit?user={p['busy_user']}&action=login&from={p['first_day']}&to={p['last_day']}"),
        ),
        ("admin", "webhooks", "/webhooks"),
        ("admin", "webhooks page 100", "/webhooks?page=100"),
        ("admin", "webhooks outcome=processed", "/webhooks?outcome=processed"),
        (
            "admin",
            "webhooks outcome=refused source=github page 20",
            "/webhooks?outcome=refused&source=github&page=20",
        ),
        ("operator", "webhooks", "/webhooks"),
        ("admin", "alerts", "/alerts"),
        ("operator", "alerts", "/alerts"),
        ("admin", "tokens", "/admin/tokens"),
    ]
    for persona, ids in (("admin", a), ("operator", a), ("developer", d)):
        rows += [
            (persona, "request detail", f"/requests/{ids['request']}"),
            (persona, "build detail", f"/builds/{ids['build']}"),
            (persona, "build log JSON", f"/api/builds/{ids['build']}/log"),
            (persona, "image detail", f"/images/{ids['image']}"),
            (persona, "deployment detail", f"/deployments/{ids['deployment']}"),
            (persona, "deployment metrics JSON", f"/api/deployments/{ids['deployment']}/metrics"),
            (persona, "deployment logs.txt", f"/deployments/{ids['deployment']}/logs.txt"),
        ]
    rows += [
        ("admin", "request edit form", f"/requests/{a['request']}/edit"),
        ("operator", "request edit form", f"/requests/{a['request']}/edit"),
        ("developer", "request form (new)", "/requests/new"),
    ]
    return rows


def login(app, username: str):
    client = app.test_client()
    html = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    response = client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 302, f"login as {username} failed: {response.status_code}"
    return client


def fill_runtime(app, deployment_ids) -> None:
    """Full buffers for the deployments whose pages are measured."""
    import random

    from samosval.simulator import textgen

    rng = random.Random(7)
    state = app.extensions["samosval"].state
    now = time.time()
    for deployment_id in deployment_ids:
        runtime = state.runtime(deployment_id)
        runtime.logs.set_status("running")
        for n in range(1000):
            level, text = textgen.runtime_line(rng, f"svc-{deployment_id}", "service-1:1.0.0", 2)
            runtime.logs.append(now - 1000 + n, level, text)
        for n in range(900):
            runtime.metrics.append(
                now - 900 + n, round(rng.uniform(10, 90), 1), round(rng.uniform(20, 70), 1)
            )


def get(client, url: str):
    """``json:/path`` asks for JSON, as the pages' scripts do."""
    if url.startswith("json:"):
        return client.get(url[5:], headers={"Accept": "application/json"})
    return client.get(url)


class DatabaseCpu:
    """CPU time of the PostgreSQL backends serving this database (``/proc/<pid>/
    schedstat``: nanoseconds on a CPU, so one page's share is exact). Their pids
    come from ``pg_stat_activity``, asked again before every page (the pool may
    have opened more connections). Only for a server on this machine."""

    def __init__(self, plan_db):
        self.plan_db = plan_db
        self.pids: list[int] = []

    def refresh(self) -> None:
        self.pids = [
            row[0]
            for row in self.plan_db.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
            ).fetchall()
        ]

    def ns(self) -> int:
        total = 0
        for pid in self.pids:
            try:
                total += int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pass  # a connection closed meanwhile
        return total


def measure(client, url: str, runs: int, db_cpu: DatabaseCpu | None = None):
    """Wall and CPU milliseconds of each call. The test client runs the app in this
    thread, so ``thread_time`` is the server's CPU time for the page: unlike wall
    time, it does not grow when other processes compete for the two cores. With
    ``db_cpu`` (PostgreSQL), also the database server's CPU time for each call
    (read outside the timed part)."""
    status = 0
    if db_cpu is not None:
        db_cpu.refresh()
    for _ in range(3):
        status = get(client, url).status_code
    if db_cpu is not None:
        db_cpu.refresh()
    times, cpu_times, db_times = [], [], []
    for _ in range(runs):
        db0 = db_cpu.ns() if db_cpu is not None else 0
        start, cpu = time.perf_counter(), time.thread_time()
        response = get(client, url)
        response.get_data()
        cpu_times.append(1000 * (time.thread_time() - cpu))
        times.append(1000 * (time.perf_counter() - start))
        if db_cpu is not None:
            db_times.append((db_cpu.ns() - db0) / 1e6)
        status = response.status_code
    return times, cpu_times, db_times, status


def main(argv=None) -> int:
    global _captured
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--scale", type=int, default=1, help="seed.py --scale (1 or 10 have targets)")
    parser.add_argument("--only", default="", help="measure only pages whose name contains this")
    parser.add_argument("--db", default="", help="reuse this seeded database instead of seeding a new one")
    parser.add_argument("--keep-db", action="store_true", help="keep the seeded database in bench/.data/")
    parser.add_argument(
        "--backend",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="postgres: start a throw-away PostgreSQL server on a loopback port and seed it",
    )
    parser.add_argument(
        "--database-url", default="", help="seed this existing, empty postgresql:// database instead"
    )
    parser.add_argument("--output", default="", help="JSON name (default pages, or pages_postgres)")
    parser.add_argument(
        "--local-server",
        action="store_true",
        help="the --database-url server runs on this machine: measure its CPU time per page too",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.runs <= 1000:
        parser.error("--runs 1..1000")
    if not 1 <= args.scale <= 100:
        parser.error("--scale 1..100")
    if args.database_url and not db_module.is_postgres(args.database_url):
        parser.error("--database-url takes a postgresql:// URL")
    postgres = args.backend == "postgres" or bool(args.database_url)
    logging.getLogger("samosval.access").setLevel(logging.WARNING)
    load_before = [round(x, 2) for x in os.getloadavg()]

    DATA_DIR.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="pages-", dir=DATA_DIR))
    server = None
    try:
        if postgres and not args.database_url:
            from tests.servers import PostgresServer

            server = PostgresServer()
            server.start()
        if args.db:
            db_path, counts = Path(args.db), {}
        else:
            if args.database_url:
                db_path = args.database_url
            elif server is not None:
                db_path = server.create_database("pages")
            else:
                db_path = workdir / "pages.sqlite3"
            started = time.perf_counter()
            counts = build_database(db_path, args.scale)
            print(f"seeded in {time.perf_counter() - started:.1f} s: {counts}", flush=True)
        personas = pick_personas(db_path)
        app = create_app(
            {
                "DATABASE": str(db_path),
                "SECRET_KEY": "bench",
                "SIMULATOR_AUTOSTART": False,
                "LOGIN_RATE_LIMIT_USER": "1000 per minute",
                "LOGIN_RATE_LIMIT_IP": "1000 per minute",
            },
            instance_path=str(workdir / "instance"),
        )
        limiter.reset()
        fill_runtime(
            app, {personas["ids"]["admin"]["deployment"], personas["ids"]["developer"]["deployment"]}
        )
        clients = {name: login(app, personas[name]) for name in ("admin", "operator", "developer")}
        clients["anonymous"] = app.test_client()
        db_cpu = None
        if postgres:
            plan_db = _original_connect(str(db_path))
            if server is not None or args.local_server:
                db_cpu = DatabaseCpu(plan_db)
        else:
            plan_db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)

        results = []
        for persona, name, url in pages(personas):
            if args.only and args.only not in name:
                continue
            client = clients[persona]
            times, cpu_times, db_times, status = measure(client, url, args.runs, db_cpu)
            both = [a + b for a, b in zip(cpu_times, db_times)] if db_times else cpu_times
            _captured = []
            get(client, url)
            statements, _captured = _captured, None
            if not postgres:
                statements = [(statement, ()) for statement in statements]
            queries = [
                (sql, params)
                for sql, params in statements
                if sql.lstrip().upper().startswith(("SELECT", "WITH", "UPDATE", "INSERT", "DELETE"))
                and "pg_advisory" not in sql
            ]
            plans = {}
            for sql, params in queries:
                if sql in plans:
                    continue
                plans[sql] = explain_postgres(plan_db, sql, params) if postgres else explain(plan_db, sql)
            results.append(
                {
                    "persona": persona,
                    "page": name,
                    "url": url,
                    "status": status,
                    "median_ms": round(statistics.median(times), 2),
                    "p95_ms": round(percentile(times, 95), 2),
                    "max_ms": round(max(times), 2),
                    "cpu_median_ms": round(statistics.median(cpu_times), 2),
                    "cpu_p95_ms": round(percentile(cpu_times, 95), 2),
                    # PostgreSQL: the backends' CPU per call, and this thread's plus theirs.
                    "db_cpu_median_ms": round(statistics.median(db_times), 2) if db_times else None,
                    "db_cpu_p95_ms": round(percentile(db_times, 95), 2) if db_times else None,
                    "total_cpu_p95_ms": round(percentile(both, 95), 2),
                    "queries": len(queries),
                    "full_scans": sorted({t for p in plans.values() for t in p["full_scans"]}),
                    "index_scans": sorted({t for p in plans.values() for t in p["index_scans"]}),
                    "plans": [{"sql": s, **p} for s, p in plans.items()],
                }
            )
            print(
                f"{results[-1]['p95_ms']:8.2f} ms p95 wall {results[-1]['total_cpu_p95_ms']:8.2f} ms p95 cpu  "
                f"{persona:9} {name}",
                flush=True,
            )
        plan_db.close()
        if postgres:
            db_module.close_pools()
    finally:
        if server is not None:
            server.close()
        if not args.keep_db:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"database kept in {workdir}")

    # Other processes on a 2-core machine inflate wall times; the verdict then uses
    # CPU time, the page's own cost. Both are printed and stored.
    load = [round(x, 2) for x in os.getloadavg()]
    if postgres:
        # The thread's CPU time misses the database server's work: judge on wall time on
        # a quiet machine, else on this thread's CPU plus the backends' (when measured).
        # Sequential scans are listed without failing on them (the planner picks them
        # for small ranges of these tables).
        quiet = max(load_before[0], load[0]) < QUIET_LOAD
        target = POSTGRES_TARGET_P95_MS
        judge = "p95_ms" if quiet or db_cpu is None else "total_cpu_p95_ms"
        for r in results:
            r["ok"] = r[judge] < target and r["status"] == 200
    else:
        target = TARGETS_P95_MS.get(args.scale, max(TARGETS_P95_MS.values()))
        judge = "p95_ms" if max(load_before[0], load[0]) < QUIET_LOAD else "cpu_p95_ms"
        for r in results:
            r["ok"] = r[judge] < target and not r["full_scans"] and r["status"] == 200
    rows = [
        [
            r["persona"],
            r["page"],
            r["status"],
            r["median_ms"],
            r["p95_ms"],
            r["cpu_median_ms"],
            r["cpu_p95_ms"],
            r["db_cpu_p95_ms"] if r["db_cpu_p95_ms"] is not None else "-",
            r["queries"],
            ", ".join(r["full_scans"]) or "-",
            verdict(r["ok"]),
        ]
        for r in results
    ]
    print()
    print(
        table(
            [
                "persona",
                "page",
                "status",
                "median ms",
                "p95 ms",
                "cpu median",
                "cpu p95",
                "db cpu p95",
                "queries",
                "full scans",
                "",
            ],
            rows,
            title=f"Pages at volume on {'PostgreSQL' if postgres else 'SQLite'}, {args.runs} runs each (developer {personas['developer']} sees "
            f"{personas['developer_visible_requests']} requests); load average {load_before[0]} "
            f"before, {load[0]} after: verdict on {'wall' if judge == 'p95_ms' else 'CPU'} p95",
        )
    )
    walks = sorted({(w, r["page"]) for r in results for w in r["index_scans"]})
    if walks:
        print("\nIndex walks (SCAN ... USING INDEX, bounded by LIMIT/OFFSET):")
        for walk in sorted({w for w, _ in walks}):
            print(f"  {walk}: " + ", ".join(sorted({p for w, p in walks if w == walk})))
    misses = [r for r in results if not r["ok"]]
    print(
        f"\n{len(results) - len(misses)}/{len(results)} pages meet p95 < {target:g} ms"
        + (
            f" ({'wall' if judge == 'p95_ms' else 'CPU: this thread + the database'})"
            if postgres
            else " with no full scan of a large table"
        )
    )
    for r in misses:
        print(
            f"  MISS {r['persona']} {r['page']}: status {r['status']}, p95 {r['p95_ms']} ms "
            f"(cpu {r['total_cpu_p95_ms']} ms), "
            f"full scans: {', '.join(r['full_scans']) or '-'}"
        )
        for plan in r["plans"]:
            if plan["full_scans"]:
                print(f"       {plan['sql'][:160]}")
                print(f"       -> {' | '.join(plan['plan'])}")
    path = write_json(
        args.output or ("pages_postgres" if postgres else "pages"),
        {
            "backend": "postgresql" if postgres else "sqlite",
            "runs": args.runs,
            "load_average": {"before": load_before, "after": load},
            "scale": args.scale,
            "verdict_on": judge,
            "target_p95_ms": target,
            "counts": counts,
            "personas": personas,
            "results": results,
            "misses": [f"{r['persona']} {r['page']}" for r in misses],
        },
    )
    print(f"\nwritten to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
