"""Deployments: the list, the live detail page, start/stop/restart/delete, the
metrics JSON, the SSE log stream and the log download."""

from __future__ import annotations

import socket
from datetime import UTC, datetime

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user, login_required

from .. import sse
from ..auth import session_alive_check, token_refusal_check, wants_json
from ..db import get_db
from ..domain import N_
from ..domain import deployments as deployment_domain
from ..domain import environments as environment_domain
from ..domain import releases as release_domain
from ..domain import users as user_domain
from ..pagination import page_number, paginate
from ..simulator.runtime import get_state, sim_now
from ..stream_guard import StreamGuard
from ..timeutil import utcnow_iso
from ..web import get_deployment_or_404

bp = Blueprint("deployments", __name__)

ACTION_MESSAGES = {
    "start": N_("Deployment is starting."),
    "stop": N_("Deployment stopped."),
    "restart": N_("Deployment is restarting."),
    "delete": N_("Deployment deleted."),
}
LOG_TAIL = sse.INITIAL_TAIL
RELEASES_SHOWN = 20  # the newest on the page; the JSON has them all


def status_payload(user, deployment) -> dict:
    """What the page needs to redraw its badge, flags and buttons: the same shape in
    the ``status`` event of the stream and in the JSON answer of an action."""
    return {
        "id": deployment["id"],
        "status": deployment["status"],
        "stopped_by_operator": bool(deployment["stopped_by_operator"]),
        "needs_restart": bool(deployment["needs_restart"]),
        "actions": deployment_domain.offered_actions(user, deployment),
        "updated_at": deployment["updated_at"],
        "pinned": bool(deployment["pinned_at"]),
        "current_release_id": deployment["current_release_id"],
    }


def _clock(ts: float) -> str:
    """Log and chart times: UTC like every time the portal shows."""
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%H:%M:%S")


# --- the list -------------------------------------------------------------------


@bp.route("/deployments")
@login_required
def list_deployments():
    status = request.args.get("status", "")
    environment = request.args.get("environment", "")
    if status not in deployment_domain.DEPLOYMENT_STATUSES:
        status = ""
    if environment not in deployment_domain.ENVIRONMENTS:
        environment = ""
    sql, params = deployment_domain.list_deployments_sql(current_user, status, environment)
    page = paginate(
        get_db(),
        sql,
        params,
        page_number(request.args.get("page")),
        current_app.config["PER_PAGE"],
        {"status": status, "environment": environment},
    )
    return render_template(
        "deployments/list_deployments.html",
        page=page,
        status=status,
        environment=environment,
        statuses=deployment_domain.DEPLOYMENT_STATUSES,
        environments=deployment_domain.ENVIRONMENTS,
    )


# --- the detail page --------------------------------------------------------------


@bp.route("/deployments/<int:deployment_id>")
@login_required
def deployment_detail(deployment_id: int):
    deployment = get_deployment_or_404(deployment_id)
    runtime = get_state().existing(deployment_id)
    lines = runtime.logs.tail(LOG_TAIL) if runtime else []
    latest = runtime.metrics.latest() if runtime else None
    return render_template(
        "deployments/deployment_detail.html",
        deployment=deployment,
        lines=[
            {"seq": line.seq, "level": line.level, "text": line.text, "time": _clock(line.ts)}
            for line in lines
        ],
        latest=({"time": _clock(latest[0]), "cpu": latest[1], "ram": latest[2]} if latest else None),
        last_seq=lines[-1].seq if lines else 0,
        payload=status_payload(current_user, deployment),
        releases=release_domain.list_releases(get_db(), deployment_id, limit=RELEASES_SHOWN),
        releases_limit=RELEASES_SHOWN,
        environment_protected=environment_domain.is_protected(get_db(), deployment["environment"]),
    )


# --- actions ------------------------------------------------------------------------


@bp.route("/deployments/<int:deployment_id>/<any(start, stop, restart, delete):action>", methods=["POST"])
@login_required
def deployment_action(deployment_id: int, action: str):
    deployment = get_deployment_or_404(deployment_id)
    db = get_db()
    # Refusals (not this user's to control, or not in this status) are the domain's.
    new_status = deployment_domain.perform_action(
        db, get_state(), deployment, current_user, action, sim_now()
    )
    if new_status == "deleted":
        if wants_json():
            return jsonify(status="deleted", id=deployment_id)
        flash(_(ACTION_MESSAGES[action]), "success")
        return redirect(url_for(".list_deployments"))
    if wants_json():
        fresh = deployment_domain.get_deployment(db, deployment_id)
        if fresh is None:  # deleted by someone else a moment later
            return jsonify(status="deleted", id=deployment_id)
        return jsonify(status_payload(current_user, fresh))
    flash(_(ACTION_MESSAGES[action]), "success")
    return redirect(url_for(".deployment_detail", deployment_id=deployment_id))


# --- metrics JSON ---------------------------------------------------------------------


