#!/usr/bin/env bash
# Run every Samosval benchmark, one after the other (about 18 minutes on 2 cores).
# Each script prints its table and writes bench/<name>.json (gitignored).
#   bench/run_all.sh            full run (the figures in bench/README.md)
#   QUICK=1 bench/run_all.sh    shorter runs, for a smoke check (~3 minutes)
# Everything binds to 127.0.0.1 and stops by itself; seeded databases live in
# bench/.data/ only while a script runs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}

if [[ "${QUICK:-0}" == "1" ]]; then
  ENGINE_ARGS=(--seconds 8 --memory-deployments 200)
  FANOUT_ARGS=(--duration 10 --scenarios 500,50x10)
  PAGES_ARGS=(--runs 10)
  HOOK_ARGS=(--runs 1)
  STARTUP_ARGS=(--runs 3)
  CLUSTER_ARGS=(--processes 2 --seconds 8 --viewers 500 --duration 8 --runs 10)
else
  ENGINE_ARGS=(--counts 100,500,1000 --seconds 25 --memory-deployments 1000)
  FANOUT_ARGS=(--duration 30 --scenarios 1,100,500,50x10)
  PAGES_ARGS=(--runs 30)
  HOOK_ARGS=(--runs 3)
  STARTUP_ARGS=(--runs 5)
  CLUSTER_ARGS=(--processes 2,4 --seconds 20 --viewers 1000 --duration 15 --runs 30)
fi

echo "== machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p'), $($PY --version 2>&1), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== engine";     $PY bench/engine.py "${ENGINE_ARGS[@]}"
echo "== sse fan-out"; $PY bench/sse_fanout.py "${FANOUT_ARGS[@]}"
echo "== pages";      $PY bench/pages.py "${PAGES_ARGS[@]}"
echo "== webhook";    $PY bench/hook.py "${HOOK_ARGS[@]}"
echo "== start-up";   $PY bench/startup.py "${STARTUP_ARGS[@]}"
# Issue 15: several processes on PostgreSQL + Redis (Debian's postgresql and
# redis-server; the script starts and stops its own servers on loopback ports).
echo "== cluster (PostgreSQL + Redis)"
if reason=$($PY bench/cluster.py --check); then
  $PY bench/cluster.py "${CLUSTER_ARGS[@]}"
  if [[ -f bench/failover.py ]]; then
    echo "== failover"; $PY bench/failover.py --redis
  fi
else
  echo "$reason"
fi
echo "== done: bench/*.json"
