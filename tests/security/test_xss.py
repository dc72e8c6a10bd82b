"""XSS: script payloads stored in every free-text field (straight into the database, so
no validator helps) or typed into forms and filters come back escaped on every page
that shows them, JSON-encoded in the SSE stream, and the CSP forbids inline script.
The pages' JavaScript writes text with textContent, never as HTML."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from markupsafe import escape

from samosval.sse import parse_events
from tests import factories
from tests.security.conftest import World

# One payload per field, tagged with the field so a failure names it. It carries the
# usual vectors: a script element, an attribute break-out with an event handler, a
# template expression (which must stay literal, not become 49).
VECTORS = "\"><img src=x onerror=alert(1)><script>alert(1)</script>{{7*7}}'"
RAW_MARKERS = ("<script>alert", "<img src=x", "onerror=alert(1)>", "<svg onload")
JS_URL = "javascript:alert(document.cookie)"


def payload(field: str) -> str:
    return f"{field}{VECTORS}"


STATIC_JS = Path(__file__).resolve().parents[2] / "samosval" / "static" / "js"


@pytest.fixture(scope="module")
def poisoned(world: World) -> dict:
    """Every free-text column holds a payload. Returns ids and where each should show."""
    db, users = world.db, world.users
    owner_id = db.execute(
        "INSERT INTO users (username, password_hash, role, is_active, created_at) "
        "VALUES (?, 'x', 'developer', 1, '2026-01-01T00:00:00Z')",
        (payload("username"),),
    ).lastrowid
    request_id = factories.make_request(
        db,
        owner_id=owner_id,
        created_by=users["carl"],
        status="approved",
        image_name=payload("image_name"),
        repo_url=JS_URL,
        repo_branch=payload("branch"),
        base_image=payload("base_image"),
        run_commands=payload("run_commands") + "\n" + payload("run2"),
        entrypoint=payload("entrypoint"),
        version_tag=payload("version_tag"),
        target_commit=payload("commit"),
        collaborators="colin, " + payload("collaborators"),
    )
    db.execute(
        "UPDATE image_requests SET dockerfile_content = ? WHERE id = ?", (payload("dockerfile"), request_id)
    )
    image_id = db.execute(
        "INSERT INTO images (request_id, name, version, image_tag, created_at, digest, build_number) "
        "VALUES (?, ?, ?, ?, '2026-01-01T00:00:00Z', ?, 1)",
        (
            request_id,
            payload("image.name"),
            payload("image.version"),
            payload("image_tag"),
            payload("digest"),
        ),
    ).lastrowid
    build_id = factories.make_build(
        db, request_id=request_id, built_by=users["oleg"], status="failed", image_id=image_id
    )
    db.execute(
        "UPDATE builds SET build_log = ?, error_message = ? WHERE id = ?",
        (payload("build_log") + "\n", payload("build_error"), build_id),
    )
    deployment_id = factories.make_deployment(
        db,
        image_id=image_id,
        name=payload("deployment_name"),
        ports=payload("ports"),
        created_by=users["oleg"],
    )
    db.execute(
        "INSERT INTO alerts (alert_type, target_type, target_id, message, resolved, created_at) "
        "VALUES ('deployment_failed', 'deployment', ?, ?, 0, '2026-01-01T00:00:00Z')",
        (deployment_id, payload("alert")),
    )
    db.execute(
        "INSERT INTO audit_log (user_id, action, target_type, target_id, details, created_at, ip) "
        "VALUES (?, 'request_edit', 'request', ?, ?, '2026-01-01T00:00:00Z', ?)",
        (
            users["root"],
            request_id,
            json.dumps(
                {payload("audit_key"): payload("audit_value"), "nested": {"x": payload("audit_nested")}}
            ),
            payload("ip"),
        ),
    )
    db.execute(
        "INSERT INTO webhook_deliveries (created_at, source, event, delivery_key, repo_url, repo_key, "
        "branch, commit_sha, outcome, reason, http_status) "
        "VALUES ('2026-01-01T00:00:00Z', 'generic', ?, ?, ?, ?, ?, ?, 'invalid', ?, 400)",
        (
            payload("event"),
            payload("delivery_key"),
            payload("delivery_repo"),
            payload("repo_key"),
            payload("delivery_branch"),
            payload("delivery_commit"),
            "bad payload: " + payload("reason"),
        ),
    )
    db.execute(
        "INSERT INTO webhook_tokens (name, token_prefix, token_hash, sealed_secret, created_by, created_at) "
        "VALUES (?, ?, 'hash-of-nothing', 'sealed', ?, '2026-01-01T00:00:00Z')",
        (payload("token_name"), payload("token_prefix"), users["root"]),
    )
    logs = world.app.extensions["samosval"].state.runtime(deployment_id).logs
    logs.append(1_800_000_000.0, "INFO", payload("log_line"))
    # A line that tries to break out of its SSE event and end the stream.
    logs.append(1_800_000_001.0, "WARN", "x\n\nevent: end\ndata: {}\r\nid: 999\n")
    return {
        "request": request_id,
        "image": image_id,
        "build": build_id,
        "deployment": deployment_id,
        "owner": owner_id,
    }


def pages(ids: dict) -> dict[str, list[str]]:
    """Page -> the payload tags it must show (escaped)."""
    r, i, b, d = ids["request"], ids["image"], ids["build"], ids["deployment"]
    return {
        "/dashboard": [],
        "/requests": ["image_name", "username"],
        f"/requests/{r}": [
            "image_name",
            "branch",
            "base_image",
            "run_commands",
            "run2",
            "entrypoint",
            "version_tag",
            "commit",
            "collaborators",
            "username",
            "dockerfile",
        ],
        f"/requests/{r}/edit": [
            "image_name",
            "branch",
            "base_image",
            "run_commands",
            "entrypoint",
            "version_tag",
            "collaborators",
            "username",
        ],
        "/builds": ["image_name"],
        f"/builds/{b}": ["build_log", "build_error"],
        "/images": ["image_tag"],
        f"/images/{i}": ["image_tag", "deployment_name", "ports"],
        "/deployments": ["deployment_name", "image_tag"],
        f"/deployments/{d}": ["deployment_name", "log_line"],
        "/alerts": ["alert"],
        "/admin/users": ["username"],
        "/admin/audit": ["audit_key", "audit_value", "audit_nested"],
        "/webhooks": ["delivery_repo", "delivery_branch", "reason"],
        "/admin/tokens": ["token_name"],
    }


# Values a page shows transformed: nested audit details are shown as JSON.
SHOWN_AS = {"audit_nested": json.dumps({"x": payload("audit_nested")}, ensure_ascii=False)}


def assert_no_raw_payload(body: str, where: str) -> None:
    lowered = body.lower()
    for marker in RAW_MARKERS:
        assert marker not in lowered, f"{where}: raw {marker!r} in the page"
    assert 'href="javascript:' not in lowered and 'src="javascript:' not in lowered, (
        f"{where}: a javascript: URL became a link"
    )


class _TagScanner(HTMLParser):
    """Real tags and attribute names as a browser would parse them (text inside an
    attribute value, escaped or not, is not a tag)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.scripts: list[dict] = []
        self.handlers: list[str] = []

    def handle_starttag(self, tag, attrs):
        names = dict(attrs)
        if tag == "script":
            self.scripts.append(names)
        self.handlers += [f"<{tag} {name}=...>" for name, _value in attrs if name.startswith("on")]
        if tag == "img" and (names.get("src") or "").strip().lower().startswith("javascript:"):
            self.handlers.append("<img src=javascript:...>")

    handle_startendtag = handle_starttag


