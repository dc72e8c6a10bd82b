"""Fan-out of the live log stream: N concurrent SSE clients on a running server.

    python bench/sse_fanout.py [--duration 30] [--scenarios 1,100,500,50x10] [--speed 1]

Each scenario starts its own server (``python app.py`` on 127.0.0.1, a temporary
instance, ``SAMOSVAL_SIM_SPEED`` = --speed), with one running deployment (or D
for ``DxC``: D deployments with C clients each), opens the clients, listens for
--duration seconds, and prints per scenario:

- lines produced in the window vs. delivered to each client (min / mean) and lost;
- delay from a line's timestamp to its receipt, p50 / p99 / max. The timestamp
  is when the engine scheduled the line; the engine appends on its next 0.1 s
  tick, so this includes up to ~100 ms of tick lag that is not the stream's.
  "spread" is the receipt time minus the earliest receipt of the same line by any
  client, i.e. the cost of fanning one line out to every client;
- the server's CPU % (of one core, from /proc) and its thread count during the
  window and a few seconds after the clients left.

werkzeug's threaded server runs one thread per connection, so 500 clients are
500 threads: expected. Results go to bench/sse_fanout.json (gitignored).
Everything binds to 127.0.0.1 and every scenario stops by itself.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from samosval.db import connect  # noqa: E402
from samosval.domain import users as user_domain  # noqa: E402
from tests import factories  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import free_port  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
CONNECT_BATCH = 50
GRACE_SECONDS = 1.0  # lines this close to the end may still be in flight: not counted


# --- the server -----------------------------------------------------------------------

class Server:
    def __init__(self, workdir: Path, speed: float, kind: str = "werkzeug"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db_path = str(workdir / "instance" / "samosval.sqlite3")
        env = dict(os.environ)
        env.update({
            "SAMOSVAL_INSTANCE_PATH": str(workdir / "instance"),
            "SAMOSVAL_SECRET_KEY": "bench-secret",
            "SAMOSVAL_SIM_SPEED": str(speed),
            "SAMOSVAL_SSE_MAX_STREAMS_PER_USER": "100000",
            "SAMOSVAL_LOGIN_RATE_LIMIT_USER": "1000 per minute",
            "SAMOSVAL_LOGIN_RATE_LIMIT_IP": "1000 per minute",
            "PYTHONUNBUFFERED": "1",
        })
        self.log_path = workdir / "server.log"
        self._log = open(self.log_path, "w")
        if kind == "gunicorn":
            # The production way (gunicorn.conf.py): one worker, one thread per stream.
            env.update({"SAMOSVAL_BIND": f"127.0.0.1:{self.port}", "SAMOSVAL_THREADS": "2100"})
            command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
        else:
            command = [sys.executable, str(ROOT / "app.py"), "--host", "127.0.0.1", "--port", str(self.port)]
        self.process = subprocess.Popen(command, cwd=str(ROOT), env=env, stdout=self._log,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("server did not start:\n" + self.log_path.read_text())
            try:
                with urllib.request.urlopen(self.url + "/login", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)

    def pids(self) -> list[int]:
        """The server process and its children (gunicorn's worker does the work)."""
        pids = [self.process.pid]
        try:
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text()
            pids += [int(pid) for pid in children.split()]
        except OSError:
            pass
        return pids

    def cpu_seconds(self) -> float:
        total = 0.0
        for pid in self.pids():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime
        return total

    def threads(self) -> int:
        total = 0
        for pid in self.pids():
            match = re.search(r"^Threads:\s+(\d+)", Path(f"/proc/{pid}/status").read_text(), re.M)
            total += int(match.group(1))
        return total

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()


def seed(db_path: str, deployments: int) -> list[int]:
    db = connect(db_path)
    try:
        user_id = user_domain.create_user(db, "benchop", "bench-password-1", "operator",
                                          now=time.time())
        request_id = factories.make_request(db, owner_id=user_id, status="approved")
        image_id = factories.make_image(db, request_id=request_id)
        return [factories.make_deployment(db, image_id=image_id, name=f"fanout-{n + 1}")
                for n in range(deployments)]
    finally:
        db.close()


def login(base: str) -> str:
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(base + "/login", timeout=10).read().decode()
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    data = urllib.parse.urlencode({"username": "benchop", "password": "bench-password-1",
                                   "csrf_token": token}).encode()
    opener.open(base + "/login", data=data, timeout=10)
    return "; ".join(f"{cookie.name}={cookie.value}" for cookie in jar)


# --- the clients --------------------------------------------------------------------------

class Client:
    def __init__(self, deployment_id: int):
        self.deployment_id = deployment_id
        self.received: list[tuple[int, float, float]] = []  # (seq, line ts, receipt time)
        self.status = None
        self.error = None
        self.connected = asyncio.Event()


async def run_client(client: Client, port: int, cookie: str) -> None:
    """Read one stream until the task is cancelled at the end of the window. One
    ``read()`` per burst and hand-made de-chunking keep the bench's own share of
    the measured delay small."""
    writer = None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 30)
        writer.write((f"GET /api/deployments/{client.deployment_id}/logs/stream HTTP/1.1\r\n"
                      f"Host: 127.0.0.1:{port}\r\nCookie: {cookie}\r\n"
                      "Accept: text/event-stream\r\n\r\n").encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        client.status = int(head.split(b" ", 2)[1])
        client.connected.set()
        if client.status != 200:
            return
        chunked = b"transfer-encoding: chunked" in head.lower()
        raw = b""
        text = ""
        while True:
            data = await reader.read(65536)
            if not data:
                return
            now = time.time()
            if chunked:
                raw += data
                while True:
                    eol = raw.find(b"\r\n")
                    if eol < 0:
                        break
                    size = int(raw[:eol].split(b";")[0] or b"0", 16)
                    if size == 0:
                        return
                    if len(raw) < eol + 2 + size + 2:
                        break
                    text += raw[eol + 2:eol + 2 + size].decode()
                    raw = raw[eol + 2 + size + 2:]
            else:
                text += data.decode()
            while "\n\n" in text:
                block, text = text.split("\n\n", 1)
                for line in block.split("\n"):
                    if line.startswith('data: {"seq"'):
                        payload = json.loads(line[6:])
                        client.received.append((payload["seq"], payload["ts"], now))
    except (asyncio.TimeoutError, asyncio.CancelledError):
        return
    except Exception as exc:  # noqa: BLE001 - report it, never hang the bench
        client.error = repr(exc)
    finally:
        client.connected.set()  # connected, refused or failed: never leave the bench waiting
        if writer is not None:
            writer.close()


async def run_scenario(server: Server, deployment_ids: list[int], per_deployment: int,
                       duration: float) -> dict:
    cookie = login(server.url)
    clients = [Client(d) for d in deployment_ids for _ in range(per_deployment)]
    tasks = []
    started_connecting = time.time()
    for index in range(0, len(clients), CONNECT_BATCH):
        for client in clients[index:index + CONNECT_BATCH]:
            tasks.append(asyncio.create_task(run_client(client, server.port, cookie)))
        await asyncio.sleep(0.05)
    await asyncio.wait_for(asyncio.gather(*(c.connected.wait() for c in clients)), 120)
    connect_seconds = time.time() - started_connecting
    refused = [c.status for c in clients if c.status != 200]
    await asyncio.sleep(1.0)  # let the initial 200-line tails drain

    window_start = time.time()
    stop_at = window_start + duration
    cpu_start = server.cpu_seconds()
    bench_cpu_start = time.process_time()
    max_threads = server.threads()
    while time.time() < stop_at:
        await asyncio.sleep(min(1.0, max(0.0, stop_at - time.time())))
        max_threads = max(max_threads, server.threads())
    window_end = time.time()
    server_cpu = (server.cpu_seconds() - cpu_start) / (window_end - window_start) * 100
    bench_cpu = (time.process_time() - bench_cpu_start) / (window_end - window_start) * 100
    threads_during = server.threads()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(3.0)  # the server notices the gone clients on its next write
    threads_after = server.threads()
    return summarise(clients, window_start, window_end, duration, per_deployment, connect_seconds,
                     refused, server_cpu, bench_cpu, max_threads, threads_during, threads_after)


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def summarise(clients, window_start, window_end, duration, per_deployment, connect_seconds, refused,
              server_cpu, bench_cpu, max_threads, threads_during, threads_after) -> dict:
    last_counted = window_end - GRACE_SECONDS
    by_deployment: dict[int, list[Client]] = {}
    for client in clients:
        by_deployment.setdefault(client.deployment_id, []).append(client)
    produced_total = 0
    delivered, lost, duplicates, delays, spreads = [], [], 0, [], []
    for group in by_deployment.values():
        in_window = {seq: ts for c in group for seq, ts, _ in c.received if window_start <= ts <= last_counted}
        if not in_window:
            continue
        low, high = min(in_window), max(in_window)
        produced = high - low + 1  # seq numbers are consecutive: a hole is a line nobody got
        produced_total += produced
        first_receipt: dict[int, float] = {}
        for c in group:
            for seq, _ts, got in c.received:
                if low <= seq <= high:
                    first_receipt[seq] = min(got, first_receipt.get(seq, got))
        for c in group:
            seqs = [seq for seq, _ts, _got in c.received if low <= seq <= high]
            duplicates += len(seqs) - len(set(seqs))
            delivered.append(len(set(seqs)))
            lost.append(produced - len(set(seqs)))
            for seq, ts, got in c.received:
                if low <= seq <= high:
                    delays.append((got - ts) * 1000)
                    spreads.append((got - first_receipt[seq]) * 1000)
    errors = [c.error for c in clients if c.error]
    return {
        "clients": len(clients),
        "deployments": len(by_deployment),
        "clients_per_deployment": per_deployment,
        "duration_s": round(window_end - window_start, 1),
        "connect_s": round(connect_seconds, 2),
        "refused": refused,
        "errors": errors[:5],
        "lines_produced": produced_total,
        "delivered_min": min(delivered) if delivered else 0,
        "delivered_mean": round(statistics.mean(delivered), 1) if delivered else 0,
        "lost_total": sum(lost),
        "lost_max_per_client": max(lost) if lost else 0,
        "duplicates": duplicates,
        "delay_p50_ms": round(percentile(delays, 0.50), 1),
        "delay_p99_ms": round(percentile(delays, 0.99), 1),
        "delay_max_ms": round(max(delays), 1) if delays else None,
        "spread_p50_ms": round(percentile(spreads, 0.50), 1),
        "spread_p99_ms": round(percentile(spreads, 0.99), 1),
        "server_cpu_pct": round(server_cpu, 1),
        "bench_cpu_pct": round(bench_cpu, 1),
        "server_threads_max": max_threads,
        "server_threads_end": threads_during,
        "server_threads_after_clients_left": threads_after,
    }


# --- main ---------------------------------------------------------------------------------

def parse_scenario(text: str) -> tuple[int, int]:
    """"500" -> one deployment, 500 clients; "50x10" -> 50 deployments, 10 clients each."""
    if "x" in text:
        deployments, clients = text.lower().split("x", 1)
        return int(deployments), int(clients)
    return 1, int(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of listening per scenario")
    parser.add_argument("--scenarios", default="1,100,500,50x10",
                        help="comma-separated: N clients on one deployment, or DxC")
    parser.add_argument("--speed", type=float, default=float(os.environ.get("SAMOSVAL_SIM_SPEED", "1")),
                        help="simulation speed of the server (SAMOSVAL_SIM_SPEED)")
    parser.add_argument("--server", choices=("werkzeug", "gunicorn"), default="werkzeug",
                        help="python app.py (werkzeug, threaded) or gunicorn -c gunicorn.conf.py")
    parser.add_argument("--output", default=str(Path(__file__).with_suffix(".json")))
    args = parser.parse_args(argv)
    if not 1 <= args.duration <= 600:
        parser.error("--duration must be between 1 and 600 seconds")

    results = []
    for spec in args.scenarios.split(","):
        deployments, per_deployment = parse_scenario(spec.strip())
        if deployments * per_deployment > 2000:
            parser.error("at most 2000 clients per scenario")
        with tempfile.TemporaryDirectory(prefix="samosval-bench-") as workdir:
            server = Server(Path(workdir), args.speed, args.server)
            try:
                ids = seed(server.db_path, deployments)
                time.sleep(1.5)  # the engine picks running deployments up on its next refresh
                print(f"scenario {spec}: {deployments} deployment(s) x {per_deployment} client(s), "
                      f"{args.duration:.0f} s ...", flush=True)
                result = asyncio.run(run_scenario(server, ids, per_deployment, args.duration))
            finally:
                server.stop()
        result["scenario"] = spec
        results.append(result)

    print_table(results, args)
    report = {"when": time.strftime("%Y-%m-%dT%H:%M:%S"), "duration_s": args.duration,
              "speed": args.speed, "cpus": os.cpu_count(), "python": sys.version.split()[0],
              "server": ("gunicorn gthread, 1 worker" if args.server == "gunicorn"
                         else "python app.py (werkzeug threaded)"), "results": results}
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"\nwritten to {args.output}")
    return 0


def print_table(results: list[dict], args) -> None:
    print(f"\nSSE fan-out, {args.duration:.0f} s per scenario, SIM_SPEED={args.speed:g}, "
          f"{os.cpu_count()} CPUs")
    header = ("scenario", "clients", "produced", "deliv.min", "lost", "dups", "p50 ms", "p99 ms",
              "spread p99", "srv CPU%", "threads", "after")
    rows = [(r["scenario"], r["clients"], r["lines_produced"], r["delivered_min"], r["lost_total"],
             r["duplicates"], r["delay_p50_ms"], r["delay_p99_ms"], r["spread_p99_ms"],
             r["server_cpu_pct"], r["server_threads_max"], r["server_threads_after_clients_left"])
            for r in results]
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    for row in (header, *rows):
        print("  ".join(str(value).rjust(width) for value, width in zip(row, widths)))
    for r in results:
        if r["refused"] or r["errors"]:
            print(f"  {r['scenario']}: refused {r['refused'][:5]} errors {r['errors']}")


if __name__ == "__main__":
    sys.exit(main())
