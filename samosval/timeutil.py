"""Time helpers. Stored times are UTC ISO-8601 strings that sort as text."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def utcnow_iso(now: float | None = None) -> str:
    moment = datetime.fromtimestamp(time.time() if now is None else now, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_to_epoch(value: str) -> float:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
