"""Status vocabularies shared by the domain, the permission rules and the engine
(no imports, so anything may import it)."""

from __future__ import annotations

BUILD_STATUSES = ("queued", "building", "success", "failed", "cancelled")
ACTIVE_BUILD_STATUSES = ("queued", "building")
FINISHED_BUILD_STATUSES = ("success", "failed", "cancelled")
