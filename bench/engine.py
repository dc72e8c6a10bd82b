"""Engine capacity: N running deployments at SIM_SPEED=1, and memory per deployment.

    python bench/engine.py [--counts 100,500,1000] [--seconds 25] [--memory-deployments 1000]

For each N, the company-scale database of ``bench/seed.py`` gets exactly N running
deployments; a fresh app is created in this process and its real engine thread
(``SimulationEngine.run``, wall clock, speed 1) runs for --seconds. ``step`` is
wrapped from here (engine.py is not modified) to record, for every tick:

- the engine thread's CPU time (``time.thread_time`` inside the thread) -> share
  of one core over the window, cross-checked with /proc/self/task/<tid>/stat;
- step duration;
- tick lag: how late the tick's work was done compared with when the tick was
  due (previous tick's end + TICK_SECONDS): scheduling delay + the step itself;
- output delay: for 50 sampled deployments, the age of each new metric point when
  the tick that wrote it ended. It includes up to one TICK_SECONDS (100 ms) of
  waiting by design: a point due just after a tick waits for the next one.

Memory: N runtimes in a fresh ``SimulationState`` get full buffers (1,000 log
lines from the engine's own text generator, 900 metric points), measured with
tracemalloc (and the RSS delta as a cross-check), divided by N.

Everything runs in this process; nothing listens on the network. Results go to
bench/engine.json.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import DATA_DIR, percentile, table, verdict, write_json

from samosval import create_app
from samosval.db import connect
from samosval.simulator import textgen
from samosval.simulator.state import LOG_CAPACITY, METRIC_CAPACITY, SimulationState

WARMUP_SECONDS = 3.0  # the first ticks build the running cache: not steady state
SAMPLED_DEPLOYMENTS = 50
CLK_TCK = os.sysconf("SC_CLK_TCK")
TARGETS = {"cpu_pct": 20.0, "tick_lag_p99_ms": 100.0, "kb_per_deployment": 150.0}


def task_cpu_seconds(native_id: int) -> float:
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def prepare_db(path: Path, running: int) -> None:
    """Exactly ``running`` deployments running, the rest stopped, nothing in flight."""
    db = connect(str(path))
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute(
            "UPDATE deployments SET status = CASE WHEN id <= ? THEN 'running' ELSE 'stopped' END, "
            "next_step_at = NULL",
            (running,),
        )
        db.execute("COMMIT")
        assert (
            db.execute("SELECT COUNT(*) FROM deployments WHERE status = 'running'").fetchone()[0] == running
        )
    finally:
        db.close()


class Recorder:
    def __init__(self, engine):
        self.engine = engine
        self.ticks: list[tuple[float, float, float, int, int]] = []  # start, end, cpu, lines, points
        self.delays: list[float] = []
        self.native_id: int | None = None
        self._sample: list = []
        self._seen: dict[int, float] = {}
        original = engine.step

        def step(now):
            if self.native_id is None:
                self.native_id = threading.get_native_id()
            start, cpu = time.perf_counter(), time.thread_time()
            counts = original(now)
            cpu, end = time.thread_time() - cpu, time.perf_counter()
            self.ticks.append((start, end, cpu, counts["log_lines"], counts["metric_points"]))
            self._sample_delays()
            return counts

        engine.step = step  # run() calls self.step: the instance attribute wins

    def _sample_delays(self) -> None:
        if not self._sample:
            self._sample = [
                entry.runtime for entry in list(self.engine._running.values())[:SAMPLED_DEPLOYMENTS]
            ]
        wall = time.time()
        for n, runtime in enumerate(self._sample):
            latest = runtime.metrics.latest()
            if latest is not None and self._seen.get(n) != latest[0]:
                if n in self._seen:  # the first point seen may be old
                    self.delays.append(wall - latest[0])
                self._seen[n] = latest[0]


def run_engine(db_path: Path, running: int, seconds: float) -> dict:
    prepare_db(db_path, running)
    with tempfile.TemporaryDirectory(prefix="samosval-bench-") as instance:
        app = create_app(
            {
                "DATABASE": str(db_path),
                "SECRET_KEY": "bench",
                "SIMULATOR_AUTOSTART": False,
                "SIM_SPEED": 1.0,
                "SIM_SEED": 7,
            },
            instance_path=instance,
        )
        engine = app.extensions["samosval"].engine
        recorder = Recorder(engine)
        engine.start()
        try:
            time.sleep(WARMUP_SECONDS)
            first_tick = len(recorder.ticks)
            task_cpu0, wall0 = task_cpu_seconds(recorder.native_id), time.perf_counter()
            delays0 = len(recorder.delays)
            time.sleep(seconds)
            task_cpu1, wall1 = task_cpu_seconds(recorder.native_id), time.perf_counter()
            ticks = recorder.ticks[first_tick:]
            delays = recorder.delays[delays0:]
            previous_end = recorder.ticks[first_tick - 1][1]
        finally:
            engine.stop()
        running_seen = engine.running_count()
    window = wall1 - wall0
    lags, durations = [], []
    for start, end, _cpu, _lines, _points in ticks:
        lags.append(end - (previous_end + engine.TICK_SECONDS))
        durations.append(end - start)
        previous_end = end
    cpu = sum(t[2] for t in ticks)
    span = ticks[-1][1] - ticks[0][0] if ticks else window
    return {
        "running": running,
        "running_seen_by_engine": running_seen,
        "seconds": round(window, 1),
        "ticks": len(ticks),
        "ticks_per_s": round(len(ticks) / span, 1),
        "log_lines_per_s": round(sum(t[3] for t in ticks) / span, 1),
        "metric_points_per_s": round(sum(t[4] for t in ticks) / span, 1),
        "cpu_pct": round(100 * cpu / span, 1),
        "cpu_pct_proc": round(100 * (task_cpu1 - task_cpu0) / window, 1),
        "step_ms_p50": round(1000 * percentile(durations, 50), 2),
        "step_ms_p99": round(1000 * percentile(durations, 99), 2),
        "step_ms_max": round(1000 * max(durations), 2),
        "step_cpu_ms_p50": round(1000 * percentile([t[2] for t in ticks], 50), 2),
        "step_cpu_ms_p99": round(1000 * percentile([t[2] for t in ticks], 99), 2),
        "load_average": round(os.getloadavg()[0], 2),
        "tick_lag_ms_p50": round(1000 * percentile(lags, 50), 2),
        "tick_lag_ms_p99": round(1000 * percentile(lags, 99), 2),
        "output_delay_ms_p50": round(1000 * percentile(delays, 50), 1),
        "output_delay_ms_p99": round(1000 * percentile(delays, 99), 1),
    }


def fill(count: int) -> tuple[SimulationState, int]:
    """``count`` runtimes with full buffers of realistic lines and points."""
    rng = random.Random(7)
    state = SimulationState()
    now = time.time()
    total_chars = 0
    for deployment_id in range(1, count + 1):
        runtime = state.runtime(deployment_id)
        name, tag = f"svc-{deployment_id}", f"service-{deployment_id}:1.{deployment_id % 50}.0"
        replicas = 1 + deployment_id % 3
        for n in range(LOG_CAPACITY):
            level, text = textgen.runtime_line(rng, name, tag, replicas)
            total_chars += len(text)
            runtime.logs.append(now - LOG_CAPACITY + n * 0.9, level, text)
        cpu, ram = 30.0, 40.0
        for n in range(METRIC_CAPACITY):
            cpu = min(100.0, max(0.0, cpu + rng.uniform(-4, 4)))
            ram = min(100.0, max(0.0, ram + rng.uniform(-1.2, 1.3)))
            runtime.metrics.append(now - METRIC_CAPACITY + n, round(cpu, 1), round(ram, 1))
    assert len(state.runtime(1).logs) == LOG_CAPACITY and len(state.runtime(1).metrics) == METRIC_CAPACITY
    return state, total_chars


def measure_memory(count: int) -> dict:
    """Bytes per deployment with full buffers: tracemalloc (Python allocations),
    and the RSS delta of a separate pass without tracemalloc as a cross-check."""
    gc.collect()
    rss0 = _rss()
    state, total_chars = fill(count)
    gc.collect()
    rss = _rss() - rss0
    del state
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    state, _ = fill(count)
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    del state
    gc.collect()
    return {
        "deployments": count,
        "log_lines_each": LOG_CAPACITY,
        "metric_points_each": METRIC_CAPACITY,
        "mean_line_chars": round(total_chars / (count * LOG_CAPACITY), 1),
        "kb_per_deployment": round(traced / count / 1024, 1),
        "rss_kb_per_deployment": round(rss / count / 1024, 1),
    }


def _rss() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="100,500,1000")
    parser.add_argument("--seconds", type=float, default=25.0, help="measured seconds per count")
    parser.add_argument("--memory-deployments", type=int, default=1000)
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.counts.split(",") if c.strip()]
    if not 1 <= args.seconds <= 300 or max(counts) > 2000:
        parser.error("--seconds 1..300, counts up to 2000")

    memory = measure_memory(args.memory_deployments)
    print(
        f"memory: {memory['kb_per_deployment']} KB per deployment with full buffers "
        f"(tracemalloc; RSS delta {memory['rss_kb_per_deployment']} KB), "
        f"mean line {memory['mean_line_chars']} chars",
        flush=True,
    )

    from seed import seed

    DATA_DIR.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="engine-", dir=DATA_DIR))
    results = []
    try:
        db_path = workdir / "engine.sqlite3"
        seed(str(db_path), running=max(counts))
        for count in counts:
            print(f"engine: {count} running deployments, {args.seconds:g} s ...", flush=True)
            results.append(run_engine(db_path, count, args.seconds))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    rows = [
        [
            r["running"],
            r["ticks_per_s"],
            r["log_lines_per_s"],
            r["metric_points_per_s"],
            r["cpu_pct"],
            r["cpu_pct_proc"],
            r["step_ms_p50"],
            r["step_ms_p99"],
            r["step_cpu_ms_p99"],
            r["tick_lag_ms_p50"],
            r["tick_lag_ms_p99"],
            r["output_delay_ms_p50"],
            r["output_delay_ms_p99"],
            r["load_average"],
        ]
        for r in results
    ]
    print()
    print(
        table(
            [
                "running",
                "ticks/s",
                "lines/s",
                "points/s",
                "cpu %",
                "cpu % /proc",
                "step p50 ms",
                "step p99 ms",
                "step cpu p99",
                "lag p50 ms",
                "lag p99 ms",
                "out p50 ms",
                "out p99 ms",
                "load",
            ],
            rows,
            title=f"Engine at SIM_SPEED=1, {args.seconds:g} s per row (cpu % of one core)",
        )
    )
    biggest = max(results, key=lambda r: r["running"])
    checks = {
        f"cpu at {biggest['running']} < 20 %": verdict(biggest["cpu_pct"] < TARGETS["cpu_pct"]),
        f"tick lag p99 at {biggest['running']} < 100 ms": verdict(
            biggest["tick_lag_ms_p99"] < TARGETS["tick_lag_p99_ms"]
        ),
        "memory < 150 KB per deployment": verdict(memory["kb_per_deployment"] < TARGETS["kb_per_deployment"]),
    }
    print()
    for name, result in checks.items():
        print(f"{result:4}  {name}")
    path = write_json(
        "engine",
        {"seconds": args.seconds, "targets": TARGETS, "memory": memory, "runs": results, "checks": checks},
    )
    print(f"\nwritten to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
