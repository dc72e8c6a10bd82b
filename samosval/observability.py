"""Request ids, logging (text or JSON lines) and Prometheus metrics.

Every response carries ``X-Request-Id``; the id is on every log line written
while the request is handled and on the audit rows it writes. Logs never
carry request bodies, so passwords and tokens cannot end up in them.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from flask import Response, current_app, g, has_request_context, request
from flask_login import current_user
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from . import db as db_module
from .db import connect
from .domain.deployments import DEPLOYMENT_STATUSES
from .domain.hook_deliveries import OUTCOMES
from .domain.notifications import KINDS as CHANNEL_KINDS
from .domain.statuses import BUILD_STATUSES

REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
access_log = logging.getLogger("samosval.access")


# --- request ids -------------------------------------------------------------


def assign_request_id():
    incoming = request.headers.get("X-Request-Id", "")
    g.request_id = incoming if REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
    g.request_started = time.perf_counter()


def finish_request(response):
    response.headers["X-Request-Id"] = g.get("request_id", "")
    duration = time.perf_counter() - g.get("request_started", time.perf_counter())
    route = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
    metrics = current_app.extensions.get("samosval_metrics")
    if metrics is not None:
        metrics.requests.labels(
            route=route, method=method_label(request.method), status=status_label(response.status_code)
        ).inc()
        if response.mimetype != "text/event-stream":
            metrics.duration.labels(route=route).observe(duration)
    access_log.info(
        "%s %s -> %s in %.1f ms",
        request.method,
        route,
        response.status_code,
        duration * 1000,
        extra={"route": route, "status": response.status_code, "duration_ms": round(duration * 1000, 2)},
    )
    return response


# --- logging -------------------------------------------------------------------


class RequestContextFilter(logging.Filter):
    """Adds request_id and user to every record made inside a request."""

    def filter(self, record: logging.LogRecord) -> bool:
        if has_request_context():
            record.request_id = g.get("request_id", "-")
            try:
                record.user = current_user.username if current_user.is_authenticated else "-"
            except Exception:  # the user loader itself may be what is logging
                record.user = "-"
        else:
            record.request_id = getattr(record, "request_id", "-")
            record.user = getattr(record, "user", "-")
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for Loki/ELK."""

    FIELDS = ("route", "status", "duration_ms")

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
            "user": getattr(record, "user", "-"),
        }
        for field in self.FIELDS:
            if hasattr(record, field):
                entry[field] = getattr(record, field)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s %(user)s] %(message)s"


