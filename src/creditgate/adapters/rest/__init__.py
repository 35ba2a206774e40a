"""OpenMeter v1 compatible REST routes (/api/v1) and problem+json errors."""

from __future__ import annotations

from starlette.types import ASGIApp


def build_rest_app() -> ASGIApp:
    """The /api/v1 app, with every resource module's routes registered."""
    from creditgate.adapters.rest import debug, events, features, meters, openapi, subjects  # noqa: F401
    from creditgate.adapters.rest.app import RestApp

    return RestApp()
