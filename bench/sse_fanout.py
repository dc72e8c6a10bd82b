"""Fan-out of the live log stream to many viewers, against a floor.

    python bench/sse_fanout.py [--duration 15] [--scenarios 1,100,1000,5000,50x20]
                               [--servers app,production] [--half-open 1000] [--speed 2]

For every scenario (N viewers of one deployment, or DxC: D deployments with C
viewers each) and every server (``app``: ``python app.py``; ``production``:
``gunicorn -c gunicorn.conf.py wsgi:app``; both on gevent) the script starts the
server on 127.0.0.1 with a temporary instance and D running deployments, opens
the viewers, listens for --duration seconds and reports:

- lines produced in the window vs. lines delivered to the viewers (and lost);
- spread: for each line, its receipt time at each viewer minus its first receipt
  by any viewer of that deployment (the cost of fanning one line out), p50 / p99;
- delay: receipt time minus the line's timestamp (stamped when the engine appends
  it), p50 / p99;
- ``/login`` p95 from a client polling it every 100 ms during the window;
- the serving process's CPU % (of one core), RSS and thread count, and its RSS
  per open stream (RSS with the viewers connected minus RSS before, / viewers).

The floor: a bare asyncio server (``Floor`` in bench/_util.py, shared with cluster.py) that
writes the same SSE bytes to every connection of a "deployment" at the same line
rate, measured by the same client in the same run. On a 2-core machine the
client itself needs time to read one line from 1,000 sockets, so Samosval's
spread is reported as a multiple of the floor's.

Half-open sockets: --half-open connections each send a request line and one
header, then nothing. Reported: ``/login`` p95 meanwhile, and how long until the
server closed each of them (p50 / max; never closed within 30 s counts as 30).

The client is one asyncio process on one thread (the script itself). The open
files limit is raised to 20,000 here and in the servers. Results go to
bench/sse_fanout.json (gitignored); everything binds to 127.0.0.1 and stops.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import (  # noqa: E402
    CONNECT_BATCH,
    ROOT,
    Floor,
    Viewer,
    connect_viewers,
    login_probe,
    percentile,
    proc_stats,
    raise_fd_limit,
    summarise,
    table,
    write_json,
)

from samosval.db import connect  # noqa: E402
from tests import factories  # noqa: E402
from tests.live import AppProcess, login_cookie  # noqa: E402

# --- Samosval -----------------------------------------------------------------------


class Samosval:
    def __init__(
        self, workdir: Path, kind: str, deployments: int, speed: float, header_timeout: float | None = None
    ):
        env = {
            "SAMOSVAL_SSE_MAX_STREAMS_PER_USER": "100000",
            "SAMOSVAL_LOGIN_RATE_LIMIT_IP": "100000 per minute",
            "SAMOSVAL_LOGIN_RATE_LIMIT_USER": "100000 per minute",
        }
        if header_timeout:
            env["SAMOSVAL_HEADER_TIMEOUT"] = str(header_timeout)
        self.app = AppProcess(
            workdir / "instance",
            workdir / "server.log",
            speed=speed,
            extra_env=env,
            production=kind == "production",
        )
        self.port = self.app.port
        user_id = self.app.create_user("benchops", "operator")
        db = connect(self.app.db_path)
        try:
            ids = []
            for n in range(deployments):
                request_id = factories.make_request(db, owner_id=user_id, status="approved")
                image_id = factories.make_image(db, request_id=request_id)
                ids.append(factories.make_deployment(db, image_id=image_id, name=f"bench-{n}"))
        finally:
            db.close()
        self.cookie = login_cookie(self.app.url, "benchops")
        self.paths = [f"/api/deployments/{i}/logs/stream" for i in ids]
        time.sleep(2.5)  # the engine picks running deployments up within a second

    @property
    def serving_pid(self) -> int:
        return self.app.serving_pid

    def stop(self) -> None:
        self.app.stop()


async def scenario(server, per_group: int, duration: float, login_port: int | None) -> dict:
    viewers = [Viewer(g) for g in range(len(server.paths)) for _ in range(per_group)]
    stop = asyncio.Event()
    before = proc_stats(server.serving_pid)
    connect_started = time.monotonic()
    targets = [(server.port, server.paths[v.group]) for v in viewers]
    tasks = await connect_viewers(viewers, targets, getattr(server, "cookie", ""), stop)
    connect_seconds = time.monotonic() - connect_started
    await asyncio.sleep(1.0)
    logins: list[float] = []
    probe = asyncio.ensure_future(login_probe(login_port, stop, logins)) if login_port else None
    window_start = time.time()
    cpu_start = proc_stats(server.serving_pid)
    await asyncio.sleep(duration)
    window_end = time.time()
    during = proc_stats(server.serving_pid)
    stop.set()
    if probe:
        await probe
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(2.0)
    after = proc_stats(server.serving_pid)
    return summarise(
        viewers,
        len(server.paths),
        per_group,
        window_start,
        window_end,
        duration,
        before,
        cpu_start,
        during,
        after,
        logins,
        connect_seconds,
    )


async def half_open(server, count: int, watch: float) -> dict:
    """``count`` connections that send half a request, then nothing."""
    closed_after: list[float] = []
    stop = asyncio.Event()

    async def one():
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        started = time.monotonic()
        try:
            await asyncio.wait_for(reader.read(), watch)
            closed_after.append(time.monotonic() - started)
        except (TimeoutError, OSError):
            closed_after.append(watch)
        finally:
            writer.close()

    tasks = []
    for start in range(0, count, CONNECT_BATCH):
        tasks += [asyncio.ensure_future(one()) for _ in range(min(CONNECT_BATCH, count - start))]
        await asyncio.sleep(0.05)
    logins: list[float] = []
    probe = asyncio.ensure_future(login_probe(server.port, stop, logins))
    await asyncio.gather(*tasks, return_exceptions=True)
    stop.set()
    await probe
    finite = [x for x in logins if x != float("inf")]
    return {
        "sockets": count,
        "login_p95": percentile(finite, 95) if finite else None,
        "login_samples": len(logins),
        "login_failed": len(logins) - len(finite),
        "closed_p50_s": percentile(closed_after, 50),
        "closed_max_s": max(closed_after),
        "never_closed": sum(1 for x in closed_after if x >= watch),
    }


# --- running it ---------------------------------------------------------------------------


def parse_scenario(text: str) -> tuple[int, int]:
    if "x" in text:
        groups, per_group = text.split("x")
        return int(groups), int(per_group)
    return 1, int(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of listening per scenario")
    parser.add_argument(
        "--scenarios",
        default="1,100,1000,5000,50x20,1000x1",
        help="N viewers of one deployment, or DxC (1000x1: the engine at 1,000 deployments)",
    )
    parser.add_argument("--servers", default="app,production")
    parser.add_argument("--half-open", type=int, default=1000, help="0 to skip")
    parser.add_argument(
        "--speed",
        type=float,
        default=0.5,
        help="SAMOSVAL_SIM_SPEED (a running deployment writes ~2 lines/s at speed 1)",
    )
    args = parser.parse_args(argv)
    raise_fd_limit()
    interval = 1 / (2 * args.speed)  # the floor writes lines at the engine's rate
    results = []
    for text in args.scenarios.split(","):
        groups, per_group = parse_scenario(text)
        for kind in ["floor"] + args.servers.split(","):
            with tempfile.TemporaryDirectory(prefix="samosval-fanout-") as tmp:
                server = (
                    Floor(groups, interval)
                    if kind == "floor"
                    else Samosval(Path(tmp), kind, groups, args.speed)
                )
                try:
                    load = os.getloadavg()[0]
                    result = asyncio.run(
                        scenario(server, per_group, args.duration, None if kind == "floor" else server.port)
                    )
                finally:
                    server.stop()
            result.update(scenario=text, server=kind, load=load)
            results.append(result)
            print(
                f"{text:>6} {kind:<10} lost {result['lost']} of {result['expected']}, spread p99 "
                f"{result['spread_p99']:.1f} ms, delay p99 {result['delay_p99']:.1f} ms, login p95 "
                f"{result['login_p95']}, cpu {result['cpu_pct']:.0f} %, load {load:.2f}",
                flush=True,
            )
    half_open_results = []
    if args.half_open:
        for kind in args.servers.split(","):
            with tempfile.TemporaryDirectory(prefix="samosval-halfopen-") as tmp:
                server = Samosval(Path(tmp), kind, 1, args.speed)
                try:
                    result = asyncio.run(half_open(server, args.half_open, 30.0))
                    result.update(
                        server=kind,
                        load=os.getloadavg()[0],
                        threads=proc_stats(server.serving_pid)["threads"],
                    )
                finally:
                    server.stop()
            half_open_results.append(result)
            print(f"half-open {kind}: {result}", flush=True)
    print_tables(results, half_open_results)
    path = write_json("sse_fanout", {"args": vars(args), "results": results, "half_open": half_open_results})
    print(f"\nwritten to {path.relative_to(ROOT)}")
    return 0


def print_tables(results, half_open_results) -> None:
    floors = {r["scenario"]: r for r in results if r["server"] == "floor"}
    rows = []
    for r in results:
        floor = floors.get(r["scenario"])
        ratio = (r["spread_p99"] / floor["spread_p99"]) if floor and floor["spread_p99"] else None
        rows.append(
            [
                r["scenario"],
                r["server"],
                f"{r['delivered']}/{r['expected']}",
                f"{r['spread_p50']:.1f} / {r['spread_p99']:.1f}",
                f"{ratio:.2f}" if ratio and r["server"] != "floor" else "-",
                f"{r['delay_p50']:.1f} / {r['delay_p99']:.1f}",
                f"{r['login_p95']:.1f}" if r["login_p95"] is not None else "-",
                f"{r['cpu_pct']:.0f}",
                f"{r['rss_mb']:.0f}",
                r["threads"],
                f"{r['kb_per_stream']:.1f}",
                f"{r['load']:.2f}",
            ]
        )
    print()
    print(
        table(
            [
                "viewers",
                "server",
                "delivered/expected",
                "spread p50/p99 ms",
                "p99 / floor",
                "delay p50/p99 ms",
                "/login p95 ms",
                "CPU %",
                "RSS MB",
                "threads",
                "KB/stream",
                "load",
            ],
            rows,
        )
    )
    if half_open_results:
        print()
        print(
            table(
                [
                    "server",
                    "half-open sockets",
                    "/login p95 ms",
                    "closed p50 / max s",
                    "never closed",
                    "threads",
                ],
                [
                    [
                        r["server"],
                        r["sockets"],
                        f"{r['login_p95']:.1f}" if r["login_p95"] else "-",
                        f"{r['closed_p50_s']:.1f} / {r['closed_max_s']:.1f}",
                        r["never_closed"],
                        r["threads"],
                    ]
                    for r in half_open_results
                ],
            )
        )


if __name__ == "__main__":
    sys.exit(main())
