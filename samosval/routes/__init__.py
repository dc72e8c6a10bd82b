"""Blueprints, one per area. Each module exposes ``bp``."""

from __future__ import annotations

from .. import web
from . import (
    account_routes,
    admin_routes,
    alert_routes,
    api_routes,
    auth_routes,
    build_routes,
    config_routes,
    dashboard_routes,
    deployment_routes,
    hook_routes,
    image_routes,
    notification_routes,
    ops_routes,
    release_routes,
    request_routes,
)

BLUEPRINT_MODULES = (
    auth_routes,
    dashboard_routes,
    request_routes,
    build_routes,
    image_routes,
    deployment_routes,
    admin_routes,
    api_routes,
    hook_routes,
    alert_routes,
    ops_routes,
    account_routes,
    config_routes,
    notification_routes,
    release_routes,
)


def register_blueprints(app) -> None:
    web.init_app(app)  # the one answer to a refused command, for every blueprint
    for module in BLUEPRINT_MODULES:
        app.register_blueprint(module.bp)
    from .. import api

    api.init_app(app)  # the documented JSON API (/api/v1) and its OpenAPI document
