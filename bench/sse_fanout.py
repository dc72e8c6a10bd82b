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

The floor: a bare asyncio server (``--floor-server``, a few lines below) that
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
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import ROOT, free_port, percentile, table, write_json  # noqa: E402

from samosval.db import connect  # noqa: E402
from tests import factories  # noqa: E402
from tests.live import AppProcess, login_cookie  # noqa: E402

LINE = re.compile(rb'"seq":(\d+),"ts":([0-9.]+)')
CONNECT_BATCH = 200
GRACE_SECONDS = 1.0  # lines this close to the window's end may still be in flight
LOGIN_EVERY = 0.1


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(20000, hard), hard))


# --- the floor: a bare broadcast server ---------------------------------------------


def floor_server(port: int, deployments: int, interval: float) -> None:
    """Every ``interval`` s, one SSE line per deployment, the same bytes written to
    every connection of that deployment (path ``/d/<k>``)."""

    async def main():
        viewers: dict[int, set] = {k: set() for k in range(deployments)}

        async def handle(reader, writer):
            try:
                request = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, OSError):
                writer.close()  # the readiness probe
                return
            k = int(request.split(b" ")[1].rsplit(b"/", 1)[1])
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n")
            viewers[k].add(writer)
            try:
                await reader.read()
            except OSError:
                pass  # the viewer left
            finally:
                viewers[k].discard(writer)

        async def produce():
            seq = 0
            while True:
                await asyncio.sleep(interval)
                seq += 1
                for writers in viewers.values():
                    data = b'data: {"seq":%d,"ts":%.6f,"level":"INFO","text":"floor line"}\n\n' % (
                        seq,
                        time.time(),
                    )
                    for writer in writers:
                        writer.write(data)

        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
        asyncio.ensure_future(produce())
        await server.serve_forever()

    raise_fd_limit()
    asyncio.run(main())


class Floor:
    """The floor server as a subprocess with the same interface as AppProcess."""

    def __init__(self, deployments: int, interval: float):
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--floor-server", str(self.port), str(deployments), str(interval)]
        )
        self.paths = [f"/d/{k}" for k in range(deployments)]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                import socket

                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the floor server did not start")

    @property
    def serving_pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


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


def proc_stats(pid: int) -> dict:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return {
        "cpu": (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"),
        "rss_kb": int(re.search(r"^VmRSS:\s+(\d+)", status, re.M).group(1)),
        "threads": int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1)),
    }


# --- the client -----------------------------------------------------------------------


class Viewer:
    __slots__ = ("group", "received", "connected")

    def __init__(self, group: int):
        self.group = group
        self.received: list[tuple[int, float, float]] = []  # (seq, ts, receipt)
        self.connected = False


async def run_viewer(viewer: Viewer, port: int, path: str, cookie: str, stop: asyncio.Event):
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        writer.close()
        raise RuntimeError(head[:200])
    viewer.connected = True
    pending = b""
    try:
        while not stop.is_set():
            data = await reader.read(65536)
            if not data:
                break
            now = time.time()
            pending += data
            cut = pending.rfind(b"\n\n")
            if cut < 0:
                continue
            complete, pending = pending[:cut], pending[cut + 2 :]
            for match in LINE.finditer(complete):
                viewer.received.append((int(match.group(1)), float(match.group(2)), now))
    finally:
        writer.close()


def login_probe_process(port: int) -> None:
    """``GET /login`` every 100 ms until stdin closes; prints the times (ms) as JSON.
    A process of its own: in the viewers' event loop it would measure their lag."""
    import http.client
    import json
    import select

    samples = []
    while not select.select([sys.stdin], [], [], LOGIN_EVERY)[0]:
        started = time.perf_counter()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", "/login")
            conn.getresponse().read()
            conn.close()
            samples.append((time.perf_counter() - started) * 1000)
        except OSError:
            samples.append(None)
    print(json.dumps(samples))


async def login_probe(port: int, stop: asyncio.Event, samples: list[float]):
    import json

    probe = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--login-probe",
        str(port),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    await stop.wait()
    out, _ = await probe.communicate(b"stop")
    samples.extend(float("inf") if x is None else x for x in json.loads(out))


async def scenario(server, per_group: int, duration: float, login_port: int | None) -> dict:
    viewers = [Viewer(g) for g in range(len(server.paths)) for _ in range(per_group)]
    stop = asyncio.Event()
    before = proc_stats(server.serving_pid)
    tasks = []
    connect_started = time.monotonic()
    for start in range(0, len(viewers), CONNECT_BATCH):
        batch = viewers[start : start + CONNECT_BATCH]
        tasks += [
            asyncio.ensure_future(
                run_viewer(v, server.port, server.paths[v.group], getattr(server, "cookie", ""), stop)
            )
            for v in batch
        ]
        while sum(v.connected for v in batch) < len(batch):
            failed = [t for t in tasks if t.done() and t.exception()]
            if failed:
                raise failed[0].exception()
            await asyncio.sleep(0.01)
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


def summarise(
    viewers,
    groups,
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
) -> dict:
    first_receipt: dict[tuple[int, int], float] = {}
    seqs_by_group: dict[int, set] = {g: set() for g in range(groups)}
    counts: dict[tuple[int, int], int] = {}
    for viewer in viewers:
        for seq, ts, receipt in viewer.received:
            if not window_start <= ts <= window_end - GRACE_SECONDS:
                continue
            key = (viewer.group, seq)
            first_receipt[key] = min(first_receipt.get(key, receipt), receipt)
            counts[key] = counts.get(key, 0) + 1
            seqs_by_group[viewer.group].add(seq)
    produced = sum(max(s) - min(s) + 1 for s in seqs_by_group.values() if s)
    spreads, delays = [], []
    for viewer in viewers:
        for seq, ts, receipt in viewer.received:
            key = (viewer.group, seq)
            if key in first_receipt and window_start <= ts <= window_end - GRACE_SECONDS:
                spreads.append((receipt - first_receipt[key]) * 1000)
                delays.append((receipt - ts) * 1000)
    delivered = sum(counts.values())
    finite = [x for x in logins if x != float("inf")]
    return {
        "viewers": len(viewers),
        "groups": groups,
        "per_group": per_group,
        "connect_s": round(connect_seconds, 1),
        "produced": produced,
        "expected": produced * per_group,
        "delivered": delivered,
        "lost": produced * per_group - delivered,
        "spread_p50": percentile(spreads, 50),
        "spread_p99": percentile(spreads, 99),
        "delay_p50": percentile(delays, 50),
        "delay_p99": percentile(delays, 99),
        "login_p95": percentile(finite, 95) if finite else None,
        "login_failed": len(logins) - len(finite),
        "cpu_pct": (during["cpu"] - cpu_start["cpu"]) / duration * 100,
        "rss_mb": during["rss_kb"] / 1024,
        "threads": during["threads"],
        "threads_after": after["threads"],
        "kb_per_stream": (during["rss_kb"] - before["rss_kb"]) / max(1, len(viewers)),
    }


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
    parser.add_argument("--floor-server", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--login-probe", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.login_probe:
        login_probe_process(args.login_probe)
        return 0
    if args.floor_server:
        port, deployments, interval = args.floor_server
        floor_server(int(port), int(deployments), float(interval))
        return 0
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
