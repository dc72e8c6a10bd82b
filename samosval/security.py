"""CSRF, rate limiting and the security headers every response carries."""

from __future__ import annotations

import ipaddress
import logging
import time
from urllib.parse import urlsplit

from flask import current_app, jsonify, render_template, request
from flask_babel import gettext as _
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFProtect
from limits import parse as parse_limit

from .simulator.state import LiveUnavailable

log = logging.getLogger("samosval.security")

# The commit hook authenticates with its own (webhook) tokens, not personal ones.
BEARER_EXCLUDED_PREFIX = "/api/hooks/"


def bearer_token() -> str | None:
    """The personal access token of this call (``Authorization: Bearer``), on /api
    routes only; "" for an empty one; None when the call has none. Such a call is
    authenticated by the token alone: the session cookie is ignored (auth.py)."""
    path = request.path
    if not path.startswith("/api/") or path.startswith(BEARER_EXCLUDED_PREFIX):
        return None
    scheme, _sep, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip()


class TokenAwareCSRFProtect(CSRFProtect):
    """CSRF protects what a browser sends on its own: the session cookie. A call
    carrying a bearer token is authenticated by that token alone (a page cannot make
    a browser add the header), so it needs no CSRF token; a cookie-only call does."""

    def protect(self, *args, **kwargs):
        if bearer_token() is not None:
            return
        super().protect(*args, **kwargs)


csrf = TokenAwareCSRFProtect()
limiter = Limiter(key_func=get_remote_address, default_limits=[])


def client_address() -> str:
    """The caller's address (behind ``TRUSTED_PROXIES``, the forwarded one)."""
    return get_remote_address() or "unknown"


def count_token_failure() -> tuple[bool, bool]:
    """One failed bearer authentication from this address: ``(answer, audit)``.
    ``answer`` is False once the address is over ``API_TOKEN_FAILURE_LIMIT`` (the
    call then gets a 429, unaudited); ``audit`` is also False once every address
    together is over ``API_TOKEN_FAILURE_AUDIT_LIMIT``. So failed uses are audited,
    but anonymous garbage cannot grow the audit log without bound."""
    if not limiter.enabled:
        return True, True
    config = current_app.config
    strategy = limiter.limiter
    try:
        answer = strategy.hit(
            parse_limit(config["API_TOKEN_FAILURE_LIMIT"]), "api-token-failure", client_address()
        )
        audit = answer and strategy.hit(
            parse_limit(config["API_TOKEN_FAILURE_AUDIT_LIMIT"]), "api-token-failure-audit"
        )
    except Exception as exc:  # the shared storage (Redis) is away: count nothing, as limits do
        log.warning("rate limit storage unavailable: %s", exc)
        return True, True
    return answer, audit


def token_failure_retry_after() -> int:
    """Seconds until this address may fail a bearer authentication again."""
    if not limiter.enabled:
        return 1
    try:
        stats = limiter.limiter.get_window_stats(
            parse_limit(current_app.config["API_TOKEN_FAILURE_LIMIT"]), "api-token-failure", client_address()
        )
    except Exception:  # the shared storage (Redis) is away
        return 1
    return max(1, int(stats.reset_time - time.time()) + 1)


def is_loopback_host(host: str | None) -> bool:
    """Does binding to ``host`` serve this machine only? ("0.0.0.0" serves everyone.)"""
    host = (host or "").strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def chartjs_origin(url: str) -> str | None:
    parts = urlsplit(url or "")
    if parts.scheme in {"http", "https"} and parts.netloc:
        return f"{parts.scheme}://{parts.netloc}"
    return None


def content_security_policy() -> str:
    scripts = ["'self'"]
    origin = chartjs_origin(current_app.config.get("CHARTJS_URL"))
    if origin:
        scripts.append(origin)
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src {' '.join(scripts)}",
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "font-src 'self'",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def add_security_headers(response):
    response.headers.setdefault("Content-Security-Policy", content_security_policy())
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if request.path.startswith("/api/") and "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-store"
    return response


LIVE_RETRY_AFTER = 5  # seconds a client waits before asking again for live data


def live_unavailable(exc):
    """Redis (logs, metrics, live streams) cannot be reached: 503 with Retry-After,
    never a 500; a browser reconnects its stream after it."""
    message = _("Live logs and metrics are unavailable right now. Try again shortly.")
    if request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json":
        response = jsonify(error=message)
        response.status_code = 503
    else:
        response = current_app.make_response(
            (render_template("errors/error.html", status=503, message=message), 503)
        )
    response.headers["Retry-After"] = str(LIVE_RETRY_AFTER)
    return response


def configure_shared_limits(config) -> None:
    """With ``REDIS_URL`` the limits count in Redis, so every process shares them (a
    login limit counts across the cluster). The default memory storage is replaced;
    a storage the operator named stays. When Redis is away, limits fall back to this
    process's memory instead of failing the request."""
    url = config.get("REDIS_URL")
    if not url or config.get("RATELIMIT_STORAGE_URI") not in (None, "memory://"):
        return
    config["RATELIMIT_STORAGE_URI"] = url
    config.setdefault("RATELIMIT_STORAGE_OPTIONS", {"socket_connect_timeout": 1, "socket_timeout": 2})
    config["RATELIMIT_KEY_PREFIX"] = f"{config.get('REDIS_PREFIX') or 'samosval:'}limits"
    config.setdefault("RATELIMIT_SWALLOW_ERRORS", True)
    config.setdefault("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)


def init_app(app) -> None:
    csrf.init_app(app)
    configure_shared_limits(app.config)
    limiter.init_app(app)
    app.after_request(add_security_headers)
    app.register_error_handler(LiveUnavailable, live_unavailable)
