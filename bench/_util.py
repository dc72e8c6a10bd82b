"""Small helpers shared by the benchmark scripts: percentiles, tables, JSON output,
and a description of the machine the figures came from. Servers are started with
the tests' own helper (``tests.live.AppProcess``), so there is one way to run the app.

Also the live-log fan-out client shared by ``sse_fanout.py`` and ``cluster.py``: the
asyncio viewers, what they measure (``summarise``), the floor server, and the
``/login`` probe. The floor and the probe run as small processes of their own:
``python bench/_util.py --floor-server PORT DEPLOYMENTS INTERVAL`` and
``python bench/_util.py --login-probe PORT``.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import platform
import re
import resource
import socket
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


# --- the live-log fan-out client ------------------------------------------------------

LINE = re.compile(rb'"seq":(\d+),"ts":([0-9.]+)')
CONNECT_BATCH = 200
GRACE_SECONDS = 1.0  # lines this close to the window's end may still be in flight
LOGIN_EVERY = 0.1


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(20000, hard), hard))


def proc_stats(pid: int) -> dict:
    """CPU seconds (user + system), RSS and thread count of one process."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return {
        "cpu": (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"),
        "rss_kb": int(re.search(r"^VmRSS:\s+(\d+)", status, re.M).group(1)),
        "threads": int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1)),
    }


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
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("the floor server did not start")

    @property
    def serving_pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


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


async def connect_viewers(viewers, targets, cookie: str, stop: asyncio.Event) -> list:
    """Open every viewer, CONNECT_BATCH at a time; ``targets[i]`` is viewer i's
    ``(port, path)``. Returns their tasks once all are connected."""
    tasks = []
    for start in range(0, len(viewers), CONNECT_BATCH):
        batch = range(start, min(start + CONNECT_BATCH, len(viewers)))
        tasks += [
            asyncio.ensure_future(run_viewer(viewers[i], targets[i][0], targets[i][1], cookie, stop))
            for i in batch
        ]
        while sum(viewers[i].connected for i in batch) < len(batch):
            failed = [t for t in tasks if t.done() and t.exception()]
            if failed:
                raise failed[0].exception()
            await asyncio.sleep(0.01)
    return tasks


def login_probe_process(port: int) -> None:
    """``GET /login`` every 100 ms until stdin closes; prints the times (ms) as JSON.
    A process of its own: in the viewers' event loop it would measure their lag."""
    import http.client
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
    """Runs ``login_probe_process`` until ``stop``; its times go into ``samples``
    (a failed request counts as infinity)."""
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


def delivery(viewers, groups: int, per_group: int, window_start: float, window_end: float) -> dict:
    """Lines produced in the window vs. delivered; spread (a line's receipt at each
    viewer minus its first receipt by any viewer of its deployment) and delay
    (receipt minus the line's own timestamp), in ms."""
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
    return {
        "viewers": len(viewers),
        "groups": groups,
        "per_group": per_group,
        "produced": produced,
        "expected": produced * per_group,
        "delivered": delivered,
        "lost": produced * per_group - delivered,
        "spread_p50": percentile(spreads, 50),
        "spread_p99": percentile(spreads, 99),
        "delay_p50": percentile(delays, 50),
        "delay_p99": percentile(delays, 99),
    }


def login_summary(logins: list[float]) -> dict:
    finite = [x for x in logins if x != float("inf")]
    return {
        "login_p95": percentile(finite, 95) if finite else None,
        "login_failed": len(logins) - len(finite),
    }


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
    """``delivery`` plus the serving process's figures (``proc_stats`` before the
    viewers, at the window's start and end, and after they left) and ``/login``."""
    return {
        **delivery(viewers, groups, per_group, window_start, window_end),
        "connect_s": round(connect_seconds, 1),
        **login_summary(logins),
        "cpu_pct": (during["cpu"] - cpu_start["cpu"]) / duration * 100,
        "rss_mb": during["rss_kb"] / 1024,
        "threads": during["threads"],
        "threads_after": after["threads"],
        "kb_per_stream": (during["rss_kb"] - before["rss_kb"]) / max(1, len(viewers)),
    }


def _helper_process(argv: list[str]) -> int:
    if argv[:1] == ["--login-probe"]:
        login_probe_process(int(argv[1]))
        return 0
    if argv[:1] == ["--floor-server"]:
        floor_server(int(argv[1]), int(argv[2]), float(argv[3]))
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(_helper_process(sys.argv[1:]))
