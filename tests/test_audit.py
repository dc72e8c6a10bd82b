"""The audit log page: filters, keyset pagination, links to targets, CSV export,
and that its queries stay on indexes at 100,000 rows."""

from __future__ import annotations

import csv
import io
import json
import re
import time

import pytest

from samosval import audit
from samosval.db import dialect
from samosval.domain import audit_queries
from samosval.domain.audit_queries import AuditFilters
from tests import factories


def add_row(
    db,
    action="login",
    *,
    user_id=None,
    target_type=None,
    target_id=None,
    details=None,
    created_at="2026-03-10T12:00:00Z",
    ip="10.0.0.7",
) -> int:
    if details is not None and not isinstance(details, str):
        details = json.dumps(details, ensure_ascii=False)
    return db.execute(
        "INSERT INTO audit_log (user_id, action, target_type, target_id, details, created_at, ip) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (user_id, action, target_type, target_id, details, created_at, ip),
    ).lastrowid


def shown_ids(response) -> list[int]:
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return [int(i) for i in re.findall(r'data-audit-id="(\d+)"', response.get_data(as_text=True))]


def link(response, rel) -> str | None:
    found = re.search(rf'href="([^"]+)" data-page="{rel}"', response.get_data(as_text=True))
    return found.group(1).replace("&amp;", "&") if found else None


@pytest.fixture
def seeded(db, users):
    """A small, known log: who did what to which target, and when."""
    db.execute("DELETE FROM audit_log")
    rows = {
        "dana_login": add_row(
            db,
            "login",
            user_id=users["dana"],
            target_type="user",
            target_id=users["dana"],
            created_at="2026-03-01T08:00:00Z",
        ),
        "oleg_build": add_row(
            db,
            "build_start",
            user_id=users["oleg"],
            target_type="build",
            target_id=7,
            details={"request": 3},
            created_at="2026-03-02T09:00:00Z",
        ),
        "oleg_deploy": add_row(
            db,
            "deployment_stop",
            user_id=users["oleg"],
            target_type="deployment",
            target_id=5,
            details={"reason": "nightly window"},
            created_at="2026-03-03T10:00:00Z",
        ),
        "root_block": add_row(
            db,
            "user_block",
            user_id=users["root"],
            target_type="user",
            target_id=users["bob"],
            details={"username": "bob"},
            created_at="2026-03-03T23:59:59Z",
        ),
        "failed": add_row(
            db,
            "login_failed",
            details={"username": "ghost", "reason": "unknown user"},
            created_at="2026-03-04T00:00:00Z",
        ),
        "dana_request": add_row(
            db,
            "request_create",
            user_id=users["dana"],
            target_type="request",
            target_id=11,
            details={"image_name": "billing-api"},
            created_at="2026-03-05T12:00:00Z",
        ),
    }
    return rows


def page_ids(client, **args):
    return shown_ids(client.get("/admin/audit", query_string=args))


# --- filters ----------------------------------------------------------------------------


def test_it_shows_everything_newest_first(auth, seeded):
    ids = page_ids(auth.client_for("root"))
    # root's own login (made by client_for) comes on top
    assert ids[1:] == sorted(seeded.values(), reverse=True)


def test_it_filters_by_user(auth, seeded):
    client = auth.client_for("root")
    assert page_ids(client, user="oleg") == [seeded["oleg_deploy"], seeded["oleg_build"]]
    assert page_ids(client, user="OLEG") == [seeded["oleg_deploy"], seeded["oleg_build"]]


def test_it_says_when_the_user_filter_matches_nobody(auth, seeded):
    response = auth.client_for("root").get("/admin/audit?user=nobody")
    assert shown_ids(response) == []
    assert "data-unknown-user" in response.get_data(as_text=True)


def test_it_filters_by_action(auth, seeded):
    assert page_ids(auth.client_for("root"), action="user_block") == [seeded["root_block"]]


def test_it_filters_by_text_in_details(auth, seeded):
    client = auth.client_for("root")
    assert page_ids(client, q="nightly") == [seeded["oleg_deploy"]]
    assert page_ids(client, q="NightLY") == [seeded["oleg_deploy"]]  # in any case, on either database
    assert page_ids(client, q="ghost") == [seeded["failed"]]
    assert page_ids(client, q="nothing like this") == []


def test_it_treats_like_wildcards_in_the_text_literally(auth, db, users, seeded):
    special = add_row(db, "request_edit", user_id=users["dana"], details={"note": "50%_done"})
    client = auth.client_for("root")
    assert page_ids(client, q="50%_") == [special]
    assert page_ids(client, q="5%d") == []


