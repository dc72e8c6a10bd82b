"""Several app processes on one PostgreSQL and one Redis (issue 15), each figure next
to one process of the same run.

    python bench/cluster.py [--processes 2,4] [--parts engine,viewers,pages]
                            [--seconds 20] [--running 1000]
                            [--viewers 1000] [--duration 15] [--speed 0.5] [--runs 30]

Starts its own PostgreSQL and Redis (``tests.servers``: loopback ports, thrown away
at the end), then for 1 and each of --processes app processes, every one the
production command (``gunicorn -c gunicorn.conf.py wsgi:app``, gevent worker) on its
own port, all with ``SAMOSVAL_DATABASE_URL`` and ``SAMOSVAL_REDIS_URL``:

- **engine**: a fresh copy of the company-scale seed (``bench/seed.py``, exactly
  --running deployments running) per configuration, the engine at SIM_SPEED=1. The
  engine's ``step`` is wrapped inside each worker the way ``bench/engine.py`` wraps
  it (a ``post_worker_init`` hook in a gunicorn config that loads the real one):
  each tick's wall start/end and ``time.thread_time`` go to a file. Reported over a
  --seconds window after 3 s of warm-up: the leader's process CPU % (``/proc``) and
  step CPU %, step and tick-lag p50/p99 (tick lag: how late the tick's work was done
  compared with the previous tick's end + 100 ms), lines and points per second, and
  every follower's process CPU %. The embedded mode (one process, SQLite, in-memory
  buffers) is measured the same way for reference.
- **viewers**: one running deployment (SIM_SPEED --speed, ~1 line/s at 0.5) and
  --viewers asyncio viewers of its live log spread evenly over the processes (viewer
  i on process i mod N), the client of ``bench/sse_fanout.py`` (``bench/_util.py``):
  lines lost, spread p50/p99 of a line's receipt over all viewers (across
  processes), delay, ``/login`` p95 from one probe process per app process (every
  100 ms, pooled), each process's CPU %. Against the asyncio floor (issue 14's
  ``Floor``) and against one process on the same PostgreSQL + Redis; one embedded
  process (SQLite, in memory) for reference.
- **pages**: ``bench/pages.py --scale 1`` twice, on SQLite and on a database of this
  PostgreSQL server (10,000 requests, 100,000 audit rows); p95 side by side.

Load average is recorded with every figure (the machine has 2 cores shared with
other work). Prints tables; results go to bench/cluster.json (gitignored).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import (  # noqa: E402
    DATA_DIR,
    ROOT,
    AppProcess,
    Floor,
    Viewer,
    connect_viewers,
    delivery,
    login_probe,
    login_summary,
    percentile,
    proc_stats,
    raise_fd_limit,
    table,
    write_json,
)

from samosval import db as db_module  # noqa: E402
from samosval.domain import users as user_domain  # noqa: E402
from tests import factories  # noqa: E402
from tests.live import PASSWORD, login_cookie  # noqa: E402

TICK_SECONDS = 0.1  # SimulationEngine.TICK_SECONDS
WARMUP_SECONDS = 3.0
VIEWERS_TARGET_RATIO = 1.5  # spread p99 within 1.5x the single process's
PAGES_TARGET_P95_MS = 50.0

# Loads the real gunicorn.conf.py, then wraps the engine's step in the worker (as
# bench/engine.py does in process) and appends one line per tick to a file.
GUNICORN_HOOK = """
import os, runpy, time
globals().update(
    {k: v for k, v in runpy.run_path(os.environ["SAMOSVAL_BENCH_GUNICORN_CONF"]).items() if not k.startswith("__")}
)


def post_worker_init(worker):
    engine = worker.wsgi.extensions["samosval"].engine
    out = open(os.environ["SAMOSVAL_BENCH_TICKS"], "a", buffering=1)
    original = engine.step

    def step(now):
        start, cpu = time.perf_counter(), time.thread_time()
        counts = original(now)
        cpu, end = time.thread_time() - cpu, time.perf_counter()
        out.write(f"{start:.6f} {end:.6f} {cpu:.6f} {counts['log_lines']} {counts['metric_points']}\\n")
        return counts

    engine.step = step  # run() looks step up on every tick: the instance attribute wins
