"""Webhook at scale: one commit that matches 1,000 running continuous deployments.

    python bench/hook.py [--deployments 1000] [--runs 3]

The company-scale database of ``bench/seed.py`` is changed so that requests
1..N are continuous requests on one repository and branch, and their N
deployments are running (all others stopped). Each run copies that database,
starts ``python app.py`` on 127.0.0.1 (real engine thread, SIM_SPEED=1), waits
until the engine has picked the running deployments up, and POSTs one generic
commit with a webhook token. It records the response time (as seen by the
client), checks that the response lists all N restarted deployments and that the
database has every one of them back in ``deploying`` with the new commit, then
times how long the engine takes to settle them all (running or failed). The
server is stopped after each run. Results go to bench/hook.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import DATA_DIR, AppProcess, table, verdict, write_json

from samosval.db import connect
from samosval.domain import tokens
from samosval.domain.repos import normalize_repo_url

TARGET_MS = 500.0
SECRET = "bench-hook-secret"
REPO = "https://git.example.com/platform/monorepo.git"


def prepare(path: Path, count: int) -> str:
    """Requests 1..count continuous on REPO/main with one running deployment each.
    Returns a webhook token."""
    db = connect(str(path))
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute(
            "UPDATE image_requests SET repo_url = ?, repo_key = ?, repo_branch = 'main', "
            "update_mode = 'continuous', target_commit = NULL, status = 'approved' WHERE id <= ?",
            (REPO, normalize_repo_url(REPO), count),
        )
        db.execute(
            "UPDATE deployments SET status = CASE WHEN image_id <= ? THEN 'running' ELSE 'stopped' END, "
            "stopped_by_operator = 0, needs_restart = 0, next_step_at = NULL",
            (count,),
        )
        db.execute("COMMIT")
        running = db.execute(
            "SELECT COUNT(*) FROM deployments d JOIN images i ON i.id = d.image_id "
            "WHERE d.status = 'running' AND i.request_id <= ?",
            (count,),
        ).fetchone()[0]
        assert running == count, f"{running} running deployments, wanted {count}"
        _, token = tokens.create_token(db, "bench", secret_key=SECRET, actor_id=None, now=time.time())
        db.execute("ANALYZE")
        return token
    finally:
        db.close()


def one_run(source: Path, workdir: Path, token: str, count: int, n: int) -> dict:
    instance = workdir / f"run{n}"
    instance.mkdir()
    db_path = instance / "samosval.sqlite3"
    shutil.copy(source, db_path)
    # The tests' server helper; the token is signed with SECRET, so the server must use it.
    server = AppProcess(
        instance, instance / "server.log", speed=1.0, extra_env={"SAMOSVAL_SECRET_KEY": SECRET}
    )
    try:
        time.sleep(2.5)  # the engine refreshes its running cache once a second
        sha = f"{0xBEEF0000 + n:040x}"
        body = json.dumps({"repo_url": REPO, "branch": "main", "commit": sha}).encode()
        request = urllib.request.Request(
            server.url + "/api/hooks/commit",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        )
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=60) as response:
            payload = json.loads(response.read())
            status = response.status
        elapsed_ms = 1000 * (time.perf_counter() - started)
        db = connect(str(db_path))
        try:
            restarted_in_db = db.execute(
                "SELECT COUNT(*) FROM deployments d JOIN images i ON i.id = d.image_id WHERE i.request_id <= ? "
                "AND d.last_commit = ? AND d.status IN ('deploying', 'running', 'failed')",
                (count, sha),
            ).fetchone()[0]
            deploying = db.execute("SELECT COUNT(*) FROM deployments WHERE status = 'deploying'").fetchone()[
                0
            ]
            settle_started = time.perf_counter()
            while deploying and time.perf_counter() - settle_started < 60:
                time.sleep(0.25)
                deploying = db.execute(
                    "SELECT COUNT(*) FROM deployments WHERE status = 'deploying'"
                ).fetchone()[0]
            settled_s = time.perf_counter() - settle_started
            outcome = dict(
                db.execute(
                    "SELECT status, COUNT(*) FROM deployments d JOIN images i ON i.id = d.image_id "
                    "WHERE i.request_id <= ? GROUP BY status",
                    (count,),
                ).fetchall()
            )
        finally:
            db.close()
    finally:
        server.stop()
    return {
        "run": n,
        "status": status,
        "response_ms": round(elapsed_ms, 1),
        "restarted_in_response": len(payload.get("restarted_deployments") or []),
        "marked_in_response": len(payload.get("marked_deployments") or []),
        "restarted_in_db": restarted_in_db,
        "settled_s": round(settled_s, 1),
        "after_settling": outcome,
        "all_restarted": len(payload.get("restarted_deployments") or []) == count
        and restarted_in_db == count,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deployments", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    if not 1 <= args.deployments <= 2000 or not 1 <= args.runs <= 20:
        parser.error("--deployments 1..2000, --runs 1..20")
    from seed import seed

    DATA_DIR.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="hook-", dir=DATA_DIR))
    try:
        source = workdir / "hook.sqlite3"
        seed(str(source))
        token = prepare(source, args.deployments)
        results = []
        for n in range(1, args.runs + 1):
            print(f"run {n}: one commit to {args.deployments} running continuous deployments ...", flush=True)
            results.append(one_run(source, workdir, token, args.deployments, n))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    rows = [
        [
            r["run"],
            r["status"],
            r["response_ms"],
            r["restarted_in_response"],
            r["restarted_in_db"],
            r["settled_s"],
            ", ".join(f"{k} {v}" for k, v in sorted(r["after_settling"].items())),
            verdict(r["response_ms"] < TARGET_MS and r["all_restarted"]),
        ]
        for r in results
    ]
    print()
    print(
        table(
            [
                "run",
                "http",
                "response ms",
                "restarted (response)",
                "restarted (db)",
                "settled in s",
                "after settling",
                "",
            ],
            rows,
            title=f"Commit hook matching {args.deployments} running continuous deployments",
        )
    )
    median = statistics.median(r["response_ms"] for r in results)
    ok = median < TARGET_MS and all(r["all_restarted"] for r in results)
    print(
        f"\n{verdict(ok):4}  median response {median:.0f} ms (target < {TARGET_MS:g} ms), every deployment restarted: "
        f"{all(r['all_restarted'] for r in results)}"
    )
    path = write_json(
        "hook",
        {
            "deployments": args.deployments,
            "target_ms": TARGET_MS,
            "median_response_ms": median,
            "runs": results,
        },
    )
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
