"""The acceptance scenario reuses the browser tests' live server: the real app in a
subprocess on a fresh instance folder, with the local Chart.js copy. It launches
its own Chromium (see test_acceptance.py for why)."""

from tests.browser.conftest import chartjs_url, live_server  # noqa: F401
