"""The commit webhook (``POST /api/hooks/commit`` and each token's own
``/api/hooks/commit/<token_id>``), its deliveries page and the admin pages for
webhook tokens.

The hook is exempt from the site-wide CSRF check because CI jobs and git hosts
have no session: ``domain.hook_auth`` authenticates every call, with a token, a
signature, or a logged-in session that sends the CSRF header (the UI button).
Its answers follow the caller's ``Accept-Language`` (English when none is sent);
the button's follow the page's language.
"""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import force_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from flask_wtf.csrf import validate_csrf
from werkzeug.exceptions import RequestEntityTooLarge
from wtforms.validators import ValidationError as CSRFValidationError

from .. import permissions
from ..db import get_db
from ..domain import ValidationError, hook_auth, hook_deliveries, hook_effects
from ..domain import hook_parsing as parsing
from ..domain import tokens as token_domain
from ..i18n import select_locale
from ..pagination import page_number, paginate
from ..security import csrf, limiter
from ..simulator.runtime import get_state, sim_now

bp = Blueprint("hooks", __name__)

OUTCOME_LABELS = {
    "processed": _l("processed"),
    "no_match": _l("no match"),
    "duplicate": _l("duplicate"),
    "ignored": _l("ignored"),
    "pong": _l("ping"),
    "refused": _l("refused"),
    "invalid": _l("invalid"),
}
SOURCE_LABELS = {
    "generic": _l("generic JSON"),
    "github": "GitHub",
    "gitea": "Gitea",
    "forgejo": "Forgejo",
    "gogs": "Gogs",
    "gitlab": "GitLab",
    "bitbucket": "Bitbucket Cloud",
    "bitbucket_dc": "Bitbucket Data Center",
    "ui": _l("button in the UI"),
}


# --- the hook ------------------------------------------------------------------------


def reason_text(stored: str | None) -> str:
    """A stored reason in the reader's language; literal details stay as they are."""
    head, detail = parsing.split_reason(stored)
    if head is None:
        return ""
    text = _(head)
    return f"{text}: {detail}" if detail else text


def summary_text(outcome: str, reason: str | None, restarted: int, marked: int) -> str:
    if outcome == "processed" and (restarted or marked):
        text = _("restarted %(restarted)s, marked %(marked)s", restarted=restarted, marked=marked)
        return f"{text}; {reason_text(reason)}" if reason else text  # pinned or waiting too
    if outcome == "pong":
        return "pong"
    return reason_text(reason)


def _answer_locale(caller: hook_auth.Caller | None) -> str:
    """The button answers in the page's language; everyone else by Accept-Language,
    English when they send none (CI logs are read by people of any language)."""
    if caller is not None and caller.user_id is not None:
        return select_locale()
    return request.accept_languages.best_match(current_app.config["LANGUAGES"]) or "en"


def _respond(result: hook_effects.HookResult, caller: hook_auth.Caller | None = None):
    with force_locale(_answer_locale(caller)):
        text = summary_text(result.outcome, result.reason, len(result.restarted), len(result.marked))
    if result.http_status >= 400:
        payload = {
            "error": text,
            "reason": result.reason,
            "outcome": result.outcome,
            "delivery_id": result.delivery_id,
        }
        if result.missing:
            payload["missing"] = result.missing
        return jsonify(payload), result.http_status
    return jsonify(
        outcome=result.outcome,
        delivery_id=result.delivery_id,
        matched_requests=result.matched,
        restarted_deployments=result.restarted,
        marked_deployments=result.marked,
        pinned_deployments=result.pinned,
        pending_deployments=result.pending,
        ignored=result.reason if result.outcome in ("ignored", "pong") else None,
        duplicate_of=result.duplicate_of,
        reason=result.reason,
        message=text,
    ), result.http_status


def _csrf_valid() -> bool:
    try:
        validate_csrf(request.headers.get("X-CSRFToken") or request.headers.get("X-CSRF-Token"))
    except CSRFValidationError:
        return False
    return True


