"""Blueprints, one per area. Each module exposes ``bp``."""
from __future__ import annotations

import importlib

BLUEPRINT_MODULES = (
    "auth_routes", "dashboard_routes", "request_routes", "build_routes", "image_routes",
    "deployment_routes", "admin_routes", "api_routes", "hook_routes", "alert_routes", "ops_routes",
)


def register_blueprints(app) -> None:
    for name in BLUEPRINT_MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{name}":
                continue  # area not built yet
            raise
        app.register_blueprint(module.bp)
