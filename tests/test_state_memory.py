"""The compact in-memory layout of log streams and metric series behaves like the
plain ring it replaced, and stays small with full buffers."""

from __future__ import annotations

import random
import tracemalloc
from collections import deque

import pytest

from samosval.simulator.state import LogLine, LogStream, MetricSeries


@pytest.mark.parametrize("capacity", [1, 7, 50, 120, 1000])
def test_it_reads_like_a_plain_ring(capacity):
    rng = random.Random(capacity)
    logs, reference = LogStream(capacity), deque(maxlen=capacity)
    for seq in range(1, 2600):
        level = rng.choice(["INFO", "WARN", "ERROR", "EVENT"])
        text = f"line {seq} " + "x" * rng.randrange(0, 120) + " é"
        assert logs.append(1000.0 + seq / 3, level, text) == seq
        reference.append(LogLine(seq, 1000.0 + seq / 3, level, text))
        if seq % 97 == 0 or seq < 5:
            assert logs.snapshot() == list(reference)
            assert len(logs) == len(reference)
            assert logs.tail(3) == list(reference)[-3:]
            after = rng.randrange(0, seq + 2)
            first = reference[0].seq
            expected = [line for line in reference if line.seq > after][:40]
            assert logs.read_after(after, limit=40) == (
                expected,
                max(0, first - after - 1) if after < seq else 0,
            )


def test_it_keeps_the_last_points_in_order():
    series = MetricSeries(capacity=5)
    assert series.latest() is None and series.since() == []
    for n in range(12):
        series.append(100.0 + n, n + 0.5, 50.0 - n)
    assert len(series) == 5
    assert series.since() == [(100.0 + n, n + 0.5, 50.0 - n) for n in range(7, 12)]
    assert series.since(109.0) == [(110.0, 10.5, 40.0), (111.0, 11.5, 39.0)]
    assert series.latest() == (111.0, 11.5, 39.0)


def test_it_holds_full_buffers_in_under_100_kib():
    rng = random.Random(3)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        logs, series = LogStream(), MetricSeries()
        for n in range(3000):
            logs.append(
                1e9 + n,
                "INFO",
                f"[svc-{n % 3} svc:1.0] GET /api/items/{rng.randrange(10**6)} 200 {rng.randrange(900)} ms",
            )
        for n in range(2000):
            series.append(1e9 + n, round(rng.uniform(0, 100), 1), round(rng.uniform(0, 100), 1))
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(logs) == 1000 and len(series) == 900
    assert used < 100 * 1024
