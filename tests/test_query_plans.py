"""No list page scans a large table without an index (issue 23): every statement
the list pages run, on a seeded database (bench/seed.py at a small scale, with
ANALYZE statistics), goes through EXPLAIN QUERY PLAN. A "full scan" is ``SCAN
<large table>`` with no index; a walk in rowid order that the page's ORDER BY id
and LIMIT bound is allowed, as bench/pages.py counts it. The requests list's text
search equals the plain LIKE it narrows."""

from __future__ import annotations

import re
import sqlite3
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import samosval.db as db_module
from samosval import create_app
from samosval.domain import requests as request_domain
from samosval.domain import text_search
from samosval.pagination import paginate
from samosval.security import limiter
from tests.conftest import CSRFClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from seed import seed  # noqa: E402

# EXPLAIN QUERY PLAN is SQLite's; the app here is built on a SQLite file whatever the backend.
pytestmark = pytest.mark.sqlite_only

LARGE_TABLES = {
    "image_requests",
    "images",
    "builds",
    "deployments",
    "audit_log",
    "request_collaborators",
    "webhook_deliveries",
}
ALIAS_RE = re.compile(
    r"\b(?:FROM|JOIN)\s+(\w+)(?:\s+(?:AS\s+)?(?!ON\b|WHERE\b|JOIN\b|LEFT\b|ORDER\b|GROUP\b|"
    r"LIMIT\b|INNER\b|UNION\b|USING\b|CROSS\b)(\w+))?",
    re.IGNORECASE,
)
SCAN_RE = re.compile(r"^SCAN (\w+)(?: USING (?:COVERING )?INDEX (\w+))?")


def full_scans(plan_db: sqlite3.Connection, statement: str) -> list[str]:
    aliases = {}
    for table, alias in ALIAS_RE.findall(statement):
        aliases[table.lower()] = table.lower()
        if alias:
            aliases[alias.lower()] = table.lower()
    plan = [row[3] for row in plan_db.execute("EXPLAIN QUERY PLAN " + statement)]
    rowid_walk = (
        re.search(r"ORDER BY\s+(?:\w+\.)?(?:id|rowid)\b", statement, re.IGNORECASE)
        and " LIMIT " in statement.upper()
        and not any("TEMP B-TREE FOR ORDER BY" in line for line in plan)
    )
    found = []
    for line in plan:
        match = SCAN_RE.match(line)
        if not match or match.group(2) or "VIRTUAL TABLE" in line:
            continue
        table = aliases.get(match.group(1).lower(), match.group(1).lower())
        if table in LARGE_TABLES and not rowid_walk:
            found.append(f"{table}: {' | '.join(plan)}")
    return found


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    path = tmp_path_factory.mktemp("plans") / "seeded.sqlite3"
    seed(str(path), users=60, requests=3000, images=600, deployments=600, audit=30_000, deliveries=3000)
    return path


@pytest.fixture(scope="module")
def app(seeded, tmp_path_factory):
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test-secret-key",
            "DATABASE": str(seeded),
            "SIMULATOR_AUTOSTART": False,
            "LOGIN_RATE_LIMIT_USER": "1000 per minute",
            "LOGIN_RATE_LIMIT_IP": "1000 per minute",
        },
        instance_path=str(tmp_path_factory.mktemp("instance")),
    )
    app.test_client_class = CSRFClient
    limiter.reset()
    yield app
    limiter.reset()


def persona(seeded, role: str) -> str:
    db = sqlite3.connect(seeded)
    try:
        return db.execute(
            "SELECT username FROM users WHERE role = ? AND username LIKE 'user%' ORDER BY id LIMIT 1", (role,)
        ).fetchone()[0]
    finally:
        db.close()


