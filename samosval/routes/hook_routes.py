"""The commit webhook (``POST /api/hooks/commit``), its deliveries page and the
admin pages for webhook tokens.

The hook is exempt from the site-wide CSRF check because CI jobs and git hosts
have no session: it authenticates every call itself, with a token, a GitHub
signature, or a logged-in session that sends the CSRF header (the UI button).
"""
from __future__ import annotations


from flask import (Blueprint, abort, current_app, flash, jsonify, redirect, render_template,
                   request, url_for)
from flask_babel import gettext as _, lazy_gettext as _l
from flask_login import current_user, login_required
from flask_wtf.csrf import validate_csrf
from werkzeug.exceptions import RequestEntityTooLarge
from wtforms.validators import ValidationError as CSRFValidationError

from .. import permissions as access
from ..db import get_db
from ..domain import Refused as ActionRefused, ValidationError
from ..domain import hooks
from ..domain import tokens as token_domain
from ..pagination import page_number, paginate
from ..security import csrf, limiter
from ..simulator.runtime import get_state, sim_now

bp = Blueprint("hooks", __name__)

OUTCOME_LABELS = {
    "processed": _l("processed"), "no_match": _l("no match"), "duplicate": _l("duplicate"),
    "ignored": _l("ignored"), "pong": _l("ping"), "refused": _l("refused"), "invalid": _l("invalid"),
}
SOURCE_LABELS = {"generic": _l("generic JSON"), "github": "GitHub", "gitlab": "GitLab",
                 "ui": _l("button in the UI")}


# --- the hook ------------------------------------------------------------------------

def reason_text(stored: str | None) -> str:
    """A stored reason in the reader's language; literal details stay as they are."""
    head, detail = hooks.split_reason(stored)
    if head is None:
        return ""
    text = _(head)
    return f"{text}: {detail}" if detail else text


def summary_text(outcome: str, reason: str | None, restarted: int, marked: int) -> str:
    if outcome == "processed" and (restarted or marked):
        return _("restarted %(restarted)s, marked %(marked)s", restarted=restarted, marked=marked)
    if outcome == "pong":
        return "pong"
    return reason_text(reason)


def _presented_token() -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return (request.headers.get("X-Samosval-Token") or request.headers.get("X-Gitlab-Token")
            or "").strip() or None


def _authenticate(db, body: bytes) -> tuple[hooks.Caller, str | None]:
    """Who is calling, and the refusal reason if nobody acceptable is."""
    token = _presented_token()
    if token is not None:
        row = token_domain.find_by_token(db, token)
        if row is None:
            return hooks.Caller(), hooks.R_UNKNOWN_TOKEN
        caller = hooks.Caller(token_id=row["id"], token_name=row["name"])
        return caller, hooks.R_REVOKED_TOKEN if row["revoked_at"] else None
    signature = request.headers.get("X-Hub-Signature-256")
    if signature:
        row = token_domain.find_by_signature(db, body, signature, current_app.secret_key)
        if row is None:
            return hooks.Caller(), hooks.R_SIGNATURE
        caller = hooks.Caller(token_id=row["id"], token_name=row["name"])
        return caller, hooks.R_REVOKED_TOKEN if row["revoked_at"] else None
    if current_user.is_authenticated:
        caller = hooks.Caller(user_id=current_user.id, username=current_user.username)
        try:
            validate_csrf(request.headers.get("X-CSRFToken") or request.headers.get("X-CSRF-Token"))
        except CSRFValidationError:
            return caller, hooks.R_CSRF
        return caller, None
    return hooks.Caller(), hooks.R_NO_CREDENTIALS


def _respond(result: hooks.HookResult):
    text = summary_text(result.outcome, result.reason, len(result.restarted), len(result.marked))
    if result.http_status >= 400:
        payload = {"error": text, "reason": result.reason, "outcome": result.outcome,
                   "delivery_id": result.delivery_id}
        if result.missing:
            payload["missing"] = result.missing
        return jsonify(payload), result.http_status
    return jsonify(
        outcome=result.outcome,
        delivery_id=result.delivery_id,
        matched_requests=result.matched,
        restarted_deployments=result.restarted,
        marked_deployments=result.marked,
        ignored=result.reason if result.outcome in ("ignored", "pong") else None,
        duplicate_of=result.duplicate_of,
        reason=result.reason,
        message=text,
    ), result.http_status


def _hook_rate_limit():
    return current_app.config["HOOK_RATE_LIMIT"]


