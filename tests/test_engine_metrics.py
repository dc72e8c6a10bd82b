"""The engine's own figures on /metrics: they must measure something."""

from __future__ import annotations

import re

TICK_DURATION = re.compile(r"^samosval_engine_tick_duration_seconds ([0-9.e+-]+)$", re.MULTILINE)


def test_the_tick_duration_is_measured(client, engine, clock, sample):
    assert not TICK_DURATION.search(client.get("/metrics").get_data(as_text=True))  # no step yet
    engine.step(clock.advance(0.1))
    assert engine.last_step_duration is not None and engine.last_step_duration > 0
    found = TICK_DURATION.search(client.get("/metrics").get_data(as_text=True))
    assert found and float(found.group(1)) == engine.last_step_duration
