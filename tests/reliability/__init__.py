"""Load and fault tests (issue 9): helpers shared by the soak, crash-recovery and
SSE-hygiene tests. The real app runs as ``python app.py`` in a subprocess bound
to 127.0.0.1; clients speak plain HTTP/1.1 through ``http.client`` (keep-alive,
a tiny cookie jar, the CSRF token scraped from pages like a browser would)."""

from __future__ import annotations

import http.client
import re
import sqlite3
import urllib.parse
from pathlib import Path

from werkzeug.security import generate_password_hash

from samosval.db import connect, init_db_if_needed
from tests.live import AppProcess, free_port  # noqa: F401  (re-exported for the tests)

PASSWORD = "password123"
CSRF_META_RE = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
CSRF_INPUT_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def prepare_database(instance: Path, backend: dict | None = None) -> str:
    """Create the schema before the server starts, so seeds can go in first; returns
    the target for ``connect``. ``backend`` (the ``live_backend`` fixture, for
    ``AppProcess(backend=...)``): its database, which has the schema already."""
    instance.mkdir(parents=True, exist_ok=True)
    if backend:
        return backend["DATABASE"]
    path = str(instance / "samosval.sqlite3")
    init_db_if_needed(path)
    return path


def add_users(db, names_and_roles) -> dict[str, int]:
    """Insert users with one precomputed hash (hashing per user would dominate set-up)."""
    password_hash = generate_password_hash(PASSWORD)
    ids = {}
    for username, role in names_and_roles:
        ids[username] = db.execute(
            "INSERT INTO users (username, password_hash, role, is_active, created_at) "
            "VALUES (?, ?, ?, 1, '2026-01-01T00:00:00Z')",
            (username, password_hash, role),
        ).lastrowid
    return ids


class Client:
    """One browser-like user: a keep-alive connection and its cookies."""

    def __init__(self, port: int, timeout: float = 30.0):
        self.port = port
        self.timeout = timeout
        self.cookies: dict[str, str] = {}
        self.csrf: str | None = None
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def cookie_header(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())

    def _remember(self, response) -> None:
        for raw in response.msg.get_all("Set-Cookie") or []:
            pair = raw.split(";", 1)[0]
            name, _, value = pair.partition("=")
            if "expires=thu, 01 jan 1970" in raw.lower() or value == "":
                self.cookies.pop(name.strip(), None)
            else:
                self.cookies[name.strip()] = value.strip()

    def request(self, method: str, path: str, form: dict | None = None, headers=None):
        """Returns (status, headers, body). A GET whose kept-alive connection turns out
        to be closed is retried once on a fresh one; a POST never is (it might
        have been applied)."""
        body = urllib.parse.urlencode(form).encode() if form is not None else None
        send = {"Cookie": self.cookie_header()} if self.cookies else {}
        if body is not None:
            send["Content-Type"] = "application/x-www-form-urlencoded"
        send.update(headers or {})
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request(method, path, body=body, headers=send)
                response = conn.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if method != "GET" or attempt == 2:
                    raise
                continue
            self._remember(response)
            if response.getheader("Connection", "").lower() == "close":
                self.close()
            headers_out = {k.lower(): v for k, v in response.getheaders()}
            return response.status, headers_out, data
        raise AssertionError("unreachable")

    def get(self, path: str, headers=None):
        return self.request("GET", path, headers=headers)

    def post(self, path: str, form: dict | None = None, headers=None):
        form = dict(form or {})
        if self.csrf and "csrf_token" not in form:
            form["csrf_token"] = self.csrf
        return self.request("POST", path, form=form, headers=headers)

    def scrape_csrf(self, html: bytes) -> str | None:
        text = html.decode(errors="replace")
        found = CSRF_META_RE.search(text) or CSRF_INPUT_RE.search(text)
        if found:
            self.csrf = found.group(1)
        return self.csrf

    def login(self, username: str, password: str = PASSWORD) -> None:
        status, _headers, page = self.get("/login")
        assert status == 200
        token = self.scrape_csrf(page)
        status, headers, body = self.request(
            "POST", "/login", form={"username": username, "password": password, "csrf_token": token}
        )
        assert status == 302 and "/login" not in headers.get("location", ""), (
            f"login as {username} failed: {status} {body[:200]!r}"
        )
        status, _headers, page = self.get("/dashboard")
        assert status == 200
        self.scrape_csrf(page)  # the token of the logged-in session


def request_form(image_name: str, owner: str, run_commands: str) -> dict:
    return {
        "image_name": image_name,
        "repo_url": "https://github.com/acme/billing.git",
        "repo_branch": "main",
        "update_mode": "continuous",
        "target_commit": "",
        "base_image": "python:3.12-slim",
        "run_commands": run_commands,
        "entrypoint": "gunicorn app:app",
        "ram_mb": "512",
        "vcpu": "1",
        "version_tag": "1.0.0",
        "collaborators": "",
        "owner": owner,
    }


def query(db_path: str, sql: str, params=()) -> list[dict]:
    db = connect(db_path)
    try:
        return [dict(row) for row in db.execute(sql, params).fetchall()]
    finally:
        db.close()


def integrity(db_path: str) -> tuple[str, list]:
    db = sqlite3.connect(db_path)
    try:
        return db.execute("PRAGMA integrity_check").fetchone()[0], db.execute(
            "PRAGMA foreign_key_check"
        ).fetchall()
    finally:
        db.close()


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def server_log_problems(text: str) -> dict[str, list[str]]:
    """What must never appear in a server log after a clean run."""
    lines = text.splitlines()
    return {
        "database is locked": [line for line in lines if "database is locked" in line],
        "5xx": [line for line in lines if re.search(r" -> 5\d\d in ", line)],
        "traceback": [line for line in lines if line.startswith("Traceback")],
    }