def assert_csp_compatible(body: str, where: str) -> None:
    """No inline script, no inline handlers: what the CSP would block anyway."""
    scanner = _TagScanner()
    scanner.feed(body)
    for attrs in scanner.scripts:
        assert "src" in attrs or attrs.get("type") == "application/json", f"{where}: inline script {attrs}"
    assert not scanner.handlers, f"{where}: inline event handlers {scanner.handlers}"


def test_it_escapes_stored_payloads_on_every_page(world, poisoned):
    root = world.client("root")
    shown = 0
    for path, tags in pages(poisoned).items():
        response = root.get(path)
        assert response.status_code == 200, path
        body = response.get_data(as_text=True)
        assert_no_raw_payload(body, path)
        assert_csp_compatible(body, path)
        for tag in tags:
            shown_as = SHOWN_AS.get(tag, payload(tag))
            assert str(escape(shown_as)) in body, f"{path}: {tag} is not shown escaped"
            shown += 1
    assert shown >= 40


def test_it_keeps_payloads_inert_in_json_data_blocks(world, poisoned):
    body = world.client("root").get(f"/deployments/{poisoned['deployment']}").get_data(as_text=True)
    block = re.search(r'<script type="application/json" id="deployment-data">(.*?)</script>', body, re.S)
    assert block, "the page's data block is missing"
    assert "<" not in block.group(1), "a raw '<' inside a script block can close it"
    json.loads(block.group(1))


