"""Small helpers shared by the benchmark scripts: percentiles, tables, JSON output,
and a description of the machine the figures came from. Servers are started with
the tests' own helper (``tests.live.AppProcess``), so there is one way to run the app."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
DATA_DIR = BENCH_DIR / ".data"  # gitignored: seeded databases live here

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.live import AppProcess, free_port  # noqa: E402,F401  (re-exported for the benches)


def percentile(values, pct: float) -> float:
    """Nearest-rank percentile of ``values`` (``pct`` from 0 to 100); 0.0 for an empty list.

    The one percentile every bench reports, so p50/p99 mean the same in every JSON file."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = math.ceil(round(pct * len(ordered) / 100, 9))  # smallest value with pct % at or below it
    return ordered[min(max(rank, 1), len(ordered)) - 1]


def machine() -> dict:
    model = platform.processor() or "?"
    try:
        for line in subprocess.run(
            ["lscpu"], capture_output=True, text=True, check=False
        ).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": sys.version.split()[0],
        "sqlite": __import__("sqlite3").sqlite_version,
    }


def table(headers: list[str], rows: list[list], title: str | None = None) -> str:
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [title] if title else []
    for n, row in enumerate(cells):
        lines.append(
            "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return str(value)


def write_json(name: str, payload: dict) -> Path:
    path = BENCH_DIR / f"{name}.json"
    path.write_text(
        json.dumps({"machine": machine(), **payload}, indent=2, default=str) + "\n", encoding="utf-8"
    )
    return path


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISS"
