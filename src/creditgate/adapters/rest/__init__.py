"""OpenMeter v1 compatible REST routes (/api/v1) and problem+json errors."""

from __future__ import annotations

import re

from starlette.routing import Mount

PREFIX = "/api/v1"


def rest_mount() -> Mount:
    """The /api/v1 mount, with every resource module's routes registered."""
    from creditgate.adapters.rest import (  # noqa: F401 - importing registers the routes
        debug,
        entitlements,
        events,
        features,
        grants,
        meters,
        notifications,
        openapi,
        subjects,
        tokens,
    )
    from creditgate.adapters.rest.app import RestApp

    mount = Mount(PREFIX, app=RestApp())
    # Any decoded path below the prefix is ours, even one holding a newline (%0A): 404s come as problems.
    mount.path_regex = re.compile(mount.path_regex.pattern, re.DOTALL)
    return mount