def test_it_filters_by_date_range_inclusive(auth, seeded):
    client = auth.client_for("root")
    assert page_ids(client, **{"from": "2026-03-02", "to": "2026-03-03"}) == [
        seeded["root_block"],
        seeded["oleg_deploy"],
        seeded["oleg_build"],
    ]
    assert page_ids(client, **{"from": "2026-03-04", "to": "2026-03-04"}) == [seeded["failed"]]
    assert page_ids(client, to="2026-03-01") == [seeded["dana_login"]]


def test_it_filters_by_target(auth, users, seeded):
    client = auth.client_for("root")
    # the newest "user" row is root's own login, made by client_for
    assert page_ids(client, target_type="user")[1:] == [seeded["root_block"], seeded["dana_login"]]
    assert page_ids(client, target_type="user", target_id=users["bob"]) == [seeded["root_block"]]
    assert page_ids(client, target_type="deployment") == [seeded["oleg_deploy"]]


def test_it_combines_filters(auth, users, seeded):
    client = auth.client_for("root")
    assert page_ids(client, user="oleg", action="build_start") == [seeded["oleg_build"]]
    assert page_ids(
        client,
        user="oleg",
        q="nightly",
        target_type="deployment",
        **{"from": "2026-03-03", "to": "2026-03-03"},
    ) == [seeded["oleg_deploy"]]
    assert page_ids(client, user="oleg", action="user_block") == []
    assert page_ids(client, user="dana", to="2026-03-04") == [seeded["dana_login"]]


def test_it_keeps_the_filters_in_the_form_and_the_csv_link(auth, seeded):
    page = (
        auth.client_for("root")
        .get("/admin/audit?user=oleg&action=build_start&q=x&from=2026-03-01&to=2026-03-09&target_type=build")
        .get_data(as_text=True)
    )
    assert 'name="user" value="oleg"' in page
    assert '<option value="build_start" selected>' in page
    assert 'name="from" type="date" value="2026-03-01"' in page
    csv_link = re.search(r'href="(/admin/audit\.csv[^"]*)"', page).group(1)
    for part in (
        "user=oleg",
        "action=build_start",
        "q=x",
        "from=2026-03-01",
        "to=2026-03-09",
        "target_type=build",
    ):
        assert part in csv_link


def test_it_offers_every_action_in_the_filter(auth):
    page = auth.client_for("root").get("/admin/audit").get_data(as_text=True)
    for action in audit.ACTIONS:
        assert f'<option value="{action}"' in page


@pytest.mark.parametrize(
    "args, field",
    [
        ({"action": "drop_tables"}, "action"),
        ({"from": "2026-13-01"}, "from"),
        ({"from": "01.03.2026"}, "from"),
        ({"to": "yesterday"}, "to"),
        ({"from": "2026-03-05", "to": "2026-03-01"}, "to"),
        ({"target_type": "planet"}, "target_type"),
        ({"target_type": "user", "target_id": "abc"}, "target_id"),
        ({"q": "x" * 201}, "q"),
    ],
)
def test_it_rejects_bad_filters(auth, seeded, args, field):
    client = auth.client_for("root")
    response = client.get("/admin/audit", query_string=args)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert f'data-error-for="{field}"' in page and "data-audit-id" not in page
    response = client.get("/admin/audit.csv", query_string=args)
    assert response.status_code == 400 and field in response.json["errors"]


# --- rows and links ---------------------------------------------------------------------


def test_it_shows_time_user_action_target_details_and_ip(auth, seeded):
    page = auth.client_for("root").get("/admin/audit?action=deployment_stop").get_data(as_text=True)
    row = page.split(f'data-audit-id="{seeded["oleg_deploy"]}"', 1)[1].split("</tr>", 1)[0]
    for text in (
        "2026-03-03 10:00:00",
        "oleg",
        "deployment_stop",
        "развёртывание остановлено",
        "развёртывание #5",
        "reason: nightly window",
        "10.0.0.7",
    ):
        assert text in row


