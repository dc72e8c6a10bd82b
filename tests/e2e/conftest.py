"""The acceptance scenario reuses the browser fixtures: the real app in a subprocess
on a fresh instance folder, Debian's Chromium, and the local Chart.js copy."""
from tests.browser.conftest import browser, chartjs_url, live_server, new_page  # noqa: F401