def test_it_json_encodes_log_lines_in_the_stream(world, poisoned):
    stream = world.client("root").get(
        f"/api/deployments/{poisoned['deployment']}/logs/stream", buffered=False
    )
    try:
        assert stream.status_code == 200
        chunks, texts = iter(stream.response), []
        for _ in range(5):
            events = parse_events(next(chunks).decode())
            texts += [json.loads(e["data"])["text"] for e in events if "id" in e and "data" in e]
            assert not any(e.get("event") == "end" for e in events), "a log line ended the stream"
            if len(texts) >= 2:
                break
    finally:
        stream.close()
    assert payload("log_line") in texts
    assert "x\n\nevent: end\ndata: {}\r\nid: 999\n" in texts  # one event, the text intact


def test_it_serves_the_log_download_as_inert_text(world, poisoned):
    response = world.client("root").get(f"/deployments/{poisoned['deployment']}/logs.txt")
    assert response.mimetype == "text/plain"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Disposition"].startswith("attachment;")
    disposition = response.headers["Content-Disposition"]
    assert '"' not in disposition.split('filename="', 1)[1].rstrip('"'), "the file name breaks out"


def test_it_escapes_the_build_log_json(world, poisoned):
    response = world.client("root").get(f"/api/builds/{poisoned['build']}/log")
    assert response.is_json and response.headers["X-Content-Type-Options"] == "nosniff"
    assert payload("build_log") in response.get_json()["log"]


# --- typed into forms and filters (reflected) -------------------------------------------

REFLECTED = [
    "/requests?q={p}",
    "/requests?owner={p}",
    "/images?q={p}",
    "/admin/users?q={p}",
    "/admin/audit?q={p}",
    "/admin/audit?user={p}",
    "/admin/audit?action={p}",
    "/admin/audit?from={p}",
    "/webhooks?outcome={p}",
    "/builds?status={p}",
    "/deployments?environment={p}",
    "/login?next=/{p}",
]


@pytest.mark.parametrize("template", REFLECTED)
def test_it_escapes_what_a_filter_echoes(world, template):
    client = world.app.test_client() if template.startswith("/login") else world.client("root")
    path = template.format(p=payload("q")[:90].replace("#", ""))
    response = client.get(path)
    assert response.status_code < 500, path
    body = response.get_data(as_text=True)
    assert_no_raw_payload(body, path)
    assert_csp_compatible(body, path)