def test_it_links_targets_that_still_exist(auth, db, users):
    request_id = factories.make_request(db, owner_id=users["dana"])
    image_id = factories.make_image(db, request_id=request_id)
    build_id = factories.make_build(db, request_id=request_id, built_by=users["oleg"])
    deployment_id = factories.make_deployment(db, image_id=image_id)
    for target_type, target_id in (
        ("request", request_id),
        ("image", image_id),
        ("build", build_id),
        ("deployment", deployment_id),
        ("deployment", 999),
        ("user", users["dana"]),
        ("user", 999),
    ):
        add_row(db, "request_edit", target_type=target_type, target_id=target_id)
    page = auth.client_for("root").get("/admin/audit?action=request_edit").get_data(as_text=True)
    assert f'href="/requests/{request_id}" data-target-link' in page
    assert f'href="/images/{image_id}" data-target-link' in page
    assert f'href="/builds/{build_id}" data-target-link' in page
    assert f'href="/deployments/{deployment_id}" data-target-link' in page
    assert 'href="/admin/users?q=dana" data-target-link' in page
    assert "/deployments/999" not in page and "развёртывание #999" in page
    assert "пользователь #999" in page


def test_it_checks_targets_with_one_query_per_type(db, users):
    pairs = (
        [("deployment", n) for n in range(1, 60)]
        + [("request", n) for n in range(1, 60)]
        + [("user", users["dana"]), ("token", 1), (None, None)]
    )
    statements = []

    class Recording:  # the connection, recording each statement (on either database)
        def execute(self, sql, params=()):
            statements.append(sql)
            return db.execute(sql, params)

    found = audit_queries.existing_targets(Recording(), pairs)
    assert len(statements) == 3  # deployment, request, user; tokens have no page
    assert found == {("user", users["dana"]): "dana"}


# --- pagination ---------------------------------------------------------------------------


@pytest.fixture
def many(db, users):
    db.execute("DELETE FROM audit_log")
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO audit_log (user_id, action, target_type, target_id, details, created_at) "
        "VALUES (?, ?, 'request', ?, ?, '2026-03-10T12:00:00Z')",
        [
            (
                users["oleg"] if n % 2 else users["dana"],
                "request_edit" if n % 5 else "request_submit",
                n,
                json.dumps({"n": n}),
            )
            for n in range(250)
        ],
    )
    db.execute("COMMIT")
    return [row[0] for row in db.execute("SELECT id FROM audit_log ORDER BY id DESC")]


def walk(client, url, rel):
    pages = []
    while url:
        response = client.get(url)
        pages.append(shown_ids(response))
        url = link(response, rel)
        assert len(pages) < 20
    return pages


def test_it_walks_older_and_back_newer_without_gaps(auth, many):
    client = auth.client_for("root")
    login_id = max(shown_ids(client.get("/admin/audit")))
    everything = [login_id] + many
    pages = walk(client, "/admin/audit", "older")
    assert [len(p) for p in pages] == [50, 50, 50, 50, 50, 1]
    assert [i for p in pages for i in p] == everything
    last = client.get("/admin/audit", query_string={"before": pages[-1][0] + 1})
    back = walk(client, link(last, "newer"), "newer")
    assert [i for p in reversed(back) for i in p] == everything[:-1]
    assert link(client.get("/admin/audit"), "newer") is None


def test_it_keeps_filters_while_paging(auth, many, users):
    client = auth.client_for("root")
    pages = walk(client, "/admin/audit?user=oleg&action=request_edit", "older")
    flat = [i for p in pages for i in p]
    assert len(flat) == 100 and len(pages) == 2  # 125 of oleg's, minus his 25 submits
    assert "user=oleg" in link(client.get("/admin/audit?user=oleg&action=request_edit"), "older")


@pytest.mark.parametrize("bogus", ["abc", "-5", "0", "1e9", "99999999999999999999999", "", "1 OR 1=1"])
def test_it_survives_a_bogus_cursor(auth, many, bogus):
    client = auth.client_for("root")
    for name in ("before", "after"):
        response = client.get("/admin/audit", query_string={name: bogus})
        assert response.status_code == 200
        assert len(shown_ids(response)) == 50


def test_it_shows_an_empty_page_past_the_oldest_row(auth, many):
    client = auth.client_for("root")
    response = client.get("/admin/audit?before=1")
    assert shown_ids(response) == [] and link(response, "newest") is not None
    response = client.get("/admin/audit?after=99999999")
    assert len(shown_ids(response)) == 50  # nothing newer: the newest page


# --- CSV ---------------------------------------------------------------------------------


def read_csv(response) -> list[list[str]]:
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="samosval-audit-')
    return list(csv.reader(io.StringIO(response.get_data().decode("utf-8-sig"))))


