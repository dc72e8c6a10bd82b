"""Failover time of the engine lease (issue 15): p50 and max over N kills.

    python bench/failover.py [--kills 10] [--processes 2] [--running 100] [--redis]

Starts a throw-away PostgreSQL (and Redis with ``--redis``) on loopback ports
(``tests/servers.py``), a database with ``--running`` running deployments (the
engine writes their lines and points every second) and a few builds that start
over and over, then ``--processes`` app processes (``python app.py``, real engine,
SIM_SPEED=1) on it. Each round waits a random 0-1 s (so the kill lands anywhere
in the 1 s renewal cycle), sends ``kill -9`` to the process whose ``/healthz`` says
it leads, and polls every survivor's ``/healthz`` every 20 ms until one says it
leads: that interval is the failover time. The killed process is replaced by a new
one before the next round. The lease lasts 5 s and is renewed every second, so the
expected figure is 4-6 s (must stay under 10 s). Results go to bench/failover.json.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import percentile, table, verdict, write_json

from samosval import db as db_module
from samosval.simulator.leader import LEASE_SECONDS, RENEW_SECONDS
from tests import factories
from tests.reliability import add_users
from tests.reliability.test_failover import Cluster, health
from tests.servers import PostgresServer, RedisServer

LIMIT_SECONDS = 10.0


def seed(url: str, running: int) -> None:
    db_module.init_db_if_needed(url)
    db = db_module.connect(url)
    try:
        ids = add_users(db, [("oleg", "operator")])
        request_id = factories.make_request(db, owner_id=ids["oleg"], status="approved", image_name="bench")
        image_id = factories.make_image(db, request_id=request_id, name="bench")
        for n in range(running):
            factories.make_deployment(db, image_id=image_id, name=f"bench-{n}", created_by=ids["oleg"])
    finally:
        db.close()


def leader_of(processes) -> list:
    return [p for p in processes if (health(p) or {}).get("leader")]


def one_kill(cluster: Cluster, rng: random.Random) -> dict:
    leaders = cluster.wait_leader(timeout=30)[0:1]
    time.sleep(rng.uniform(0, RENEW_SECONDS))
    victim = leaders[0]
    survivors = [p for p in cluster.alive() if p is not victim]
    token_before = health(victim).get("token")
    victim.kill()
    killed_at = time.monotonic()
    while True:
        found = leader_of(survivors)
        if found:
            failover = time.monotonic() - killed_at
            break
        if time.monotonic() - killed_at > 60:
            raise SystemExit("no survivor led within 60 s:\n" + cluster.log_tail())
        time.sleep(0.02)
    token_after = health(found[0]).get("token")
    return {"failover_s": round(failover, 3), "token_before": token_before, "token_after": token_after}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--running", type=int, default=100)
    parser.add_argument("--redis", action="store_true", help="logs and metrics in Redis too")
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)

    workdir = Path(tempfile.mkdtemp(prefix="samosval-failover-"))
    postgres = PostgresServer()
    redis = RedisServer() if args.redis else None
    cluster = None
    rounds = []
    try:
        postgres.start()
        if redis is not None:
            redis.start()
        url = postgres.create_database(f"failover_{uuid.uuid4().hex[:8]}")
        seed(url, args.running)
        cluster = Cluster(workdir, url, speed=1.0, redis_url=redis.url if redis else None)
        for _ in range(args.processes):
            cluster.start()
        for n in range(args.kills):
            result = one_kill(cluster, rng)
            rounds.append(result)
            print(f"kill {n + 1}/{args.kills}: failover {result['failover_s']:.2f} s", flush=True)
            cluster.start()  # back to full strength before the next kill
    finally:
        if cluster is not None:
            cluster.stop()
        db_module.close_pools()
        if redis is not None:
            redis.close()
        postgres.close()

    times = [r["failover_s"] for r in rounds]
    p50, worst = statistics.median(times), max(times)
    print()
    print(
        table(
            ["kills", "processes", "running", "redis", "p50 s", "p90 s", "max s", "min s"],
            [
                [
                    len(times),
                    args.processes,
                    args.running,
                    "yes" if args.redis else "no",
                    p50,
                    percentile(times, 90),
                    worst,
                    min(times),
                ]
            ],
            title=f"Engine failover after kill -9 (lease {LEASE_SECONDS:g} s, renewed every {RENEW_SECONDS:g} s)",
        )
    )
    tokens_ok = all(r["token_after"] == (r["token_before"] or 0) + 1 for r in rounds)
    print(
        f"\n{verdict(worst < LIMIT_SECONDS and tokens_ok):4}  max {worst:.2f} s (limit {LIMIT_SECONDS:g} s); "
        f"every takeover raised the token by one: {tokens_ok}"
    )
    path = write_json(
        "failover",
        {
            "kills": args.kills,
            "processes": args.processes,
            "running": args.running,
            "redis": args.redis,
            "lease_seconds": LEASE_SECONDS,
            "renew_seconds": RENEW_SECONDS,
            "p50_s": p50,
            "max_s": worst,
            "rounds": rounds,
        },
    )
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
