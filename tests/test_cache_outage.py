"""Answers stay right and requests never fail when Redis is unreachable (docs/semantics.md §8).

A cache on a closed port, and a private Redis paused in the middle of a run: reads come from the
database, writes still succeed, and no value cached before an unacknowledged invalidation is
served once Redis answers again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import httpx
import pytest

from creditgate.adapters.cache import open_cache
from creditgate.app import create_app
from creditgate.services.runtime import Runtime
from tests.conftest import GQL, Backend
from tests.ent_helpers import CHECK, events, feature, grant, meter, metered, value
from tests.test_cache import Server, server  # noqa: F401 - the private redis-server fixture

NOW = "2024-01-15T12:00:00Z"

@pytest.fixture
async def gql_on(rt: Runtime, backend: Backend) -> AsyncIterator[Callable[[str], GQL]]:
    """GraphQL clients whose runtime caches in the Redis at the given URL."""
    opened: list[tuple[Runtime, httpx.AsyncClient]] = []

    def make(redis_url: str) -> GQL:
        settings = rt.settings.model_copy(update={"redis_url": redis_url})
        runtime = replace(rt, settings=settings, cache=open_cache(settings, backend.installation))
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(runtime=runtime)),
                                   base_url="http://test")
        opened.append((runtime, client))
        return GQL(client)

    yield make
    for runtime, client in opened:
        await client.aclose()
        if runtime.cache is not None:
            await runtime.cache.close()


async def setup(gql: GQL) -> None:
    await meter(gql)
    await feature(gql, "ai")
    await metered(gql, "c", "ai", interval="MONTH", anchor="2024-01-01T00:00:00Z",
                  measureUsageFrom="2024-01-01T00:00:00Z")
    await grant(gql, "c", "ai", 10, NOW)


async def test_closed_port_answers_from_the_database(gql_on: Callable[[str], GQL]) -> None:
    gql = gql_on("redis://127.0.0.1:1/0")
    await setup(gql)
    await events(gql, "c", ("2024-01-15T11:59:00Z", 3))
    assert (await value(gql, "c", "ai"))["balance"] == 7.0
    await events(gql, "c", ("2024-01-15T11:59:00Z", 7))
    assert await value(gql, "c", "ai") == {"hasAccess": False, "balance": 0.0, "usage": 10.0, "overage": 0.0,
                                           "config": None}
    checks = await gql.ok(CHECK, checks=[{"subjectKey": "c", "featureKey": "ai"},
                                         {"subjectKey": "x", "featureKey": "ai"}])
    assert [r["reason"] for r in checks["checkAccess"]] == ["NO_BALANCE", "NO_ENTITLEMENT"]


async def test_redis_paused_mid_run_serves_no_stale_value(gql_on: Callable[[str], GQL],
                                                          server: Server) -> None:  # noqa: F811
    gql = gql_on(server.url)
    await setup(gql)
    await events(gql, "c", ("2024-01-15T11:59:00Z", 3))
    assert (await value(gql, "c", "ai"))["balance"] == 7.0  # now cached in Redis
    assert (await value(gql, "c", "ai"))["balance"] == 7.0
    server.pause()  # unreachable: timeouts, but its data survives
    try:
        await events(gql, "c", ("2024-01-15T11:59:00Z", 2))  # the invalidation cannot reach Redis
        assert (await value(gql, "c", "ai"))["balance"] == 5.0  # from the database
    finally:
        server.resume()
    # Redis is back with the old entry still in it: it must not be served
    for _ in range(3):
        assert (await value(gql, "c", "ai"))["balance"] == 5.0