def test_it_exports_the_filtered_view_as_csv(auth, seeded, users):
    rows = read_csv(auth.client_for("root").get("/admin/audit.csv?user=oleg"))
    assert rows[0] == ["id", "time", "user", "action", "target_type", "target_id", "details", "ip"]
    assert rows[1] == [
        str(seeded["oleg_deploy"]),
        "2026-03-03T10:00:00Z",
        "oleg",
        "deployment_stop",
        "deployment",
        "5",
        '{"reason": "nightly window"}',
        "10.0.0.7",
    ]
    assert [r[0] for r in rows[1:]] == [str(seeded["oleg_deploy"]), str(seeded["oleg_build"])]


def test_it_exports_everything_in_batches(auth, many):
    rows = read_csv(auth.client_for("root").get("/admin/audit.csv?action=request_edit"))
    assert len(rows) == 1 + 200
    assert [int(r[0]) for r in rows[1:]] == [i for i in many if i in set(int(r[0]) for r in rows[1:])]


@pytest.mark.parametrize("payload", ['=HYPERLINK("http://evil")', "+1+2", "-2+3", "@SUM(A1)"])
def test_it_guards_against_formula_injection(auth, db, users, payload):
    add_row(db, "login_failed", details=payload, ip=payload)
    rows = read_csv(auth.client_for("root").get("/admin/audit.csv?action=login_failed"))
    assert rows[1][6] == "'" + payload and rows[1][7] == "'" + payload


def test_it_keeps_unicode_in_csv(auth, db, users):
    add_row(db, "request_edit", user_id=users["dana"], details={"note": "Привет"})
    rows = read_csv(auth.client_for("root").get("/admin/audit.csv?q=Привет"))
    assert rows[1][6] == '{"note": "Привет"}'


# --- 100,000 rows ----------------------------------------------------------------------------

FILTER_CASES = [
    AuditFilters(),
    AuditFilters(user="oleg"),
    AuditFilters(action="login"),
    AuditFilters(q="w12"),
    AuditFilters(date_from="2026-02-01", date_to="2026-02-10"),
    AuditFilters(target_type="deployment"),
    AuditFilters(target_type="deployment", target_id=42),
    AuditFilters(
        user="oleg", action="login", q="w1", date_from="2026-01-01", date_to="2026-12-31", target_type="user"
    ),
]


def page_plan(db, sql: str, params) -> tuple[str, list[str]]:
    """The plan of a page query, and what it must not contain: a full read of the log
    or a sort of all its matches (SQLite), a sequential scan of the log (PostgreSQL,
    where a bitmap scan of an index sorts only the few rows it found)."""
    if dialect(db) == "postgresql":
        return " | ".join(row[0] for row in db.execute("EXPLAIN " + sql, params)), ["Seq Scan on audit_log"]
    plan = " | ".join(row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql, params))
    return plan, ["SCAN a", "SCAN audit_log", "TEMP B-TREE"]


def test_it_stays_on_indexes_with_100k_rows(auth, db, users):
    actions = sorted(audit.ACTIONS)
    user_ids = sorted(users.values())
    started = time.perf_counter()
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO audit_log (user_id, action, target_type, target_id, details, created_at, ip) "
        "VALUES (?, ?, ?, ?, ?, ?, '10.0.0.1')",
        (
            (
                user_ids[n % len(user_ids)],
                actions[n % len(actions)],
                audit.TARGET_TYPES[n % len(audit.TARGET_TYPES)],
                n % 5000,
                f'{{"word": "w{n % 997}"}}',
                f"2026-{1 + n // 10_000:02d}-{1 + n % 28:02d}T12:00:00Z",
            )
            for n in range(100_000)
        ),
    )
    db.execute("COMMIT")
    if dialect(db) == "postgresql":
        db.execute("ANALYZE audit_log")  # what autovacuum would do after such a load
    seeded_in = time.perf_counter() - started
    # Each row also goes into the trigram search index (about 3 s per 100,000 rows
    # on a quiet core): generous for a busy CI box.
    assert seeded_in < 40
    for filters in FILTER_CASES:
        for cursor in ({}, {"before": 50_000}, {"after": 50_000}):
            sql, params = audit_queries.search_sql(filters, **cursor, db=db)
            plan, forbidden = page_plan(db, sql, params)
            assert not [step for step in forbidden if step in plan], (filters, plan)
    client = auth.client_for("root")
    started = time.perf_counter()
    response = client.get("/admin/audit?before=60000")
    assert len(shown_ids(response)) == 50
    older = link(response, "older")
    assert len(shown_ids(client.get(older))) == 50
    assert len(shown_ids(client.get("/admin/audit?action=login&before=90000"))) == 50
    # generous bound for a slow CI box; locally this is a few milliseconds each
    assert time.perf_counter() - started < 3
