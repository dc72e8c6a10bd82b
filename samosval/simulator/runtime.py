"""Wires the in-memory state and the single engine thread into the app."""

from __future__ import annotations

import logging
import random
import threading
import time

import click
from flask import current_app

from .. import db as db_module
from .engine import SimulationEngine
from .leader import Lease
from .state import SimulationState

log = logging.getLogger("samosval.simulator")

# One engine thread per process, whatever number of apps is created in it
# (a reloader, a test run, or a WSGI server importing the module twice).
_process_engine_lock = threading.Lock()
_process_engine: SimulationEngine | None = None


class Runtime:
    def __init__(self, state: SimulationState, engine: SimulationEngine):
        self.state = state
        self.engine = engine


def build_engine(app, state: SimulationState, clock=time.time, rng=None) -> SimulationEngine:
    seed = app.config.get("SIM_SEED")
    engine = SimulationEngine(
        db_path=app.config["DATABASE"],
        state=state,
        clock=clock,
        rng=rng or random.Random(seed),
        speed=float(app.config["SIM_SPEED"]),
        watchdog_build_seconds=float(app.config["WATCHDOG_BUILD_SECONDS"]),
        watchdog_deploy_seconds=float(app.config["WATCHDOG_DEPLOY_SECONDS"]),
    )
    engine.build_failure_rate = float(app.config["SIM_BUILD_FAILURE_RATE"])
    engine.deploy_failure_rate = float(app.config["SIM_DEPLOY_FAILURE_RATE"])
    engine.approval_expiry_hours = float(app.config["APPROVAL_EXPIRY_HOURS"])
    return engine


def _engine_token_hook(state):
    """On every takeover, before the new leader writes: a shared (Redis) state learns
    the token, raises its fence to it and stamps the leader's writes with it, so
    an older leader's writes are refused. The in-process state needs nothing."""

    def taken(token: int) -> None:
        hook = getattr(state, "set_fencing_token", None)
        if hook is not None:
            hook(token)

    return taken


def start_engine(app) -> bool:
    """Start this app's engine unless another one already runs in this process."""
    global _process_engine
    with _process_engine_lock:
        if _process_engine is not None and _process_engine.is_alive():
            log.warning("a simulation engine already runs in this process; not starting another")
            return False
        runtime = app.extensions["samosval"]
        engine = runtime.engine
        if engine.lease is None and db_module.is_postgres(app.config["DATABASE"]):
            # Several processes may share the database: only the lease holder steps. An
            # engine driven by hand (tests, tools: ``step(now)``) has no lease.
            engine.lease = Lease(app.config["DATABASE"], on_acquired=_engine_token_hook(runtime.state))
        engine.start()
        _process_engine = engine
        return True


def stop_engine(app, timeout: float = 5.0) -> None:
    global _process_engine
    engine = app.extensions["samosval"].engine
    engine.stop(timeout)
    with _process_engine_lock:
        if _process_engine is engine:
            _process_engine = None


def sim_now() -> float:
    """The engine's clock: real time in production, the fake clock under test, so
    ``status_since`` written by a request and the engine's watchdog agree."""
    return current_app.extensions["samosval"].engine.clock()


def get_state() -> SimulationState:
    return current_app.extensions["samosval"].state


def init_app(app) -> None:
    if app.config.get("REDIS_URL"):  # several processes: logs, metrics and fan-out in Redis
        from .redis_state import make_state  # imports redis (80 ms): only when used

        state = make_state(app)
    else:
        state = SimulationState()
    app.extensions["samosval"] = Runtime(state, build_engine(app, state))
    # CLI commands (init-db, create-user, backup) run inside a click context and
    # must not start a background thread.
    if app.config["SIMULATOR_AUTOSTART"] and click.get_current_context(silent=True) is None:
        start_engine(app)


def shutdown(app, timeout: float = 5.0) -> None:
    """Graceful stop: end every live stream, then stop the engine (which closes its
    connection). Safe to call twice."""
    state = app.extensions["samosval"].state
    for deployment_id in state.ids():
        runtime = state.existing(deployment_id)
        if runtime is not None:
            runtime.logs.close()
    stop_engine(app, timeout)
    state.close()  # writes what is queued (Redis)
    from .. import notify_worker

    notify_worker.stop_process_worker()
