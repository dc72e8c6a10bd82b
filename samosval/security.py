"""CSRF, rate limiting and the security headers every response carries."""
from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from flask import current_app, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFProtect

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
    return "; ".join([
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
    ])


def add_security_headers(response):
    response.headers.setdefault("Content-Security-Policy", content_security_policy())
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if request.path.startswith("/api/") and "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-store"
    return response


def init_app(app) -> None:
    csrf.init_app(app)
    limiter.init_app(app)
    app.after_request(add_security_headers)