"""

BASE_ENV = {
    "SAMOSVAL_SSE_MAX_STREAMS_PER_USER": "100000",
    "SAMOSVAL_LOGIN_RATE_LIMIT_IP": "100000 per minute",
    "SAMOSVAL_LOGIN_RATE_LIMIT_USER": "100000 per minute",
}


def load() -> float:
    return round(os.getloadavg()[0], 2)


class Cluster:
    """N production processes on one database (a SQLite path or a PostgreSQL URL) and,
    with ``redis_url``, one Redis prefix. Started one after another (the first one
    migrates an empty database)."""

    def __init__(
        self, workdir: Path, count: int, database: str, redis_url: str | None, prefix: str, speed: float
    ):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "gunicorn_bench.py"
        config.write_text(GUNICORN_HOOK)
        self.database = database
        self.processes: list[AppProcess] = []
        self.tick_files: list[Path] = []
        try:
            for n in range(count):
                ticks = workdir / f"ticks-{n}.txt"
                env = {
                    **BASE_ENV,
                    "SAMOSVAL_BENCH_GUNICORN_CONF": str(ROOT / "gunicorn.conf.py"),
                    "SAMOSVAL_BENCH_TICKS": str(ticks),
                }
                if db_module.is_postgres(database):
                    env["SAMOSVAL_DATABASE_URL"] = database
                else:
                    env["SAMOSVAL_DATABASE"] = database
                if redis_url:
                    env.update(SAMOSVAL_REDIS_URL=redis_url, SAMOSVAL_REDIS_PREFIX=prefix)
                self.processes.append(
                    AppProcess(
                        workdir / f"instance-{n}",
                        workdir / f"server-{n}.log",
                        speed=speed,
                        extra_env=env,
                        production=True,
                        gunicorn_config=str(config),
                    )
                )
                self.tick_files.append(ticks)
        except BaseException:
            self.stop()
            raise

    @property
    def pids(self) -> list[int]:
        return [p.serving_pid for p in self.processes]

    def ticks(self, n: int) -> list[tuple[float, float, float, int, int]]:
        try:
            text = self.tick_files[n].read_text()
        except OSError:
            return []
        rows = []
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 5:
                rows.append((float(parts[0]), float(parts[1]), float(parts[2]), int(parts[3]), int(parts[4])))
        return rows

    def leaders(self) -> list[int]:
        """Indexes of the processes whose /metrics say they lead."""
        return [n for n, p in enumerate(self.processes) if p.metric("samosval_engine_leader") == 1.0]

    def stop(self) -> None:
        for process in self.processes:
            process.stop()
        self.processes = []


# --- a. the engine ----------------------------------------------------------------------


def measure_engine(cluster: Cluster, seconds: float, running: int) -> dict:
    """Wait for the leader to write lines, warm up, then a window of ``seconds``."""
    deadline = time.monotonic() + 60
    while True:
        busy = [n for n in range(len(cluster.processes)) if sum(t[3] for t in cluster.ticks(n)[-10:]) > 0]
        if busy:
            break
        if time.monotonic() > deadline:
            raise RuntimeError("no engine wrote any line within 60 s")
        time.sleep(0.5)
    time.sleep(WARMUP_SECONDS)
    pids = cluster.pids
    cpu0 = [proc_stats(pid)["cpu"] for pid in pids]
    wall0 = time.perf_counter()
    load0 = load()
    time.sleep(seconds)
    cpu1 = [proc_stats(pid)["cpu"] for pid in pids]
    wall1 = time.perf_counter()
    leaders = cluster.leaders()
    window = wall1 - wall0
    per_process = []
    for n, pid in enumerate(pids):
        all_ticks = cluster.ticks(n)
        inside = [i for i, t in enumerate(all_ticks) if wall0 <= t[1] <= wall1]
        per_process.append(
            {
                "pid": pid,
                "cpu_pct": round(100 * (cpu1[n] - cpu0[n]) / window, 1),
                "rss_mb": round(proc_stats(pid)["rss_kb"] / 1024, 1),
                "ticks": len(inside),
                "leads": n in leaders,
            }
        )
        if len(inside) < 2:
            continue
        ticks = all_ticks[inside[0] : inside[-1] + 1]
        previous_end = all_ticks[inside[0] - 1][1] if inside[0] > 0 else None
        lags, durations = [], []
        for start, end, _cpu, _lines, _points in ticks:
            if previous_end is not None:
                lags.append(end - (previous_end + TICK_SECONDS))
            durations.append(end - start)
            previous_end = end
        span = ticks[-1][1] - ticks[0][0]
        per_process[-1].update(
            ticks_per_s=round(len(ticks) / span, 1),
            lines_per_s=round(sum(t[3] for t in ticks) / span, 1),
            points_per_s=round(sum(t[4] for t in ticks) / span, 1),
            step_cpu_pct=round(100 * sum(t[2] for t in ticks) / span, 1),
            step_ms_p50=round(1000 * percentile(durations, 50), 2),
            step_ms_p99=round(1000 * percentile(durations, 99), 2),
            tick_lag_ms_p50=round(1000 * percentile(lags, 50), 2),
            tick_lag_ms_p99=round(1000 * percentile(lags, 99), 2),
        )
    stepping = [p for p in per_process if p["ticks"] >= 2]
    leader = max(stepping, key=lambda p: p["ticks"]) if stepping else None
    followers = [p for p in per_process if p is not leader]
    return {
        "processes": len(pids),
        "running": running,
        "seconds": round(window, 1),
        "leaders_by_metrics": leaders,
        "stepping_processes": len(stepping),
        "leader": leader,
        "followers": followers,
        "followers_cpu_pct": [p["cpu_pct"] for p in followers],
        "load": [load0, load()],
    }


def prepare_running(database: str, running: int) -> None:
    """Exactly ``running`` deployments running, the rest stopped, nothing in flight
    (bench/engine.py's ``prepare_db``, on either database)."""
    db = db_module.connect(database)
    try:
        with db_module.transaction(db):
            db.execute(
                "UPDATE deployments SET status = CASE WHEN id <= ? THEN 'running' ELSE 'stopped' END, "
                "next_step_at = NULL",
                (running,),
            )
        found = db.execute("SELECT COUNT(*) FROM deployments WHERE status = 'running'").fetchone()[0]
        assert found == running, found
    finally:
        db.close()


def engine_part(args, pg, redis, workdir: Path) -> list[dict]:
    from seed import seed

    results = []
    template = "engine_seed"
    url = pg.create_database(template)
    started = time.perf_counter()
    seed(url, running=args.running)
    prepare_running(url, args.running)
    db_module.close_pools()
    pg.disconnect_all(template)
    print(f"engine: seeded PostgreSQL in {time.perf_counter() - started:.1f} s", flush=True)
    configs = [("sqlite", 1)] + [("postgres", n) for n in [1] + args.processes]
    for backend, count in configs:
        label = f"{count} process{'es' if count > 1 else ''}, " + (
            "SQLite, in memory" if backend == "sqlite" else "PostgreSQL + Redis"
        )
        print(f"engine: {label}, {args.running} running, {args.seconds:g} s ...", flush=True)
        folder = workdir / f"engine-{backend}-{count}"
        folder.mkdir(parents=True)
        if backend == "sqlite":
            database, redis_url = str(folder / "engine.sqlite3"), None
            seed(database, running=args.running)
            prepare_running(database, args.running)
        else:
            name = f"engine_{count}"
            database, redis_url = pg.create_database(name, template=template), redis.url
        cluster = Cluster(folder, count, database, redis_url, f"bench:engine:{count}:", speed=1.0)
        try:
            result = measure_engine(cluster, args.seconds, args.running)
        finally:
            cluster.stop()
            db_module.close_pools()
        result.update(config=label, backend=backend)
        results.append(result)
        leader = result["leader"] or {}
        print(
            f"  leader cpu {leader.get('cpu_pct')} % (step {leader.get('step_cpu_pct')} %), lag p99 "
            f"{leader.get('tick_lag_ms_p99')} ms, lines/s {leader.get('lines_per_s')}, followers "
            f"{result['followers_cpu_pct']} %, stepping {result['stepping_processes']}, load {result['load']}",
            flush=True,
        )
    return results


# --- b. live-log viewers ------------------------------------------------------------------


def prepare_viewers_database(database: str) -> tuple[str, str]:
    """A user and one running deployment; returns (username, stream path)."""
    db = db_module.connect(database)
    try:
        user_id = user_domain.create_user(db, "benchops", PASSWORD, "operator", now=time.time())
        request_id = factories.make_request(db, owner_id=user_id, status="approved")
        image_id = factories.make_image(db, request_id=request_id)
        deployment_id = factories.make_deployment(db, image_id=image_id, name="bench-0")
    finally:
        db.close()
    return "benchops", f"/api/deployments/{deployment_id}/logs/stream"


async def listen(endpoints, cookie: str, viewers_count: int, duration: float, pids, login_ports) -> dict:
    """``viewers_count`` viewers spread over ``endpoints`` [(port, path)]: connect, wait
    a second, listen for ``duration`` with /login probes on ``login_ports``."""
    viewers = [Viewer(0) for _ in range(viewers_count)]
    targets = [endpoints[i % len(endpoints)] for i in range(viewers_count)]
    stop = asyncio.Event()
    connect_started = time.monotonic()
    tasks = await connect_viewers(viewers, targets, cookie, stop)
    connect_seconds = time.monotonic() - connect_started
    await asyncio.sleep(1.0)
    probes, samples = [], []
    for port in login_ports:
        found: list[float] = []
        samples.append(found)
        probes.append(asyncio.ensure_future(login_probe(port, stop, found)))
    load0 = load()
    window_start = time.time()
    cpu0 = [proc_stats(pid)["cpu"] for pid in pids]
    await asyncio.sleep(duration)
    window_end = time.time()
    cpu1 = [proc_stats(pid)["cpu"] for pid in pids]
    rss = [round(proc_stats(pid)["rss_kb"] / 1024, 1) for pid in pids]
    stop.set()
    await asyncio.gather(*probes)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    logins = [x for found in samples for x in found]
    return {
        **delivery(viewers, 1, viewers_count, window_start, window_end),
        **login_summary(logins),
        "login_p95_per_process": [login_summary(found)["login_p95"] for found in samples],
        "connect_s": round(connect_seconds, 1),
        "cpu_pct_per_process": [round((b - a) / duration * 100, 1) for a, b in zip(cpu0, cpu1)],
        "rss_mb_per_process": rss,
        "load": [load0, load()],
    }


def viewers_part(args, pg, redis, workdir: Path) -> list[dict]:
    results = []
    interval = 1 / (2 * args.speed)  # the floor writes lines at the engine's rate
    print(f"viewers: floor, {args.viewers} viewers ...", flush=True)
    floor = Floor(1, interval)
    try:
        result = asyncio.run(
            listen([(floor.port, floor.paths[0])], "", args.viewers, args.duration, [floor.serving_pid], [])
        )
    finally:
        floor.stop()
    result.update(config="floor (asyncio, issue 14)", backend="floor", processes=1)
    results.append(result)
    print(
        f"  lost {result['lost']}, spread p99 {result['spread_p99']:.1f} ms, load {result['load']}",
        flush=True,
    )
    configs = [("sqlite", 1)] + [("postgres", n) for n in [1] + args.processes]
    for backend, count in configs:
        label = f"{count} process{'es' if count > 1 else ''}, " + (
            "SQLite, in memory" if backend == "sqlite" else "PostgreSQL + Redis"
        )
        print(f"viewers: {label}, {args.viewers} viewers ...", flush=True)
        folder = workdir / f"viewers-{backend}-{count}"
        folder.mkdir(parents=True)
        if backend == "sqlite":
            database, redis_url = str(folder / "viewers.sqlite3"), None
        else:
            database, redis_url = pg.create_database(f"viewers_{count}"), redis.url
        cluster = Cluster(folder, count, database, redis_url, f"bench:viewers:{count}:", speed=args.speed)
        try:
            username, path = prepare_viewers_database(database)
            cookie = login_cookie(cluster.processes[0].url, username)
            time.sleep(2.5)  # the engine picks running deployments up within a second
            ports = [p.port for p in cluster.processes]
            result = asyncio.run(
                listen(
                    [(port, path) for port in ports], cookie, args.viewers, args.duration, cluster.pids, ports
                )
            )
        finally:
            cluster.stop()
            db_module.close_pools()
        result.update(config=label, backend=backend, processes=count)
        results.append(result)
        print(
            f"  lost {result['lost']} of {result['expected']}, spread p99 {result['spread_p99']:.1f} ms, "
            f"login p95 {result['login_p95']}, cpu {result['cpu_pct_per_process']}, load {result['load']}",
            flush=True,
        )
    return results


# --- c. pages -------------------------------------------------------------------------------


def pages_part(args, pg) -> dict:
    """pages.py on SQLite, then on a database of our PostgreSQL server."""
    runs = {}
    for backend in ("sqlite", "postgres"):
        output = f"cluster_pages_{backend}"
        command = [
            sys.executable,
            str(ROOT / "bench" / "pages.py"),
            "--runs",
            str(args.runs),
            "--output",
            output,
        ]
        if backend == "postgres":
            command += ["--database-url", pg.create_database("pages"), "--local-server"]
        print(f"pages: {backend} ...", flush=True)
        load0 = load()
        subprocess.run(command, check=True, cwd=str(ROOT), stdout=subprocess.DEVNULL)
        found = json.loads((ROOT / "bench" / f"{output}.json").read_text())
        found["load_run"] = [load0, load()]
        runs[backend] = found
        print(f"  {pages_summary_line(found)}; load {found['load_run']}", flush=True)
    return runs


# --- tables ---------------------------------------------------------------------------------


def print_engine(results) -> None:
    single = next((r for r in results if r["backend"] == "postgres" and r["processes"] == 1), None)
    rows = []
    for r in results:
        leader = r["leader"] or {}
        rows.append(
            [
                r["config"],
                r["stepping_processes"],
                leader.get("lines_per_s", "-"),
                leader.get("cpu_pct", "-"),
                leader.get("step_cpu_pct", "-"),
                f"{leader.get('step_ms_p50', '-')} / {leader.get('step_ms_p99', '-')}",
                f"{leader.get('tick_lag_ms_p50', '-')} / {leader.get('tick_lag_ms_p99', '-')}",
                ", ".join(f"{x:.1f}" for x in r["followers_cpu_pct"]) or "-",
                f"{leader['cpu_pct'] / single['leader']['cpu_pct']:.2f}"
                if single and single["leader"] and leader and r is not single
                else "-",
                f"{r['load'][0]}-{r['load'][1]}",
            ]
        )
    print()
    print(
        table(
            [
                "engine",
                "stepping",
                "lines/s",
                "leader CPU %",
                "step CPU %",
                "step p50/p99 ms",
                "lag p50/p99 ms",
                "followers CPU %",
                "leader / 1 proc",
                "load",
            ],
            rows,
        )
    )


def print_viewers(results) -> None:
    floor = next(r for r in results if r["backend"] == "floor")
    single = next((r for r in results if r["backend"] == "postgres" and r["processes"] == 1), None)
    rows = []
    for r in results:
        rows.append(
            [
                r["config"],
                f"{r['delivered']}/{r['expected']}",
                r["lost"],
                f"{r['spread_p50']:.1f} / {r['spread_p99']:.1f}",
                f"{r['spread_p99'] / single['spread_p99']:.2f}"
                if single and single["spread_p99"] and r["backend"] == "postgres"
                else "-",
                f"{r['spread_p99'] / floor['spread_p99']:.2f}"
                if floor["spread_p99"] and r is not floor
                else "-",
                f"{r['delay_p50']:.1f} / {r['delay_p99']:.1f}",
                f"{r['login_p95']:.1f}" if r["login_p95"] is not None else "-",
                ", ".join(f"{x:.0f}" for x in r["cpu_pct_per_process"]),
                f"{r['load'][0]}-{r['load'][1]}",
            ]
        )
    print()
    print(
        table(
            [
                "viewers",
                "delivered/expected",
                "lost",
                "spread p50/p99 ms",
                "p99 / 1 proc",
                "p99 / floor",
                "delay p50/p99 ms",
                "/login p95 ms",
                "CPU % per process",
                "load",
            ],
            rows,
        )
    )


def pages_summary_line(run) -> str:
    """How many cases are under 50 ms at p95, in wall time and in CPU time (this
    thread's, plus the database backends' on PostgreSQL)."""
    results = run["results"]
    wall = [r["p95_ms"] for r in results]
    cpu = [r["total_cpu_p95_ms"] for r in results]
    return (
        f"{len(results)} cases; wall p95: {sum(x < PAGES_TARGET_P95_MS for x in wall)} under "
        f"{PAGES_TARGET_P95_MS:g} ms, worst {max(wall):.1f}, median {percentile(wall, 50):.1f}; CPU p95: "
        f"{sum(x < PAGES_TARGET_P95_MS for x in cpu)} under, worst {max(cpu):.1f}, median {percentile(cpu, 50):.1f}"
    )


def print_pages(runs) -> None:
    sqlite = {(r["persona"], r["page"]): r for r in runs["sqlite"]["results"]}
    postgres = {(r["persona"], r["page"]): r for r in runs["postgres"]["results"]}
    rows = []
    for key, pg in postgres.items():
        lite = sqlite.get(key)
        rows.append(
            [
                key[0],
                key[1],
                f"{lite['median_ms']} / {lite['p95_ms']}" if lite else "-",
                lite["total_cpu_p95_ms"] if lite else "-",
                f"{pg['median_ms']} / {pg['p95_ms']}",
                pg["total_cpu_p95_ms"],
                pg["db_cpu_p95_ms"] if pg["db_cpu_p95_ms"] is not None else "-",
                ", ".join(pg["full_scans"]) or "-",
                "ok" if pg["ok"] else "MISS",
            ]
        )
    print()
    print(
        table(
            [
                "persona",
                "page",
                "SQLite wall p50/p95",
                "SQLite CPU p95",
                "PG wall p50/p95",
                "PG CPU p95 (app + db)",
                "PG db CPU p95",
                "PG seq scans",
                "PG verdict",
            ],
            rows,
        )
    )
    for backend in ("sqlite", "postgres"):
        run = runs[backend]
        print(f"{backend}: {pages_summary_line(run)}; verdict on {run['verdict_on']}; load {run['load_run']}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", default="2,4", help="cluster sizes besides the single process")
    parser.add_argument("--parts", default="engine,viewers,pages")
    parser.add_argument("--seconds", type=float, default=20.0, help="engine: measured seconds")
    parser.add_argument("--running", type=int, default=1000, help="engine: running deployments")
    parser.add_argument("--viewers", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=15.0, help="viewers: seconds of listening")
    parser.add_argument("--speed", type=float, default=0.5, help="viewers: SAMOSVAL_SIM_SPEED")
    parser.add_argument("--runs", type=int, default=30, help="pages: timed calls per page")
    parser.add_argument("--output", default="cluster", help="JSON name: bench/<output>.json")
    parser.add_argument(
        "--check",
        action="store_true",
        help="only say whether PostgreSQL and Redis are installed (exit 0 or 3)",
    )
    args = parser.parse_args(argv)
    args.processes = [int(x) for x in args.processes.split(",") if x.strip()]
    parts = set(args.parts.split(","))
    if not parts <= {"engine", "viewers", "pages"}:
        parser.error("--parts: engine, viewers, pages")
    if not all(2 <= n <= 8 for n in args.processes) or not 1 <= args.seconds <= 300:
        parser.error("--processes 2..8 each, --seconds 1..300")
    if not 1 <= args.viewers <= 5000 or not 1 <= args.duration <= 120 or args.running > 2000:
        parser.error("--viewers 1..5000, --duration 1..120, --running up to 2000")

    from tests.servers import PostgresServer, RedisServer, ServerMissing, find_postgres_bin, find_redis_server

    try:
        find_postgres_bin()
        find_redis_server()
    except ServerMissing as exc:
        print(f"skipped: {exc}")
        return 3 if args.check else 0
    if args.check:
        return 0
    pg, redis = PostgresServer(), RedisServer()
    raise_fd_limit()
    DATA_DIR.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="cluster-", dir=DATA_DIR))
    found: dict = {"args": vars(args)}
    try:
        with pg, redis:
            if "engine" in parts:
                found["engine"] = engine_part(args, pg, redis, workdir)
            if "viewers" in parts:
                found["viewers"] = viewers_part(args, pg, redis, workdir)
            if "pages" in parts:
                found["pages"] = pages_part(args, pg)
    finally:
        db_module.close_pools()
        shutil.rmtree(workdir, ignore_errors=True)
        path = write_json(args.output, {**found, "pages": _pages_summary(found.get("pages"))})
    if "engine" in found:
        print_engine(found["engine"])
    if "viewers" in found:
        print_viewers(found["viewers"])
    if "pages" in found:
        print_pages(found["pages"])
    print(f"\nwritten to {path}")
    return 0


def _pages_summary(runs):
    """The pages part as stored in cluster.json: per case, both backends' figures (the
    plans stay in bench/cluster_pages_<backend>.json)."""
    if not runs:
        return None
    keep = (
        "persona",
        "page",
        "status",
        "median_ms",
        "p95_ms",
        "cpu_p95_ms",
        "db_cpu_p95_ms",
        "total_cpu_p95_ms",
        "queries",
        "full_scans",
        "ok",
    )
    return {
        backend: {
            "load_run": run["load_run"],
            "verdict_on": run["verdict_on"],
            "results": [{k: r[k] for k in keep} for r in run["results"]],
        }
        for backend, run in runs.items()
    }


if __name__ == "__main__":
    sys.exit(main())
