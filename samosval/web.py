"""The web layer's shared pieces: the answer to a refused command, the role
decorator, and fetch-or-404 lookups that hide what a user may not see.

Rules themselves live in ``permissions`` (who may) and ``domain`` (what the state
allows); this module only turns their answers into HTTP.
"""

from __future__ import annotations

from functools import cached_property, wraps
from urllib.parse import urlsplit

import flask
from flask import abort, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter

from . import permissions
from .auth import wants_json
from .db import get_db
from .domain import NUL_REFUSED, Refused, holds_nul, without_nul
from .domain import builds as build_domain
from .domain import deployments as deployment_domain
from .domain import images as image_domain
from .domain import releases as release_domain
from .domain import requests as request_domain

# --- where to send a browser back to ------------------------------------------------


def safe_next(target: str | None) -> str | None:
    """Only local paths are honoured: no scheme, no host, no protocol-relative '//'."""
    if not target:
        return None
    target = target.strip()
    parts = urlsplit(target)
    if (
        parts.scheme
        or parts.netloc
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(c) < 32 or ord(c) == 127 for c in target)
    ):
        return None  # a CR/LF would end up in the Location header: a 500, or a split header
    return target


def _page_exists(path: str) -> bool:
    adapter = current_app.url_map.bind(request.host, script_name=request.script_root or None)
    try:
        endpoint, _args = adapter.match(path, method="GET")
    except HTTPException:  # no such page, not a GET page, or a redirect (RequestRedirect)
        return False
    return endpoint != "static" and not path.startswith("/api/")


def nearest_page(path: str) -> str:
    """The closest page above ``path``: ``/deployments/5/stop`` -> ``/deployments/5``,
    ``/alerts/3/resolve`` -> ``/alerts``; the dashboard when nothing above is a page."""
    parts = [part for part in path.split("/") if part]
    while parts:
        parts.pop()
        candidate = "/" + "/".join(parts)
        if parts and _page_exists(candidate):
            return candidate
    return url_for("dashboard.dashboard")


def back_url() -> str:
    """Where a refused form goes back to: the page it came from when that page is on
    this site (the Referer), else the nearest page above the form's URL."""
    referrer = request.referrer
    if referrer:
        parts, here = urlsplit(referrer), urlsplit(request.host_url)
        if parts.scheme == here.scheme and parts.netloc == here.netloc:
            local = safe_next(parts.path + (f"?{parts.query}" if parts.query else ""))
            if local and local != request.path:
                return local
    return nearest_page(request.path)


# --- refusals ----------------------------------------------------------------------------


def refused_response(refusal: Refused):
    """The one answer to a refused command. JSON callers get ``{"error": ...}`` (plus
    the refusal's payload) with its status. Browsers get the error page with the
    status for forbidden, not found and invalid (a form that re-renders with its
    field errors catches ``ValidationError`` itself); a conflict (the page showed a
    state that has changed since) gets a flash and a redirect back, to the fresh
    state."""
    message = _(refusal.message)
    if wants_json():
        body = {"error": message}
        for key, value in refusal.payload.items():
            if key == "errors":
                value = {field: _(text) for field, text in value.items()}
            body[key] = value
        return jsonify(body), refusal.status
    if refusal.kind != "conflict":
        return render_template("errors/error.html", status=refusal.status, message=message), refusal.status
    flash(message, "error")
    return redirect(back_url())


# --- the API's error shape ---------------------------------------------------------------
# Every JSON error answer, whoever produced it (a refusal above, an error handler, a
# route's own 400, the login manager's 401), is ``{"error": "text", ...}``. Under /api
# it leaves as ``{"error": {"code": ..., "message": "text", ...}}`` (issue 22): one
# rewrite here, so that no producer can answer the API in another shape. Pages' own
# JSON (outside /api) keeps the flat form their scripts read.

ERROR_CODES = {
    400: "invalid",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
    500: "internal",
    503: "unavailable",
}


def api_error_body(body: dict, status: int) -> dict:
    """``{"error": text, "code"?: c, **rest}`` -> ``{"error": {"code", "message", **rest}}``."""
    rest = dict(body)
    message = rest.pop("error")
    code = rest.pop("code", None) or ERROR_CODES.get(status, "error")
    return {"error": {"code": code, "message": message, **rest}}