def _hook_rate_limit():
    return current_app.config["HOOK_RATE_LIMIT"]


@bp.route("/api/hooks/commit", methods=["POST"])
@csrf.exempt
# Every call, refused ones included, leaves a deliveries row: cap what one address
# can send so junk cannot flood the table. Git hosts send far fewer.
@limiter.limit(_hook_rate_limit)
def commit_hook():
    return _handle_commit(token_id=None)


@bp.route("/api/hooks/commit/<int:token_id>", methods=["POST"])
@csrf.exempt
@limiter.limit(_hook_rate_limit)
def commit_hook_for_token(token_id: int):
    """One token's own URL: its signature is checked against that token only."""
    return _handle_commit(token_id=token_id)


def _handle_commit(token_id: int | None):
    # Pushes reach 25 MB; the rest of the site keeps its 1 MiB limit. Werkzeug
    # refuses a larger Content-Length before reading and stops a chunked body at
    # the limit, so memory stays bounded.
    request.max_content_length = parsing.MAX_BODY
    try:
        body = request.get_data(cache=True)
    except RequestEntityTooLarge:
        body = None
    user = current_user._get_current_object() if current_user.is_authenticated else None
    credentials = hook_auth.read_credentials(
        request.headers, request.args, body or b"", request.content_type, user=user, csrf_valid=_csrf_valid
    )
    result, caller = hook_effects.receive(
        get_db(),
        get_state(),
        headers=request.headers,
        body=body,
        content_type=request.content_type,
        credentials=credentials,
        now=sim_now(),
        secret_key=current_app.secret_key,
        token_id=token_id,
    )
    return _respond(result, caller)


# --- deliveries ------------------------------------------------------------------------


@bp.route("/webhooks")
@login_required
def list_deliveries():
    if not permissions.can_view_deliveries(current_user):
        abort(403)
    outcome = request.args.get("outcome") or None
    source = request.args.get("source") or None
    sql, params = hook_deliveries.list_deliveries_sql(outcome, source)
    page = paginate(
        get_db(),
        sql,
        params,
        page_number(request.args.get("page")),
        current_app.config["PER_PAGE"],
        {"outcome": outcome, "source": source},
    )
    return render_template(
        "hooks/list_deliveries.html",
        page=page,
        outcome=outcome,
        source=source,
        outcome_labels=OUTCOME_LABELS,
        source_labels=SOURCE_LABELS,
        id_list=hook_deliveries.id_list,
        summary_text=summary_text,
    )


# --- tokens ------------------------------------------------------------------------------


def _require_token_admin():
    if not permissions.can_manage_tokens(current_user):
        abort(403)


def _render_tokens(new_token: str | None = None, errors=None, name: str = "", status: int = 200):
    response = current_app.make_response(
        (
            render_template(
                "hooks/list_tokens.html",
                tokens=token_domain.list_tokens(get_db()),
                new_token=new_token,
                errors=errors or {},
                name=name,
                hook_url=url_for("hooks.commit_hook", _external=True),
            ),
            status,
        )
    )
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
            get_db(), name, secret_key=current_app.secret_key, actor_id=current_user.id, now=sim_now()
        )
    except ValidationError as exc:
        return _render_tokens(errors=exc.errors, name=name, status=400)
    # Rendered, not redirected: the token is shown this once and stored nowhere in clear.
    return _render_tokens(new_token=token)


@bp.route("/admin/tokens/<int:token_id>/revoke", methods=["POST"])
@login_required
def revoke_token(token_id: int):
    _require_token_admin()
    # A missing or already revoked token is refused by the domain; the app answers it.
    token_domain.revoke_token(get_db(), token_id, actor_id=current_user.id, now=sim_now())
    flash(_("Token revoked: calls with it are refused from now on."), "success")
    return redirect(url_for("hooks.list_tokens"))
