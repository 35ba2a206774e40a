"""Builds the Starlette app; the engine, pools and cache client live in the lifespan."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from creditgate.adapters import http as edge
from creditgate.adapters import web
from creditgate.adapters.cache import open_cache, open_signals
from creditgate.adapters.graphql.app import GraphQLApp
from creditgate.adapters.http.endpoints import prometheus, readyz
from creditgate.adapters.rest import rest_mount
from creditgate.adapters.sql.db import Database
from creditgate.adapters.sql.installation import read_installation_id
from creditgate.adapters.web.cors import cors_middleware, origin_checker
from creditgate.adapters.webhooks import HttpSender
from creditgate.config import Settings
from creditgate.services import maintenance
from creditgate.services.runtime import Runtime
from creditgate.services.webhooks import Worker

log = logging.getLogger("creditgate")


@asynccontextmanager
async def open_runtime(settings: Settings) -> AsyncIterator[Runtime]:
    """Everything a process shares: created once, closed on the way out."""
    db = Database(settings.database_url)
    try:
        installation = await read_installation_id(db)  # the cache's namespace: never another database's
    except BaseException:
        await db.close()
        raise
    rt = Runtime(settings=settings, db=db, cache=open_cache(settings, installation))
    ns = getattr(rt.cache, "namespace", None)
    bus = open_signals(settings, installation)
    if bus is not None:
        rt.changes.attach(bus)  # change signals to and from the other workers and replicas
    log.info("installation %s; value cache: %s; change signals: %s", installation,
             f"redis, key namespace {ns}" if ns else "in-process" if rt.cache else "off",
             "redis pub/sub" if bus else "in-process")
    try:
        yield rt
    finally:
        if bus is not None:
            await bus.close()
        if rt.cache is not None:
            await rt.cache.close()
        await db.close()


def notification_worker(rt: Runtime) -> Worker:
    """The notification worker of a process (docs/operations.md): evaluation and webhook delivery."""
    return Worker(rt, HttpSender(rt.settings.notifications_timeout))


async def healthz(request: Request) -> Response:
    ok = await request.app.state.runtime.db.ping()
    return JSONResponse({"status": "ok" if ok else "database unavailable"}, status_code=200 if ok else 503)


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> Starlette:
    """The ASGI app. With `runtime` given (tests), the caller owns its lifetime."""
    settings = settings or (runtime.settings if runtime else Settings())

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if runtime is not None:
            app.state.runtime = runtime
            yield
            return
        async with open_runtime(settings) as rt:
            app.state.runtime = rt
            # Start-up objects live as long as the process: keep them out of the cyclic
            # collector's scans (about 8 ms per ingest batch of 1000 events otherwise).
            gc.collect()
            gc.freeze()
            # Long-lived objects (open subscriptions: sockets, tasks, generators) make every full
            # collection scan them: collect young objects less often and the whole heap far less often
            # (docs/benchmarks.md, live updates: 1,000 idle subscriptions cost ~20% of cached-read
            # throughput with the default (700, 10, 10), ~4% with this).
            gc.set_threshold(2000, 10, 1000)
            worker = notification_worker(rt) if settings.notifications_worker else None
            if worker is not None:
                worker.start()
            upkeep = asyncio.create_task(maintenance.run_forever(rt), name="storage upkeep")
            try:
                yield
            finally:
                upkeep.cancel()
                if worker is not None:
                    await worker.stop()  # before the database closes: attempts in flight are recorded
                with suppress(asyncio.CancelledError):
                    await upkeep

    graphql = GraphQLApp(ide=web.graphiql, origin_allowed=origin_checker(settings.cors_origins),
                         ping_interval=settings.ws_ping_interval, send_timeout=settings.ws_send_timeout)
    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/graphql", graphql),  # GraphQLApp answers other methods with a JSON 405
            WebSocketRoute("/graphql", graphql),  # subscriptions (graphql-transport-ws)
            Route("/metrics", prometheus),
            rest_mount(),
            *web.web_routes(),
        ],
        middleware=[edge.observe(settings), cors_middleware(settings.cors_origins), *edge.limits(settings)],
        lifespan=lifespan,
    )
    if runtime is not None:
        app.state.runtime = runtime
    return app
