#!/usr/bin/env bash
# The one command that runs every test, browser tests included, on a fresh machine.
# It installs what the tests need when it is missing: the pinned Python packages
# (requirements-dev.lock), Debian's Chromium (for Playwright), and a Chart.js copy
# from the npm registry that the browser tests serve locally (never committed,
# never fetched from a CDN), and axe-core for the accessibility checks. ruff (lint and
# format check) runs first; SAMOSVAL_LINT=0 skips it. Extra arguments go to pytest; the
# fast local loop is
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

exec python3 -m pytest "$@"
