"""The benches' shared helpers: one percentile for every figure they report."""

from __future__ import annotations

import sys

import pytest

from tests.live import ROOT

sys.path.insert(0, str(ROOT / "bench"))
from _util import percentile  # noqa: E402


@pytest.mark.parametrize(("pct", "expected"), [(0, 1), (1, 1), (50, 50), (95, 95), (99, 99), (100, 100)])
def test_it_takes_the_nearest_rank(pct, expected):
    assert percentile(list(range(100, 0, -1)), pct) == expected


def test_it_handles_short_and_empty_lists():
    assert percentile([], 99) == 0.0
    assert percentile([7.5], 50) == 7.5
    assert percentile([1, 2], 50) == 1 and percentile([1, 2], 51) == 2