LIST_PAGES = [
    "/requests",
    "/requests?page=20",
    "/requests?status=approved",
    "/requests?q=service-12",
    "/requests?q=service-1",
    "/requests?q=se",
    "/requests?mine=1",
    "/builds",
    "/builds?status=success",
    "/builds?page=20",
    "/images",
    "/images?q=service-1",
    "/deployments",
    "/deployments?status=running",
    "/deployments?status=failed&environment=dev",
    "/webhooks",
    "/webhooks?outcome=invalid",
    "/webhooks?outcome=refused&source=github&page=3",
    "/alerts",
    "/admin/users",
    "/admin/users?q=01&role=developer",
    "/admin/audit",
    "/admin/audit?q=event+42",
    "/admin/audit?q=nothing-matches",
    "/admin/audit?q=ev",
    "/admin/audit?action=login",
    "/admin/audit?user={developer}",
    "/admin/audit?from={first}&to={first}",
    "/admin/audit?target_type=request&target_id=42",
    "/admin/audit?target_type=request",
    "/admin/audit?before=20000",
    "/admin/audit?after=20000",
    "/admin/audit?q=event&from={first}&to={last}",
]


@pytest.mark.parametrize("role", ["admin", "developer"])
def test_no_list_page_scans_a_large_table_without_an_index(app, seeded, role, monkeypatch):
    statements: list[str] = []
    original = db_module.connect

    def traced(path):
        conn = original(path)
        conn.set_trace_callback(statements.append)
        return conn

    monkeypatch.setattr(db_module, "connect", traced)
    client = app.test_client()
    username = persona(seeded, role)
    assert client.post("/login", data={"username": username, "password": "password123"}).status_code == 302
    plan_db = sqlite3.connect(f"file:{seeded}?mode=ro", uri=True)
    first, last = plan_db.execute(
        "SELECT substr(MIN(created_at), 1, 10), substr(MAX(created_at), 1, 10) FROM audit_log"
    ).fetchone()
    developer = persona(seeded, "developer")
    problems = []
    for url in LIST_PAGES:
        url = url.format(first=first, last=last, developer=developer)
        statements.clear()
        response = client.get(url)
        assert response.status_code in (200, 403, 404), (url, response.status_code)
        for statement in dict.fromkeys(statements):
            if statement.lstrip().upper().startswith(("SELECT", "WITH")):
                problems += [f"{url}: {scan}" for scan in full_scans(plan_db, statement)]
    plan_db.close()
    assert problems == []


def test_the_requests_text_search_equals_the_plain_like(seeded, monkeypatch):
    db = db_module.connect(str(seeded))
    db.execute(
        "INSERT INTO image_requests (image_name, repo_url, repo_branch, update_mode, base_image, ram_mb, "
        "vcpu, version_tag, owner_id, status, created_by, created_at, updated_at) "
        "SELECT ?, ?, 'main', 'static', 'python', 256, 1, '1.0', owner_id, 'draft', created_by, "
        "created_at, updated_at FROM image_requests WHERE id = 1",
        ("Сервис_%100", "https://git.example.com/Команда/o'neil\"s.git"),
    )
    admin = db.execute("SELECT id, username FROM users WHERE role = 'admin' LIMIT 1").fetchone()
    user = SimpleNamespace(id=admin["id"], username=admin["username"], role="admin", is_authenticated=True)
    # A small threshold so both ways (index first, LIKE while walking) run here.
    monkeypatch.setattr(text_search.matching_ids, "__defaults__", (500,))
    for q in (
        "service-12",
        "service-1",
        "team1",
        "сервис",
        "Сервис_%",
        "_%1",
        "%",
        "команда",
        "o'neil\"",
        "\x00",
        "nothing",
        "se",
        "SERVICE-29",
    ):
        for number in (1, 3):
            new_sql, new_params = request_domain.list_requests_query(user, q=q, db=db)
            old_sql, old_params = request_domain.list_requests_query(user, q=q)
            new = [row["id"] for row in paginate(db, new_sql, new_params, number, 20).items]
            old = [row["id"] for row in paginate(db, old_sql, old_params, number, 20).items]
            assert new == old, q
    db.close()


@pytest.mark.parametrize("limit", [1, 8, 700])
def test_the_review_queue_equals_one_sorted_query(seeded, limit):
    from samosval.domain.dashboard import review_queue

    db = db_module.connect(str(seeded))
    expected = [
        row["id"]
        for row in db.execute(
            "SELECT r.id FROM image_requests r WHERE r.status IN ('in_review', 'submitted') "
            "ORDER BY CASE r.status WHEN 'in_review' THEN 0 ELSE 1 END, r.updated_at, r.id LIMIT ?",
            (limit,),
        )
    ]
    assert [row["id"] for row in review_queue(db, limit)] == expected
    db.close()
