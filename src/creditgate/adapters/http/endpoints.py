"""/readyz (the database and, when configured, Redis answer) and /metrics (Prometheus text)."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from creditgate import metrics
from creditgate.domain.errors import DomainError
from creditgate.services.auth import authenticate
from creditgate.services.runtime import Runtime

CHECK_TIMEOUT = 2.0


async def _database(rt: Runtime) -> str:
    try:
        ok = await asyncio.wait_for(rt.db.ping(), CHECK_TIMEOUT)
    except TimeoutError:
        return "timeout"
    return "ok" if ok else "unavailable"


async def _redis(rt: Runtime) -> str:
    client: Any = getattr(rt.cache, "client", None)
    if client is None:  # the value cache is off: the change signals' client (any Redis topology) answers
        client = rt.changes.bus
    own = client is None
    if own:  # neither: a client for this check only (plain redis:// URLs)
        client = Redis.from_url(rt.settings.redis_url or "", socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        await asyncio.wait_for(client.ping(), CHECK_TIMEOUT)
    except TimeoutError:
        return "timeout"
    except Exception as exc:  # refused, reset, auth...: the body names the type only
        return f"unavailable ({type(exc).__name__})"
    finally:
        if own:
            await client.aclose()
    return "ok"


async def readyz(request: Request) -> Response:
    rt: Runtime = request.app.state.runtime
    checks = {"database": await _database(rt)}
    if rt.settings.redis_url:
        checks["redis"] = await _redis(rt)
    ready = all(v == "ok" for v in checks.values())
    failed = [name for name, v in checks.items() if v != "ok"]
    return JSONResponse({"status": "ready" if ready else "unavailable", "checks": checks, "failed": failed},
                        status_code=200 if ready else 503)


async def prometheus(request: Request) -> Response:
    """Needs an API key unless `metrics_public`; a subject token is refused (403)."""
    rt: Runtime = request.app.state.runtime
    if not rt.settings.metrics_public:
        try:
            authenticate(rt, request.headers.get("authorization")).require_admin()
        except DomainError as exc:
            status = 401 if exc.code == "UNAUTHENTICATED" else 403
            headers = {"www-authenticate": "Bearer"} if status == 401 else None
            return Response(exc.message + "\n", status_code=status, media_type="text/plain", headers=headers)
    metrics.set_pool(*rt.db.pool_usage())
    return Response(metrics.render(), media_type=metrics.CONTENT_TYPE)
