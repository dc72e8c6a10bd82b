"""The simulation engine: one daemon thread that makes builds and deployments
behave like real ones. Deterministic under test: it takes a clock and a
``random.Random``; ``step(now)`` does everything due at ``now``."""
from __future__ import annotations

import logging
import threading
import time

from .. import db as db_module

log = logging.getLogger("samosval.simulator")


class SimulationEngine:
    TICK_SECONDS = 0.1

    def __init__(self, db_path, state, clock=time.time, rng=None, speed=1.0,
                 watchdog_build_seconds=600, watchdog_deploy_seconds=120):
        self.db_path = db_path
        self.state = state
        self.clock = clock
        self.rng = rng
        self.speed = speed
        self.watchdog_build_seconds = watchdog_build_seconds
        self.watchdog_deploy_seconds = watchdog_deploy_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._db = None
        self.last_tick: float | None = None

    # -- the thread ---------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name="SimulationEngine", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run(self) -> None:
        self._db = db_module.connect(self.db_path)
        try:
            while not self._stop.is_set():
                try:
                    self.step(self.clock())
                except Exception:  # keep the thread alive whatever one tick did
                    log.exception("simulation tick failed")
                self._stop.wait(self.TICK_SECONDS)
        finally:
            self._db.close()
            self._db = None

    # -- one tick -----------------------------------------------------------
    def step(self, now: float) -> dict:
        self.last_tick = now
        return {}
