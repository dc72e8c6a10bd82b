#!/usr/bin/env bash
# The one command that runs every test, browser tests included, on a fresh machine.
# It installs what the tests need when it is missing: the pinned Python packages
# (requirements-dev.lock), Debian's Chromium (for Playwright), and a Chart.js copy
# from the npm registry that the browser tests serve locally (never committed,
# never fetched from a CDN), axe-core for the accessibility checks, and Debian's
# PostgreSQL and Redis (tests/servers.py starts throw-away servers on loopback ports
# and stops them). ruff (lint and format check) runs first; SAMOSVAL_LINT=0 skips it.
# The suite runs twice: on SQLite, then on PostgreSQL + Redis (SAMOSVAL_TEST_BACKEND,
# tests/conftest.py); SAMOSVAL_TEST_BACKENDS=sqlite or =postgres runs one pass only.
# Extra arguments go to pytest, in both passes; the fast local loop is
#   bash scripts/test.sh -m "not slow and not browser"
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -r requirements-dev.lock

if [ "${SAMOSVAL_LINT:-1}" != "0" ]; then
  python3 -m ruff check . && python3 -m ruff format --check .
fi

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ]; then
    echo "Installing Debian's chromium for the browser tests..."
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null
  fi
fi
if ! command -v chromium >/dev/null 2>&1; then
  echo "ERROR: chromium is not installed and could not be installed; browser tests cannot run." >&2
  exit 1
fi

# Debian's nginx for tests/test_nginx.py (the production setup behind a proxy).
export PATH="$PATH:/usr/sbin"  # Debian puts nginx there
if ! command -v nginx >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
  echo "Installing Debian's nginx for the reverse-proxy test..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx) >/dev/null
fi
if ! command -v nginx >/dev/null 2>&1; then
  echo "ERROR: nginx is not installed and could not be installed; the proxy test cannot run." >&2
  exit 1
fi
export SAMOSVAL_REQUIRE_NGINX=1

# Debian's PostgreSQL and Redis for the PostgreSQL pass and the multi-process tests
# (both passes use them). Debian keeps PostgreSQL's programs in
# /usr/lib/postgresql/<version>/bin, off PATH.
have_postgres() { compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null 2>&1; }
have_redis() { command -v redis-server >/dev/null 2>&1; }
missing=()
have_postgres || missing+=(postgresql)
have_redis || missing+=(redis-server)
if [ "${#missing[@]}" -gt 0 ] && [ "$(id -u)" = "0" ]; then
  echo "Installing Debian's ${missing[*]} for the PostgreSQL + Redis tests..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") >/dev/null
fi
if ! have_postgres || ! have_redis; then
  echo "ERROR: postgresql and redis-server are needed and could not be installed; the PostgreSQL + Redis tests cannot run." >&2
  exit 1
fi
export SAMOSVAL_REQUIRE_SERVERS=1

CHARTJS_VERSION="4.5.1"
CACHE="tests/.cache"
if [ ! -s "$CACHE/chart.umd.min.js" ]; then
  mkdir -p "$CACHE/npm"
  (cd "$CACHE/npm" && npm pack --silent "chart.js@$CHARTJS_VERSION" >/dev/null \
    && tar xzf "chart.js-$CHARTJS_VERSION.tgz" package/dist/chart.umd.min.js)
  mv "$CACHE/npm/package/dist/chart.umd.min.js" "$CACHE/chart.umd.min.js"
  rm -rf "$CACHE/npm"
fi
# axe-core (accessibility rules) for the browser tests, from the npm registry too.
AXE_VERSION="4.11.0"
if [ ! -s "$CACHE/axe.min.js" ]; then
  mkdir -p "$CACHE/npm"
  (cd "$CACHE/npm" && npm pack --silent "axe-core@$AXE_VERSION" >/dev/null \
    && tar xzf "axe-core-$AXE_VERSION.tgz" package/axe.min.js)
  mv "$CACHE/npm/package/axe.min.js" "$CACHE/axe.min.js"
  rm -rf "$CACHE/npm"
fi
export SAMOSVAL_TEST_CHARTJS="$PWD/$CACHE/chart.umd.min.js"
export SAMOSVAL_TEST_AXE="$PWD/$CACHE/axe.min.js"
export SAMOSVAL_REQUIRE_BROWSER=1

backends="${SAMOSVAL_TEST_BACKENDS:-sqlite postgres}"
backends="${backends//,/ }"
for backend in $backends; do
  case "$backend" in
    sqlite | postgres) ;;
    *) echo "ERROR: SAMOSVAL_TEST_BACKENDS takes sqlite and/or postgres, not '$backend'." >&2; exit 2 ;;
  esac
done
# Every pass runs even when one fails (CI reports both); the status is the first failure's.
status=0
summary=()
for backend in $backends; do
  echo "=== scripts/test.sh: the $backend pass ==="
  pass_status=0
  SAMOSVAL_TEST_BACKEND="$backend" python3 -m pytest "$@" || pass_status=$?
  summary+=(" $backend: $([ "$pass_status" = 0 ] && echo passed || echo "failed (pytest exit $pass_status)")")
  [ "$status" = 0 ] && status=$pass_status
done
(IFS=";"; echo "=== scripts/test.sh: ${summary[*]} ===")
exit "$status"
