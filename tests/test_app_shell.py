"""The UI shell: headers, navigation per role, language, error pages, CLI."""

from __future__ import annotations

import re

import pytest

from samosval.db import connect


def nav_endpoints(html: str) -> set[str]:
    return set(re.findall(r'data-nav="([^"]+)"', html))


def test_it_sends_security_headers(client):
    response = client.get("/login")
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "'unsafe-inline'" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"]


def test_it_allows_only_the_chartjs_origin_besides_self(app):
    app.config["CHARTJS_URL"] = "https://cdn.jsdelivr.net/npm/chart.js@4.5.1/dist/chart.umd.min.js"
    csp = app.test_client().get("/login").headers["Content-Security-Policy"]
    script_src = re.search(r"script-src ([^;]+)", csp).group(1).split()
    assert script_src == ["'self'", "https://cdn.jsdelivr.net"]


def test_it_sets_session_cookie_flags(client, users):
    response = client.post("/login", data={"username": "dana", "password": "password123"})
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_it_shows_admins_the_admin_navigation(auth):
    html = auth.client_for("root").get("/dashboard").get_data(as_text=True)
    assert "dashboard.dashboard" in nav_endpoints(html)
    admin_only = {"admin.list_users", "admin.audit"}
    registered = set(auth.app.view_functions)
    assert admin_only & registered <= nav_endpoints(html)


@pytest.mark.parametrize("username", ["oleg", "dana"])
def test_it_hides_admin_navigation_from_others(auth, username):
    html = auth.client_for(username).get("/dashboard").get_data(as_text=True)
    assert not {"admin.list_users", "admin.audit"} & nav_endpoints(html)


def test_it_hides_staff_navigation_from_developers(auth):
    html = auth.client_for("dana").get("/dashboard").get_data(as_text=True)
    assert not {"alerts.list_alerts", "hooks.list_deliveries"} & nav_endpoints(html)


def test_it_speaks_russian_by_default_and_english_on_request(auth, db):
    client = auth.client_for("dana")
    assert "Панель" in client.get("/dashboard").get_data(as_text=True)
    response = client.post("/lang", data={"lang": "en", "next": "/dashboard"})
    assert response.location == "/dashboard"
    html = client.get("/dashboard").get_data(as_text=True)
    assert "Requests by status" in html and 'lang="en"' in html
    # remembered per user: a new session of the same user is in English too
    assert db.execute("SELECT locale FROM users WHERE username='dana'").fetchone()[0] == "en"
    other = auth.app.test_client()
    auth.login(other, "dana")
    assert "Requests by status" in other.get("/dashboard").get_data(as_text=True)


def test_it_switches_language_before_login(client):
    client.post("/lang", data={"lang": "en", "next": "/login"})
    assert "Log in to Samosval" in client.get("/login").get_data(as_text=True)


def test_it_refuses_a_foreign_next_after_switching_language(client):
    response = client.post("/lang", data={"lang": "en", "next": "https://evil.example/"})
    assert response.location == "/"


def test_it_renders_a_themed_404(auth):
    response = auth.client_for("dana").get("/no-such-page")
    assert response.status_code == 404
    assert 'data-status-code="404"' in response.get_data(as_text=True)


def test_it_answers_api_errors_in_json(auth):
    response = auth.client_for("dana").get("/api/no-such-endpoint")
    assert response.status_code == 404 and "error" in response.get_json()


def test_it_shows_the_dashboard_counts(auth, db):
    html = auth.client_for("root").get("/dashboard").get_data(as_text=True)
    assert 'data-card="requests"' in html and 'data-card="deployments"' in html
    assert 'data-count="draft"' in html


def test_it_shows_recent_events_to_admins(auth):
    html = auth.client_for("root").get("/dashboard").get_data(as_text=True)
    assert 'data-action="login"' in html


