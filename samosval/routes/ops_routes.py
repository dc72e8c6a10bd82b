"""Operational endpoints: ``/healthz`` (no login) and ``/metrics`` (Prometheus, protected)."""

from __future__ import annotations

import hmac

from flask import Blueprint, current_app, jsonify, request

from .. import __version__
from .. import db as db_module
from ..db import connect
from ..observability import engine_health as _engine_health
from ..observability import engine_leadership, metrics_response
from ..security import csrf
from ..simulator.runtime import get_state

bp = Blueprint("ops", __name__)


def engine_health() -> tuple[str, bool]:
    """("running", True) when the engine leads and ticked recently, ("following", True)
    when another process leads (observability.engine_health)."""
    return _engine_health(current_app)


def live_data_health() -> str:
    """Where live logs and metrics live, and whether Redis answered its last call.
    Not a failing check: pages work without Redis, and every process shares one, so
    taking them all out of the balancer would not help."""
    if not current_app.config.get("REDIS_URL"):
        return "memory"
    return "redis" if getattr(get_state(), "available", True) else "redis unavailable"


def database_health() -> tuple[str, bool]:
    try:
        db = connect(current_app.config["DATABASE"])
        try:
            db.execute("SELECT 1 FROM users LIMIT 1").fetchone()
        finally:
            db.close()
    except db_module.DatabaseError as exc:
        return f"error: {exc.__class__.__name__}", False
    return "ok", True


@bp.route("/healthz")
def healthz():
    db_status, db_ok = database_health()
    engine_status, engine_ok = engine_health()
    healthy = db_ok and engine_ok
    body = {
        "status": "ok" if healthy else "fail",
        "db": db_status,
        "engine": engine_status,
        "live": live_data_health(),
        "version": __version__,
        **engine_leadership(current_app, ask_database=db_ok),
    }
    if not healthy:
        body["failing"] = [name for name, ok in (("db", db_ok), ("engine", engine_ok)) if not ok]
    return jsonify(body), 200 if healthy else 503


def metrics_allowed() -> bool:
    token = current_app.config.get("METRICS_TOKEN")
    if token:
        sent = request.headers.get("Authorization", "")
        if sent.startswith("Bearer ") and hmac.compare_digest(sent[7:].encode(), token.encode()):
            return True
    allowed = [ip.strip() for ip in (current_app.config.get("METRICS_ALLOW") or "").split(",") if ip.strip()]
    return request.remote_addr in allowed


@bp.route("/metrics")
def metrics():
    if not metrics_allowed():
        return jsonify(
            error="metrics are restricted: send the metrics token or scrape from an allowed address"
        ), 403
    registry = current_app.extensions["samosval_metrics"].registry
    return metrics_response(registry)


csrf.exempt(bp)  # GET-only, no session state changed