@bp.route("/api/deployments/<int:deployment_id>/metrics")
@login_required
def deployment_metrics(deployment_id: int):
    deployment = get_deployment_or_404(deployment_id)
    raw_since = request.args.get("since")
    since = None
    if raw_since not in (None, ""):
        try:
            since = float(raw_since)
        except ValueError:
            return jsonify(error=_("The since parameter must be a number (a Unix timestamp).")), 400
        if since != since or since in (float("inf"), float("-inf")):  # NaN or infinity
            return jsonify(error=_("The since parameter must be a number (a Unix timestamp).")), 400
    runtime = get_state().existing(deployment_id)
    points = runtime.metrics.since(since) if runtime else []
    latest = runtime.metrics.latest() if runtime else None
    return jsonify(
        id=deployment_id,
        status=deployment["status"],
        labels=[_clock(ts) for ts, _cpu, _ram in points],
        ts=[round(ts, 3) for ts, _cpu, _ram in points],
        cpu=[round(cpu, 1) for _ts, cpu, _ram in points],
        ram=[round(ram, 1) for _ts, _cpu, ram in points],
        latest=(
            {
                "ts": round(latest[0], 3),
                "label": _clock(latest[0]),
                "cpu": round(latest[1], 1),
                "ram": round(latest[2], 1),
            }
            if latest
            else None
        ),
    )


# --- logs -----------------------------------------------------------------------------


@bp.route("/deployments/<int:deployment_id>/logs.txt")
@login_required
def download_logs(deployment_id: int):
    deployment = get_deployment_or_404(deployment_id)
    runtime = get_state().existing(deployment_id)
    lines = runtime.logs.snapshot() if runtime else []
    body = "".join(f"{utcnow_iso(line.ts)} {line.level:<5} {line.text}\n" for line in lines)
    filename = f"deployment-{deployment['id']}-{deployment['name']}.log.txt"
    # Header values are latin-1: anything but plain ASCII letters and digits becomes "_".
    safe = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_.") else "_" for ch in filename)
    return Response(
        body,
        mimetype="text/plain",
        headers={
            "Content-Disposition": f'attachment; filename="{safe}"',
            "Cache-Control": "no-store",
        },
    )


@bp.route("/api/deployments/<int:deployment_id>/logs/stream")
@login_required
def log_stream(deployment_id: int):
    get_deployment_or_404(deployment_id)
    state = get_state()
    config = current_app.config
    user = current_user._get_current_object()
    refused = state.open_stream(
        user.id, int(config["SSE_MAX_STREAMS_PER_USER"]), int(config["SSE_MAX_STREAMS"])
    )
    if refused == "user":
        response = jsonify(error=_("Too many live log streams are open. Close some tabs and try again."))
        response.status_code = 429
        response.headers["Retry-After"] = "10"
        return response
    if refused == "total":
        response = jsonify(
            error=_("The server has as many live log streams open as it can serve. Try again shortly.")
        )
        response.status_code = 503
        response.headers["Retry-After"] = "30"
        return response
    try:
        runtime = state.runtime(deployment_id)
        # Deleted between the check above and runtime()? Then runtime() made a fresh
        # buffer nobody will ever close: give up now instead of streaming forever.
        if deployment_domain.get_deployment(get_db(), deployment_id) is None:
            state.drop(deployment_id)
            abort(404)
        user_row = user_domain.get_user(get_db(), user.id)
        logs = runtime.logs
        logs.subscribe()  # with Redis: loads the stream, or LiveUnavailable (503)
    except BaseException:
        state.close_stream(user.id)
        raise
    # The body streams after the request (and ``g``'s connection) is gone: the guard
    # reads the user and deployment rows again, shared with the other streams.
    guard = StreamGuard(
        state,
        config["DATABASE"],
        user_row,
        deployment_id,
        logs,
        session_id=user.session_id,
        session_alive=session_alive_check(),
        token_id=user.token_id,
        token_refusal=token_refusal_check(),
    )

    def read_status():
        row = guard.deployment_row()
        return status_payload(user, row) if row is not None else None

    def release():
        logs.unsubscribe()
        state.close_stream(user.id)

    events = sse.log_events(
        logs,
        after=sse.parse_after(request.headers.get("Last-Event-ID"), request.args.get("after")),
        heartbeat=float(config["SSE_HEARTBEAT_SECONDS"]),
        retry_ms=int(config["SSE_RETRY_MS"]),
        status_payload=read_status,
        check_access=guard.lost_access,
    )
    _no_delay(request.environ)
    response = Response(sse.EventStream(events, release), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    return response


def _no_delay(environ) -> None:
    """A live stream wants its lines out at once: with Nagle's algorithm on, a small
    write waits for the client's delayed ACK of the previous one (up to 40 ms on
    Linux). ``python app.py`` sets this on every connection; werkzeug's dev server
    and gunicorn hand the socket over in the environ."""
    sock = environ.get("werkzeug.socket") or environ.get("gunicorn.socket")
    if sock is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass  # not a TCP socket (a unix socket, a test double)