def test_cli_creates_a_user(runner, app):
    result = runner.invoke(
        args=["create-user", "newdev", "--role", "operator"], input="longpassword\nlongpassword\n"
    )
    assert result.exit_code == 0, result.output
    db = connect(app.config["DATABASE"])
    assert db.execute("SELECT role FROM users WHERE username='newdev'").fetchone()[0] == "operator"


def test_cli_refuses_a_bad_username(runner):
    result = runner.invoke(
        args=["create-user", "X!", "--role", "developer"], input="longpassword\nlongpassword\n"
    )
    assert result.exit_code != 0


def test_cli_init_db_on_a_brand_new_instance_says_what_it_created(tmp_path):
    from samosval import create_app

    def flask_init_db():  # each `flask --app app init-db` loads the app anew
        app = create_app(
            {
                "TESTING": True,
                "SECRET_KEY": "k",
                "SIMULATOR_AUTOSTART": False,
                "DATABASE": str(tmp_path / "new" / "samosval.sqlite3"),
            },
            instance_path=str(tmp_path / "new"),
        )
        return app.test_cli_runner().invoke(args=["init-db"])

    result = flask_init_db()
    assert result.exit_code == 0 and "Database created at" in result.output
    assert "'root' created" in result.output
    again = flask_init_db()
    assert "already up to date" in again.output and "already exists" in again.output


def test_it_describes_recent_events_in_words_and_links_their_targets(auth, sample, db):
    from samosval import audit

    audit.record(
        db,
        "deployment_stop",
        user_id=1,
        target_type="deployment",
        target_id=sample["deployment_id"],
        now=1_800_000_000.0,
    )
    html = auth.client_for("root").get("/dashboard").get_data(as_text=True)
    assert "развёртывание остановлено" in html
    assert f'href="/deployments/{sample["deployment_id"]}"' in html


def test_the_readme_documents_every_setting():
    """Configuration in one place: every SAMOSVAL_* variable and config key has a README row."""
    from pathlib import Path

    from samosval import DEFAULTS, ENV_SETTINGS

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert [k for k in ENV_SETTINGS if f"`SAMOSVAL_{k}`" not in readme] == []
    assert [k for k in DEFAULTS if f"`{k}`" not in readme and f"`SAMOSVAL_{k}`" not in readme] == []


def admin_menu(html: str) -> str:
    match = re.search(r'<details class="nav-menu".*?</details>', html, re.S)
    return match.group(0) if match else ""


def test_admin_only_pages_sit_under_one_admin_menu(auth):
    html = auth.client_for("root").get("/dashboard").get_data(as_text=True)
    menu = admin_menu(html)
    admin_only = {
        "admin.list_users",
        "admin.audit",
        "hooks.list_tokens",
        "notifications.list_channels",
        "releases.environments",
    }
    assert nav_endpoints(menu) == admin_only | {"admin-menu"}
    top_level = nav_endpoints(html.replace(menu, ""))
    assert not admin_only & top_level
    assert len(top_level) <= 9  # the main links, Approvals and the menu fit one row


def test_operators_get_no_admin_menu(auth):
    html = auth.client_for("oleg").get("/dashboard").get_data(as_text=True)
    assert admin_menu(html) == "" and "hooks.list_deliveries" in nav_endpoints(html)


@pytest.mark.parametrize(
    "path, current",
    [
        ("/notifications", "notifications.my_subscriptions"),
        ("/admin/notifications", "notifications.list_channels"),
        ("/webhooks", "hooks.list_deliveries"),
        ("/admin/tokens", "hooks.list_tokens"),
        ("/admin/audit", "admin.audit"),
    ],
)
def test_it_marks_the_current_page_only(auth, path, current):
    html = auth.client_for("root").get(path).get_data(as_text=True)
    assert re.findall(r'data-nav="([^"]+)" class="active" aria-current="page"', html) == [current]
    assert ('<summary data-nav="admin-menu" class="active">' in html) == (
        current in nav_endpoints(admin_menu(html))
    )