@bp.route("/api/hooks/commit", methods=["POST"])
@csrf.exempt
# Every call, refused ones included, leaves a deliveries row: cap what one address
# can send so junk cannot flood the table. Git hosts send far fewer.
@limiter.limit(_hook_rate_limit)
def commit_hook():
    db = get_db()
    now = sim_now()
    detected = hooks.detect_source(request.headers)
    try:
        body = request.get_data(cache=True)
    except RequestEntityTooLarge:
        return _respond(hooks.refuse(db, now, source=detected, reason=hooks.R_TOO_LARGE,
                                     http_status=413))
    caller, refusal = _authenticate(db, body)
    if refusal:
        return _respond(hooks.refuse(db, now, source=detected, reason=refusal, http_status=401,
                                     caller=caller))
    # A logged-in user calling from the page is the "ui" source whatever the body.
    source = "ui" if caller.token_id is None else detected
    try:
        event = hooks.parse(request.headers, body, request.content_type, source=source)
    except hooks.PayloadError as exc:
        return _respond(hooks.refuse(db, now, source=source, http_status=400, outcome="invalid",
                                     reason=hooks.join_reason(exc.reason, exc.detail),
                                     caller=caller, missing=exc.missing))
    matched = None
    if caller.token_id is None:
        # Sessions: staff always; a developer only for a repository and branch of a
        # request they may see. One refusal for "hidden" and "none": nothing leaks.
        matched = hooks.find_requests(db, event.repo_keys, event.branch)
        if not access.is_staff(current_user):
            # Only their own requests: others' deployments on the same repository are
            # neither restarted nor named in the answer.
            matched = [req for req in matched if access.can_simulate_commit(current_user, req)]
            if not matched:
                return _respond(hooks.refuse(db, now, source=source, reason=hooks.R_FORBIDDEN,
                                             http_status=403, event=event, caller=caller))
    return _respond(hooks.process(db, get_state(), event, caller, now, requests=matched))


# --- deliveries ------------------------------------------------------------------------

@bp.route("/webhooks")
@login_required
def list_deliveries():
    if not access.can_view_deliveries(current_user):
        abort(403)
    outcome = request.args.get("outcome") or None
    source = request.args.get("source") or None
    sql, params = hooks.list_deliveries_sql(outcome, source)
    page = paginate(get_db(), sql, params, page_number(request.args.get("page")),
                    current_app.config["PER_PAGE"], {"outcome": outcome, "source": source})
    return render_template("hooks/list_deliveries.html", page=page, outcome=outcome, source=source,
                           outcome_labels=OUTCOME_LABELS, source_labels=SOURCE_LABELS,
                           id_list=hooks.id_list, summary_text=summary_text)


# --- tokens ------------------------------------------------------------------------------

def _require_token_admin():
    if not access.can_manage_tokens(current_user):
        abort(403)


def _render_tokens(new_token: str | None = None, errors=None, name: str = "", status: int = 200):
    response = current_app.make_response((render_template(
        "hooks/list_tokens.html", tokens=token_domain.list_tokens(get_db()), new_token=new_token,
        errors=errors or {}, name=name,
        hook_url=url_for("hooks.commit_hook", _external=True)), status))
    # The page may carry a token in clear: never cache it.
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/admin/tokens")
@login_required
def list_tokens():
    _require_token_admin()
    return _render_tokens()


@bp.route("/admin/tokens/create", methods=["POST"])
@login_required
def create_token():
    _require_token_admin()
    name = request.form.get("name", "")
    try:
        _token_id, token = token_domain.create_token(
            get_db(), name, secret_key=current_app.secret_key, actor_id=current_user.id, now=sim_now())
    except ValidationError as exc:
        return _render_tokens(errors=exc.errors, name=name, status=400)
    # Rendered, not redirected: the token is shown this once and stored nowhere in clear.
    return _render_tokens(new_token=token)


@bp.route("/admin/tokens/<int:token_id>/revoke", methods=["POST"])
@login_required
def revoke_token(token_id: int):
    _require_token_admin()
    try:
        token_domain.revoke_token(get_db(), token_id, actor_id=current_user.id, now=sim_now())
    except ActionRefused as exc:
        if exc.status == 404:
            abort(404)
        flash(_(exc.message), "error")
    else:
        flash(_("Token revoked: calls with it are refused from now on."), "success")
    return redirect(url_for("hooks.list_tokens"))