def api_error_shape(response):
    if (
        not request.path.startswith("/api/")
        or response.status_code < 400
        or response.is_streamed
        or not response.is_json
    ):
        return response
    body = response.get_json(silent=True)
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        response.set_data(current_app.json.dumps(api_error_body(body, response.status_code)))
    return response


class BoundedIntConverter(IntegerConverter):
    """``<int:...>`` up to SQLite's largest integer: a bigger id in a URL is a 404 like
    any missing one, not an OverflowError (a 500) when it reaches the database."""

    def __init__(self, map, *args, **kwargs):
        kwargs.setdefault("max", 2**63 - 1)
        super().__init__(map, *args, **kwargs)


class Request(flask.Request):
    """Query strings are filters, never stored, and a list answers any filter: a NUL
    in one becomes U+0001, which no stored text holds (validators refuse control
    characters), so the filter matches nothing instead of reaching PostgreSQL, whose
    text cannot hold a NUL (``users.like_escape`` does the same inside patterns)."""

    @cached_property
    def args(self):
        args = super().args
        if not holds_nul(list(args.items(multi=True))):
            return args
        return self.parameter_storage_class(
            [(without_nul(key), without_nul(value)) for key, value in args.items(multi=True)]
        )


# The commit hook reads its own body (hook_parsing refuses a NUL there) and records
# every call, refusals included, as a delivery.
OWN_BODY_ENDPOINTS = frozenset({"hooks.commit_hook", "hooks.commit_hook_for_token"})


def refuse_nul_input() -> None:
    """The one check of form fields and JSON bodies for U+0000 (``domain.holds_nul``),
    before any route reads them: a 400 naming it, on either database."""
    if request.method in ("GET", "HEAD", "OPTIONS") or request.endpoint in OWN_BODY_ENDPOINTS:
        return
    if holds_nul(list(request.form.items(multi=True))) or holds_nul(request.get_json(silent=True)):
        raise Refused("invalid", NUL_REFUSED)


def init_app(app) -> None:
    """Before any blueprint: the int converter applies to the rules added after it."""
    app.url_map.converters["int"] = BoundedIntConverter
    app.request_class = Request
    app.register_error_handler(Refused, refused_response)
    app.before_request(refuse_nul_input)
    app.after_request(api_error_shape)


# --- roles ---------------------------------------------------------------------------------


def permission_required(rule):
    """Decorator: logged in, and ``rule(current_user)`` (a ``permissions`` function)
    says yes; otherwise 403. Rules about a particular object are asked after it is
    fetched (404 first: hidden stays hidden)."""

    def decorator(view):
        @wraps(view)
        @login_required
        def wrapped(*args, **kwargs):
            if not rule(current_user):
                abort(403)
            return view(*args, **kwargs)

        return wrapped

    return decorator


# --- fetch or 404 ------------------------------------------------------------------------
# A hidden object and a missing one get the same 404: never reveal that it exists.


def get_request_or_404(request_id: int, for_edit: bool = False):
    req = request_domain.get_request(get_db(), request_id)
    if req is None or not permissions.can_view_request(current_user, req):
        abort(404)
    if for_edit and not permissions.can_edit_request(current_user, req):
        abort(403)
    return req


def get_build_or_404(build_id: int):
    build = build_domain.get_build(get_db(), build_id)
    if build is None or not permissions.can_view_build(current_user, build):
        abort(404)
    return build


def get_image_or_404(image_id: int):
    image = image_domain.get_image(get_db(), image_id)
    if image is None or not permissions.can_view_image(current_user, image):
        abort(404)
    return image


def get_deployment_or_404(deployment_id: int):
    deployment = deployment_domain.get_deployment(get_db(), deployment_id)
    if deployment is None or not permissions.can_view_deployment(current_user, deployment):
        abort(404)
    return deployment


def get_release_or_404(release_id: int):
    """The release and its deployment; a release of a hidden deployment is a 404."""
    release = release_domain.get_release(get_db(), release_id)
    if release is None:
        abort(404)
    return release, get_deployment_or_404(release["deployment_id"])