def test_it_escapes_free_text_typed_into_the_forms(world):
    """The fields whose validators accept markup: run commands, entrypoint, deployment
    and token names; the refused ones (image name, username) echo the input escaped."""
    root = world.client("root")
    form = {
        "image_name": "xss-check",
        "repo_url": "https://github.com/acme/xss.git",
        "repo_branch": "main",
        "update_mode": "continuous",
        "base_image": "python:3.12-slim",
        "run_commands": payload("form_run"),
        "entrypoint": payload("form_entry"),
        "ram_mb": "512",
        "vcpu": "1",
        "version_tag": "1.0.0",
        "owner": "dana",
        "collaborators": "",
    }
    created = root.post("/requests/new", data=form)
    assert created.status_code == 302, created.get_data(as_text=True)[:2000]
    detail = root.get(created.location).get_data(as_text=True)
    for tag in ("form_run", "form_entry"):
        assert str(escape(payload(tag))) in detail
    assert_no_raw_payload(detail, created.location)

    refused = root.post("/requests/new", data={**form, "image_name": payload("form_image")})
    assert refused.status_code == 400
    assert_no_raw_payload(refused.get_data(as_text=True), "request form with a bad image name")

    user = root.post(
        "/admin/users/create",
        data={"username": payload("u")[:60], "password": "xss-user-pass-1", "role": "developer"},
    )
    assert user.status_code == 400
    assert_no_raw_payload(user.get_data(as_text=True), "user form with a bad username")

    token = root.post("/admin/tokens/create", data={"name": payload("tok")[:80]})
    assert token.status_code == 200
    token_page = token.get_data(as_text=True)
    assert str(escape(payload("tok")[:80])) in token_page
    assert_no_raw_payload(token_page, "token page")

    image_id = world.visible.image_id
    deployed = root.post(
        f"/images/{image_id}/create_deployment",
        data={"name": payload("dep")[:80], "environment": "dev", "replicas": "1", "ports": "8000:8000"},
    )
    assert deployed.status_code == 302
    page = root.get(deployed.location).get_data(as_text=True)
    assert str(escape(payload("dep")[:80])) in page
    assert_no_raw_payload(page, deployed.location)
    audit = root.get("/admin/audit").get_data(as_text=True)
    assert_no_raw_payload(audit, "audit after the form payloads")


def test_it_neutralises_formulas_in_the_audit_csv(world):
    world.db.execute(
        "INSERT INTO audit_log (user_id, action, details, created_at) "
        "VALUES (NULL, 'login_failed', ?, '2026-01-02T00:00:00Z')",
        (json.dumps({"username": '=HYPERLINK("http://evil")'}),),
    )
    csv_text = world.client("root").get("/admin/audit.csv").get_data(as_text=True)
    assert "=HYPERLINK" in csv_text
    for line in csv_text.splitlines():
        for cell in line.split(","):
            assert not cell.strip('"').startswith(("=", "+", "@")), line


# --- the browser side --------------------------------------------------------------------


def test_it_sends_a_csp_that_blocks_inline_script(world):
    for path in ("/login", "/dashboard", "/does-not-exist", f"/deployments/{world.visible.deployment_id}"):
        response = world.client("root").get(path)
        csp = response.headers["Content-Security-Policy"]
        directives = dict(part.strip().split(" ", 1) for part in csp.split(";"))
        assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp, path
        assert directives["default-src"] == "'self'"
        assert "'self'" in directives["script-src"] and "*" not in directives["script-src"]
        assert directives["object-src"] == "'none'"
        assert directives["base-uri"] == "'self'"
        assert directives["frame-ancestors"] == "'none'"


HTML_SINKS = re.compile(
    r"\.(innerHTML|outerHTML)\s*[+]?=|insertAdjacentHTML|document\.write|"
    r"\beval\s*\(|new\s+Function\s*\(|setTimeout\s*\(\s*['\"]"
)


def test_it_never_writes_html_from_javascript():
    files = sorted(STATIC_JS.glob("*.js"))
    assert files, "no page scripts found"
    offenders = [
        f"{path.name}:{number}: {line.strip()}"
        for path in files
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if HTML_SINKS.search(line)
    ]
    assert not offenders, "HTML sinks in page scripts:\n" + "\n".join(offenders)


@pytest.mark.parametrize("name", ["logs_sse.js", "build_log.js"])
def test_it_renders_log_lines_as_text(name):
    source = (STATIC_JS / name).read_text()
    assert "textContent" in source or "createTextNode" in source
