"""Start-up: ``python app.py`` on the company-scale database to the first 200 on
/login (issue 23: under 0.4 s at ``--scale 10``, 1,000,000 audit rows).

    python bench/startup.py [--runs 5] [--scale 10]

The database from ``bench/seed.py --scale N`` is created once (with 500 running
deployments, so the engine's first refresh has work to do); each run starts
``python app.py`` on 127.0.0.1 with a fresh instance folder holding a copy of it,
polls GET /login every 10 ms, records the time from spawn to the first 200, then
stops the server (SIGTERM). The first run after seeding reads a cold file; the
median of all runs is the figure. A run with ``python -X importtime`` breaks the
start-up down by module. Results go to bench/startup.json.
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


def start_once(source: Path, instance: Path, importtime: bool = False) -> dict:
    instance.mkdir()
    shutil.copy(source, instance / "samosval.sqlite3")
    port = free_port()
    env = dict(os.environ, SAMOSVAL_INSTANCE_PATH=str(instance), SAMOSVAL_SECRET_KEY="bench-startup",
               PYTHONUNBUFFERED="1")
    command = [sys.executable, *(["-X", "importtime"] if importtime else []), str(ROOT / "app.py"),
               "--host", "127.0.0.1", "--port", str(port)]
    log_path = instance / "server.log"
    with open(log_path, "w") as log:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=str(ROOT), env=env, stdout=log, stderr=subprocess.STDOUT)
        elapsed = None
        try:
            while time.perf_counter() - started < 30 and process.poll() is None:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=2) as response:
                        if response.status == 200:
                            elapsed = time.perf_counter() - started
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
    result = {"seconds": round(elapsed, 3)}
    if importtime:
        result["slowest_imports"] = slowest_imports(log_path.read_text())
    return result


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
    args = parser.parse_args(argv)
    if not 1 <= args.runs <= 50:
        parser.error("--runs 1..50")
    from seed import scaled, seed
    DATA_DIR.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="startup-", dir=DATA_DIR))
    try:
        source = workdir / "startup.sqlite3"
        counts = seed(str(source), running=500, **scaled(args.scale))
        runs = []
        for n in range(args.runs):
            runs.append(start_once(source, workdir / f"run{n}"))
            print(f"run {n + 1}: {runs[-1]['seconds']:.3f} s", flush=True)
        profile = start_once(source, workdir / "importtime", importtime=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    times = [r["seconds"] for r in runs]
    median = statistics.median(times)
    print()
    print(table(["runs", "min s", "median s", "max s", ""],
                [[len(times), min(times), median, max(times), verdict(median < TARGET_S)]],
                title=f"python app.py to the first 200 on /login ({counts['audit_log']} audit rows, "
                      f"{counts['image_requests']} requests)"))
    print("\nslowest top-level imports (python -X importtime, cumulative):")
    for item in profile["slowest_imports"]:
        print(f"  {item['ms']:7.1f} ms  {item['module']}")
    path = write_json("startup", {"target_s": TARGET_S, "counts": counts, "runs": times, "median_s": median,
                                  "slowest_imports": profile["slowest_imports"]})
    print(f"\nwritten to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