def configure_logging(json_logs: bool, level: int = logging.INFO, stream=None) -> logging.Handler:
    """Install one handler on the 'samosval' logger (idempotent)."""
    logger = logging.getLogger("samosval")
    for handler in list(logger.handlers):
        if getattr(handler, "_samosval", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(stream)
    handler._samosval = True
    handler.addFilter(RequestContextFilter())
    handler.setFormatter(JsonFormatter() if json_logs else logging.Formatter(TEXT_FORMAT))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return handler


# --- the engine: running, leading ---------------------------------------------------


def engine_health(app) -> tuple[str, bool]:
    """("running", True) when the engine leads and ticked recently; ("following",
    True) when another process leads and this one's loop turns (ready to take over)."""
    engine = app.extensions["samosval"].engine
    max_age = app.config["HEALTH_MAX_TICK_AGE"]
    if not engine.is_alive():
        return "stopped", False
    if engine.leading:
        last, status = engine.last_tick, "running"
    else:
        last, status = engine.last_beat, "following"
    if last is None or engine.clock() - last > max_age:
        return "stalled", False
    return status, True


def engine_leadership(app, ask_database: bool = False) -> dict:
    """Which process leads. ``leader``: this process's engine; ``holder`` and ``token``:
    this process's lease (the token of its latest term). ``ask_database`` (PostgreSQL)
    adds ``lease``: the holder and token the database has now, the same answer from
    every process (None while the database cannot say). Without a lease (SQLite) the
    one engine always leads."""
    engine = app.extensions["samosval"].engine
    lease = engine.lease
    if lease is None:
        return {"leader": engine.is_alive(), "holder": None, "token": None}
    found = {"leader": engine.is_alive() and engine.leading}
    described = lease.describe()
    found.update(holder=described["holder"], token=described["token"])
    if ask_database:
        from .simulator import leader

        found["lease"] = None
        try:
            db = connect(app.config["DATABASE"])
            try:
                row = leader.current(db, lease.name)
            finally:
                db.close()
        except db_module.DatabaseError:
            return found
        if row is not None:
            found["lease"] = {
                "holder": row["holder"],
                "token": row["token"],
                "expires_in": round(row["expires_at"] - row["now"], 3),
            }
    return found


# --- metrics -------------------------------------------------------------------
# Every label takes its value from a fixed set, so no caller can add series: a junk
# method is "other", a route is a rule of the URL map (or "<unmatched>"), a status
# a three-digit code, a status or outcome one the app writes. The ``_created`` series
# (one per counter child, duplicating it) are not exported.

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

disable_created_metrics()


def method_label(method: str | None) -> str:
    return method if method in KNOWN_METHODS else "other"


def status_label(status: int) -> str:
    return str(status) if 100 <= status <= 599 else "other"


def bounded_counts(rows, known) -> dict[str, int]:
    """``(value, count)`` rows as one count per known value (0 when absent), anything
    else summed under "other": the series are the same on every scrape."""
    counts = dict.fromkeys(known, 0)
    for value, count in rows:
        key = value if value in counts else "other"
        counts[key] = counts.get(key, 0) + count
    return counts


def metrics_response(registry) -> Response:
    """The exposition with exactly one media type, each parameter once. Set as
    ``content_type``: given as ``mimetype``, Werkzeug appends a second charset and
    Prometheus 3 refuses the scrape."""
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


class AppMetrics:
    """A registry per app, so several apps in one process (tests) do not collide."""

    def __init__(self, app):
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "samosval_http_requests",
            "HTTP requests by route and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "samosval_http_request_duration_seconds",
            "Request duration",
            ["route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.registry.register(_StateCollector(app))


class _StateCollector:
    """Reads counts from the database and the engine at scrape time."""

    def __init__(self, app):
        self.app = app

    def describe(self):
        return []  # not known before the database exists; collected at scrape time

    def collect(self):
        runtime = self.app.extensions.get("samosval")
        engine = runtime.engine if runtime else None
        lag = GaugeMetricFamily("samosval_engine_tick_lag_seconds", "Time since the engine's last tick")
        duration = GaugeMetricFamily("samosval_engine_tick_duration_seconds", "Duration of the last tick")
        alive = GaugeMetricFamily("samosval_engine_running", "1 if the engine thread is alive")
        leading = GaugeMetricFamily(
            "samosval_engine_leader", "1 if this process's engine leads (steps the simulation)"
        )
        token = GaugeMetricFamily(
            "samosval_engine_lease_token", "The engine lease token of this process's latest term (0: none)"
        )
        if engine is not None:
            found = engine_leadership(self.app)
            leading.add_metric([], 1.0 if found["leader"] else 0.0)
            token.add_metric([], float(found["token"] or 0))
            # A follower does not tick: its lag would only say how long ago it led.
            if engine.last_tick is not None and engine.leading:
                lag.add_metric([], max(0.0, engine.clock() - engine.last_tick))
            if engine.last_step_duration is not None and engine.leading:
                duration.add_metric([], engine.last_step_duration)
            alive.add_metric([], 1.0 if engine.is_alive() else 0.0)
        yield lag
        yield duration
        yield alive
        yield leading
        yield token
        streams = GaugeMetricFamily("samosval_sse_open_streams", "Open live log streams")
        streams.add_metric([], runtime.state.open_stream_count() if runtime else 0)
        yield streams
        refused = CounterMetricFamily(
            "samosval_live_refused_writes",
            "Writes to the shared live data (Redis) that the engine's fence refused: sent as a stale leader",
        )
        refused.add_metric([], getattr(runtime.state, "refused_writes", 0) if runtime else 0)
        yield refused

        deployments = GaugeMetricFamily("samosval_deployments", "Deployments by status", labels=["status"])
        builds = GaugeMetricFamily("samosval_builds", "Builds by status", labels=["status"])
        hooks = CounterMetricFamily("samosval_webhook_calls", "Webhook calls by outcome", labels=["outcome"])
        logins = CounterMetricFamily("samosval_login_failures", "Failed logins recorded in the audit log")
        # The notification outbox: labels are the channel's kind and fixed words, never a
        # channel's name, address or anything sealed.
        attempts = CounterMetricFamily(
            "samosval_notification_attempts",
            "Notification send attempts by channel kind and outcome",
            labels=["channel_kind", "outcome"],
        )
        outbox = GaugeMetricFamily(
            "samosval_notification_outbox",
            "Notifications waiting to be sent (pending) or given up on (dead)",
            labels=["status"],
        )
        db = connect(self.app.config["DATABASE"])
        try:
            for family, sql, known in (
                (
                    deployments,
                    "SELECT status, COUNT(*) FROM deployments GROUP BY status",
                    DEPLOYMENT_STATUSES,
                ),
                (builds, "SELECT status, COUNT(*) FROM builds GROUP BY status", BUILD_STATUSES),
                (hooks, "SELECT outcome, COUNT(*) FROM webhook_deliveries GROUP BY outcome", OUTCOMES),
            ):
                for value, count in bounded_counts(db.execute(sql), known).items():
                    family.add_metric([value], count)
            logins.add_metric(
                [], db.execute("SELECT COUNT(*) FROM audit_log WHERE action = 'login_failed'").fetchone()[0]
            )
            for status, count in bounded_counts(
                db.execute(
                    "SELECT status, COUNT(*) FROM notification_outbox WHERE status IN ('pending', 'dead') "
                    "GROUP BY status"
                ),
                ("pending", "dead"),
            ).items():
                outbox.add_metric([status], count)
            # Every try but a message's successful one failed: counted from the outbox alone.
            tries = {kind: (0, 0) for kind in CHANNEL_KINDS}
            for kind, total, sent in db.execute(
                "SELECT c.kind, SUM(o.attempts), SUM(CASE WHEN o.status = 'sent' THEN 1 ELSE 0 END) FROM notification_outbox o "
                "JOIN notification_channels c ON c.id = o.channel_id GROUP BY c.kind"
            ):
                key = kind if kind in tries else "other"
                before = tries.get(key, (0, 0))
                tries[key] = (before[0] + (sent or 0), before[1] + (total or 0) - (sent or 0))
            for kind, (sent, failed) in tries.items():
                attempts.add_metric([kind, "sent"], sent)
                attempts.add_metric([kind, "failed"], failed)
        finally:
            db.close()
        yield deployments
        yield builds
        yield hooks
        yield logins
        yield attempts
        yield outbox


def init_app(app) -> None:
    app.extensions["samosval_metrics"] = AppMetrics(app)
    app.before_request(assign_request_id)
    app.after_request(finish_request)
    if not app.config.get("TESTING") or app.config.get("LOG_STREAM") is not None:
        configure_logging(bool(app.config.get("JSON_LOGS")), stream=app.config.get("LOG_STREAM"))
