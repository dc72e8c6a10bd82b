"""Samosval: a self-service deployment portal with a simulated build/deploy engine."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from flask import Flask

__version__ = "0.1.0"

log = logging.getLogger("samosval")

DEFAULTS = {
    "SECRET_KEY": None,  # from SAMOSVAL_SECRET_KEY or instance/secret_key
    "DATABASE": None,  # defaults to instance/samosval.sqlite3
    # postgresql://... puts the data in PostgreSQL instead (it wins over DATABASE).
    "DATABASE_URL": None,
    "ROOT_PASSWORD": "root",  # the spec's default; SAMOSVAL_ROOT_PASSWORD overrides
    "SIMULATOR_AUTOSTART": True,
    "SIM_SPEED": 1.0,
    "SIM_SEED": None,
    # Share of builds and rollouts that fail, as real ones sometimes do.
    "SIM_BUILD_FAILURE_RATE": 0.15,
    "SIM_DEPLOY_FAILURE_RATE": 0.10,
    # A build or deployment stuck longer than this (seconds, before speed-up) fails.
    "WATCHDOG_BUILD_SECONDS": 600,
    "WATCHDOG_DEPLOY_SECONDS": 120,
    # A release waiting for approval in a protected environment expires after this.
    "APPROVAL_EXPIRY_HOURS": 24,
    # Failed logins only: per address, and per username from one address (a guesser
    # spread over many addresses meets growing per-username delays instead).
    "LOGIN_RATE_LIMIT_IP": "20 per minute",
    "LOGIN_RATE_LIMIT_USER": "5 per minute",
    "LOGIN_DELAY_AFTER_FAILURES": 10,
    "LOGIN_DELAY_MAX_SECONDS": 180,
    # Server-side sessions end after this long unused, and this long after login.
    "SESSION_IDLE_MINUTES": 720,
    "SESSION_MAX_DAYS": 30,
    # root:root must be changed at first login (app.py sets it off a loopback address,
    # wsgi.py always); otherwise it is only nagged about.
    "FORCE_ROOT_PASSWORD_CHANGE": False,
    "HOOK_RATE_LIMIT": "300 per minute",
    # Failed bearer (personal access token) authentications: per address, answered
    # 429 beyond it; and, over every address, how many are audited.
    "API_TOKEN_FAILURE_LIMIT": "30 per minute",
    "API_TOKEN_FAILURE_AUDIT_LIMIT": "300 per minute",
    "RATELIMIT_STORAGE_URI": "memory://",
    "SSE_MAX_STREAMS_PER_USER": 20,
    "SSE_MAX_STREAMS": 10000,  # every open stream is a greenlet and a socket (gevent)
    # Open streams of the whole cluster (Redis only); None: each process caps its own.
    "SSE_MAX_STREAMS_CLUSTER": None,
    # Logs, metrics, live fan-out, rate limits and stream caps in Redis (several
    # processes); None keeps them in this process's memory. Every key gets the prefix.
    "REDIS_URL": None,
    "REDIS_PREFIX": "samosval:",
    "SSE_HEARTBEAT_SECONDS": 15,
    "SSE_RETRY_MS": 3000,
    "CHARTJS_URL": "https://cdn.jsdelivr.net/npm/chart.js@4.5.1/dist/chart.umd.min.js",
    "CHARTJS_SRI": None,  # set below from the pinned default; None for a custom URL
    "MAX_CONTENT_LENGTH": 1024 * 1024,
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SESSION_COOKIE_SECURE": False,  # set SAMOSVAL_SESSION_COOKIE_SECURE=1 behind HTTPS
    "REMEMBER_COOKIE_HTTPONLY": True,
    "WTF_CSRF_TIME_LIMIT": None,  # token valid for the session's life
    "BABEL_DEFAULT_LOCALE": "ru",
    "LANGUAGES": ["ru", "en"],
    "DEMO": False,
    "PER_PAGE": 50,
    "JSON_LOGS": False,
    # /metrics: scrapers send "Authorization: Bearer <METRICS_TOKEN>" or come from METRICS_ALLOW.
    "METRICS_TOKEN": None,
    "METRICS_ALLOW": "127.0.0.1,::1",
    # /healthz fails when the engine has not ticked for this many seconds.
    "HEALTH_MAX_TICK_AGE": 5.0,
    # Number of reverse proxies in front (nginx: 1). Without it, every client would
    # look like 127.0.0.1: rate limits, audit IPs and the /metrics allow-list go wrong.
    "TRUSTED_PROXIES": 0,
    # Secrets at rest (issue 21): sealed under ENCRYPTION_KEY, or a key derived from
    # SECRET_KEY; ENCRYPTION_OLD_KEYS (comma-separated) still open older values.
    "ENCRYPTION_KEY": None,
    "ENCRYPTION_OLD_KEYS": None,
    # Each notification try gives up after this many seconds.
    "NOTIFY_TIMEOUT_SECONDS": 10.0,
}

# SRI of the pinned default Chart.js build (sha384 of the file the CDN serves).
DEFAULT_CHARTJS_SRI = "sha384-jb8JQMbMoBUzgWatfe6COACi2ljcDdZQ2OxczGA3bGNeWe+6DChMTBJemed7ZnvJ"

# Environment variables read into config: SAMOSVAL_<KEY> -> KEY, with a converter.
ENV_SETTINGS = {
    "SECRET_KEY": str,
    "DATABASE": str,
    "DATABASE_URL": str,
    "ROOT_PASSWORD": str,
    "SIM_SPEED": float,
    "SIM_SEED": int,
    "SIMULATOR_AUTOSTART": "bool",
    "SIM_BUILD_FAILURE_RATE": float,
    "SIM_DEPLOY_FAILURE_RATE": float,
    "WATCHDOG_BUILD_SECONDS": float,
    "WATCHDOG_DEPLOY_SECONDS": float,
    "APPROVAL_EXPIRY_HOURS": float,
    "LOGIN_RATE_LIMIT_IP": str,
    "LOGIN_RATE_LIMIT_USER": str,
    "HOOK_RATE_LIMIT": str,
    "API_TOKEN_FAILURE_LIMIT": str,
    "API_TOKEN_FAILURE_AUDIT_LIMIT": str,
    "LOGIN_DELAY_AFTER_FAILURES": int,
    "LOGIN_DELAY_MAX_SECONDS": float,
    "SESSION_IDLE_MINUTES": float,
    "SESSION_MAX_DAYS": float,
    "FORCE_ROOT_PASSWORD_CHANGE": "bool",
    "SSE_MAX_STREAMS_PER_USER": int,
    "SSE_MAX_STREAMS": int,
    "SSE_MAX_STREAMS_CLUSTER": int,
    "REDIS_URL": str,
    "REDIS_PREFIX": str,
    "SSE_HEARTBEAT_SECONDS": float,
    "CHARTJS_URL": str,
    "CHARTJS_SRI": str,
    "SESSION_COOKIE_SECURE": "bool",
    "DEMO": "bool",
    "JSON_LOGS": "bool",
    "METRICS_TOKEN": str,
    "METRICS_ALLOW": str,
    "HEALTH_MAX_TICK_AGE": float,
    "TRUSTED_PROXIES": int,
    "ENCRYPTION_KEY": str,
    "ENCRYPTION_OLD_KEYS": str,
    "NOTIFY_TIMEOUT_SECONDS": float,
}


def _env_config() -> dict:
    found = {}
    for key, kind in ENV_SETTINGS.items():
        raw = os.environ.get(f"SAMOSVAL_{key}")
        if raw is None or raw == "":
            continue
        if kind == "bool":
            found[key] = raw.strip().lower() in {"1", "true", "yes", "on"}
        else:
            found[key] = kind(raw)
    return found


def _load_secret_key(instance_path: str) -> str:
    """Read instance/secret_key, creating it (mode 0600) on first start."""
    path = Path(instance_path) / "secret_key"
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    key = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key)
    return key


def create_app(test_config: dict | None = None, instance_path: str | None = None) -> Flask:
    """Build the app: defaults, then instance/config.py, then SAMOSVAL_* variables,
    then ``test_config``."""
    app = Flask(
        __name__,
        instance_relative_config=True,
        instance_path=instance_path
        or os.environ.get("SAMOSVAL_INSTANCE_PATH")
        or str(Path(__file__).resolve().parent.parent / "instance"),
    )
    app.config.from_mapping(DEFAULTS)
    app.config.from_pyfile("config.py", silent=True)
    app.config.from_mapping(_env_config())
    if app.config["DATABASE_URL"]:
        app.config["DATABASE"] = app.config["DATABASE_URL"]
    if test_config:
        app.config.from_mapping(test_config)
    Path(app.instance_path).mkdir(mode=0o700, parents=True, exist_ok=True)  # owner only
    if not app.config["DATABASE"]:
        app.config["DATABASE"] = str(Path(app.instance_path) / "samosval.sqlite3")
    if not app.config["SECRET_KEY"]:
        app.config["SECRET_KEY"] = _load_secret_key(app.instance_path)
    if app.config["CHARTJS_SRI"] is None and app.config["CHARTJS_URL"] == DEFAULTS["CHARTJS_URL"]:
        app.config["CHARTJS_SRI"] = DEFAULT_CHARTJS_SRI
    if app.config["TRUSTED_PROXIES"]:
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = int(app.config["TRUSTED_PROXIES"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    app.json.ensure_ascii = False
    app.json.sort_keys = False

    from . import auth, db, i18n, observability, security, templating
    from .simulator import runtime

    observability.init_app(app)
    db.init_app(app)
    i18n.init_app(app)
    security.init_app(app)
    auth.init_app(app)
    templating.init_app(app)

    from .routes import register_blueprints

    register_blueprints(app)

    from . import cli

    cli.init_app(app)

    app.extensions["samosval_db_init"] = db.init_db_if_needed(
        app.config["DATABASE"], app.config["ROOT_PASSWORD"]
    )
    runtime.init_app(app)
    from . import notify_worker

    notify_worker.init_app(app)
    return app
