"""The HTTP edge (adapters/http, docs/operations.md): body limit, token rate limit, metrics, request ids,
access logs, /readyz. Each test runs on both backends (SQLite + in-process cache, PostgreSQL + Redis)."""

from __future__ import annotations

import dataclasses
import io
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from creditgate.adapters.cache import open_cache
from creditgate.adapters.http.logs import JsonFormatter
from creditgate.adapters.rest.router import api
from creditgate.adapters.sql.db import Database
from creditgate.app import create_app
from creditgate.services.runtime import Runtime
from tests.conftest import GQL, Backend
from tests.ent_helpers import feature, grant, meter, metered

CLOSED_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1
MINT = 'mutation { createSubjectToken(subjectKey: "me", ttlSeconds: 3600) { token } }'
MINE = '{ entitlements(subjectKey: "me") { id } }'
LIMIT = 2000


@asynccontextmanager
async def app_client(rt: Runtime, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An app on `rt` with some settings changed (its own extras: its own rate limiter)."""
    runtime = dataclasses.replace(rt, settings=rt.settings.model_copy(update=settings), extras={})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(runtime=runtime)),
                                 base_url="http://test") as client:
        yield client


@asynccontextmanager
async def other_runtime(rt: Runtime, backend: Backend, **settings: Any) -> AsyncIterator[Runtime]:
    """A second process's runtime on the same database: its own cache client (Redis: same namespace)."""
    new = rt.settings.model_copy(update=settings)
    runtime = Runtime(settings=new, db=rt.db, cache=open_cache(new, backend.installation), clock=rt.clock)
    try:
        yield runtime
    finally:
        if runtime.cache is not None:
            await runtime.cache.close()


async def token(gql: GQL) -> str:
    return str((await gql.ok(MINT))["createSubjectToken"]["token"])


def bearer(credential: str) -> dict[str, str]:
    return {"authorization": f"Bearer {credential}"}


# -- body limit --

def chunks(n: int, size: int, sent: list[int]) -> Callable[[], AsyncIterator[bytes]]:
    async def gen() -> AsyncIterator[bytes]:
        for _ in range(n):
            sent.append(size)
            yield b" " * size
    return gen


async def test_body_over_the_limit_is_refused_unread(rt: Runtime) -> None:
    async with app_client(rt, max_body_bytes=LIMIT) as http:
        # Content-Length too big: refused before any byte is read
        sent: list[int] = []
        resp = await http.post("/graphql", content=chunks(10, 1000, sent)(),
                               headers={"content-type": "application/json", "content-length": "10000"})
        assert resp.status_code == 413 and sent == []
        assert resp.headers["content-type"] == "application/json" and resp.headers["connection"] == "close"
        body = resp.json()
        assert body["data"] is None and body["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
        assert str(LIMIT) in body["errors"][0]["message"]
        resp = await http.post("/api/v1/events", content=chunks(10, 1000, sent)(),
                               headers={"content-type": "application/json", "content-length": "10000"})
        assert resp.status_code == 413 and sent == []
        assert resp.headers["content-type"] == "application/problem+json"
        problem = resp.json()
        assert problem["status"] == 413 and problem["title"] == "Content Too Large"
        assert problem["instance"] == "/api/v1/events" and str(LIMIT) in problem["detail"]
        # GraphQL over HTTP clients get their media type, without `data`
        resp = await http.post("/graphql", content=b"x" * (LIMIT + 1), headers={
            "content-type": "application/json", "accept": "application/graphql-response+json"})
        assert resp.status_code == 413 and "data" not in resp.json()
        assert resp.headers["content-type"].startswith("application/graphql-response+json")


async def test_streamed_body_is_cut_at_the_limit(rt: Runtime) -> None:
    async with app_client(rt, max_body_bytes=LIMIT) as http:
        for path, media in (("/graphql", "application/json"), ("/api/v1/events", "application/problem+json")):
            sent: list[int] = []
            resp = await http.post(path, content=chunks(100, 500, sent)(), headers={"content-type": "application/json"})
            assert "content-length" not in resp.request.headers  # chunked
            assert resp.status_code == 413 and resp.headers["content-type"] == media, resp.text
            assert sum(sent) == LIMIT + 500  # the read that passed the limit was the last one
            code = resp.json()["errors"][0]["extensions"]["code"] if path == "/graphql" \
                else resp.json()["extensions"]["code"]
            assert code == "PAYLOAD_TOO_LARGE"


async def test_bodies_within_the_limit_pass(rt: Runtime) -> None:
    event = {"specversion": "1.0", "id": "e1", "source": "s", "type": "prompt", "subject": "me",
             "time": "2024-01-15T12:00:00Z", "data": {"tokens": 1}}
    query = orjson.dumps({"query": "{ features { id } }", "variables": {"pad": "x" * 100}})
    async with app_client(rt, max_body_bytes=len(query)) as http:
        resp = await http.post("/graphql", content=query, headers={"content-type": "application/json"})
        assert resp.status_code == 200 and resp.json() == {"data": {"features": []}}
        sent: list[int] = []
        body = orjson.dumps(event)

        async def one() -> AsyncIterator[bytes]:
            sent.append(len(body))
            yield body
        resp = await http.post("/api/v1/events", content=one(),
                               headers={"content-type": "application/cloudevents+json"})
        assert resp.status_code == 204 and sent == [len(body)]


# -- the 10,000 events cap, through HTTP --

async def test_ingest_cap_through_http(http: httpx.AsyncClient, gql: GQL) -> None:
    batch = [{"specversion": "1.0", "id": f"c{i}", "source": "cap", "type": "prompt", "subject": "me",
              "time": "2024-01-15T12:00:00Z", "data": {"tokens": 1}} for i in range(10_001)]
    resp = await http.post("/api/v1/events", json=batch)
    assert resp.status_code == 400 and resp.headers["content-type"] == "application/problem+json"
    assert "10000" in resp.json()["detail"].replace(",", "")
    graphql_batch = [{k: v for k, v in e.items() if k != "specversion"} for e in batch]
    await gql.error("mutation($e: [CloudEventInput!]!) { ingestEvents(events: $e) { accepted } }",
                    "BAD_USER_INPUT", e=graphql_batch)
    assert (await http.get("/api/v1/events", params={"limit": 10})).json() == []


# -- rate limit --

async def test_token_rate_limit(rt: Runtime, gql: GQL) -> None:
    t = await token(gql)
    async with app_client(rt, token_rate=0.001, token_burst=3) as http:
        for _ in range(3):
            resp = await http.post("/graphql", json={"query": MINE}, headers=bearer(t))
            assert resp.status_code == 200 and resp.json() == {"data": {"entitlements": []}}
        resp = await http.post("/graphql", json={"query": MINE}, headers=bearer(t))
        assert resp.status_code == 429
        assert resp.headers["retry-after"] == "1000"  # one token per 1000 s
        assert resp.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        resp = await http.get("/api/v1/subjects/me/entitlements", headers=bearer(t))
        assert resp.status_code == 429 and resp.headers["content-type"] == "application/problem+json"
        assert resp.json()["status"] == 429 and resp.headers["retry-after"] == "1000"
        # API keys (open mode: no credentials) are never limited; a bad token goes on to its 401
        for _ in range(5):
            assert (await http.post("/graphql", json={"query": MINE})).status_code == 200
        resp = await http.post("/graphql", json={"query": MINE}, headers=bearer(t[:-3] + "abc"))
        assert resp.status_code == 401
        # another token has its own bucket
        other = await token(gql)
        assert (await http.post("/graphql", json={"query": MINE}, headers=bearer(other))).status_code == 200
    async with app_client(rt, token_rate=0, token_burst=1) as http:  # 0 disables
        for _ in range(5):
            assert (await http.post("/graphql", json={"query": MINE}, headers=bearer(t))).status_code == 200


async def test_admin_keys_are_not_limited(rt: Runtime, gql: GQL) -> None:
    t = await token(gql)
    async with app_client(rt, api_keys="k1", token_rate=0.001, token_burst=1) as http:
        for _ in range(5):
            assert (await http.post("/graphql", json={"query": MINE}, headers=bearer("k1"))).status_code == 200
        assert (await http.post("/graphql", json={"query": MINE}, headers=bearer(t))).status_code == 200
        assert (await http.post("/graphql", json={"query": MINE}, headers=bearer(t))).status_code == 429


async def test_rate_limit_is_shared_through_redis(rt: Runtime, gql: GQL, backend: Backend) -> None:
    t = await token(gql)
    limits = {"token_rate": 0.001, "token_burst": 3}
    async with other_runtime(rt, backend, **limits) as one, other_runtime(rt, backend, **limits) as two:
        a = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(runtime=one)), base_url="http://a")
        b = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(runtime=two)), base_url="http://b")
        async with a, b:
            for client in (a, a, b):
                assert (await client.post("/graphql", json={"query": MINE}, headers=bearer(t))).status_code == 200
            fourth = await b.post("/graphql", json={"query": MINE}, headers=bearer(t))
            if backend.redis_url:  # one bucket for both instances
                assert fourth.status_code == 429 and fourth.headers["retry-after"] == "1000"
                assert (await a.post("/graphql", json={"query": MINE}, headers=bearer(t))).status_code == 429
            else:  # in-process buckets: one per instance
                assert fourth.status_code == 200
                codes = [(await b.post("/graphql", json={"query": MINE}, headers=bearer(t))).status_code
                         for _ in range(2)]
                assert codes == [200, 429]


async def test_rate_limit_without_redis_falls_back_in_process(rt: Runtime, gql: GQL, backend: Backend,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    t = await token(gql)
    async with other_runtime(rt, backend, redis_url=CLOSED_REDIS, token_rate=0.001, token_burst=3) as down:
        assert down.cache is not None and getattr(down.cache, "client", None) is not None
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(runtime=down)),
                                     base_url="http://test") as http:
            with caplog.at_level(logging.INFO, logger="creditgate.http"):
                codes = [(await http.post("/graphql", json={"query": MINE}, headers=bearer(t))).status_code
                         for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    warnings = [r for r in caplog.records if r.name == "creditgate.http" and "Redis unavailable" in r.message]
    assert len(warnings) == 1


# -- metrics --

def scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def delta(before: dict[Any, float], after: dict[Any, float]) -> dict[Any, float]:
    keys = set(before) | set(after)
    out = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in keys}
    return {k: v for k, v in out.items()
            if v and k[0].startswith("creditgate_") and not k[0].endswith(("_sum", "_bucket"))}


def rest_label(op_id: str) -> str:
    """The latency label of a REST operation: method and route template."""
    op = next(o for o in api.ops if o.op_id == op_id)
    return f"{op.method} /api/v1{op.path}"


def key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


async def test_metrics_after_known_requests(http: httpx.AsyncClient, gql: GQL) -> None:
    await meter(gql)
    await feature(gql, "ai")
    await metered(gql, "me", "ai")
    await grant(gql, "me", "ai", 10, "2024-01-15T12:00:00Z")
    first = await http.get("/metrics")
    assert first.status_code == 200 and first.headers["content-type"].startswith("text/plain")
    before = scrape(first.text)

    hot = 'query Hot { entitlementValue(subjectKey: "me", entitlementIdOrFeatureKey: "ai") { balance } }'
    for _ in range(2):
        assert await gql.ok(hot) == {"entitlementValue": {"balance": 10.0}}  # the fast path: a miss, then a hit
    cached = scrape((await http.get("/metrics")).text)
    assert delta(before, cached)[key("creditgate_cache_lookups_total", result="miss")] == 1
    assert delta(before, cached)[key("creditgate_cache_lookups_total", result="hit")] == 1
    for _ in range(3):
        await gql.ok("query Probe { features { key } }")
    await gql.error('query Missing { entitlementValue(subjectKey: "me", entitlementIdOrFeatureKey: "nope") '
                    '{ balance } }', "NOT_FOUND")
    assert (await http.get("/api/v1/features")).status_code == 200
    assert (await http.get("/api/v1/features/nope")).status_code == 404
    events = [{"specversion": "1.0", "id": i, "source": "m", "type": "prompt", "subject": "me",
               "time": "2024-01-15T12:00:00Z", "data": {"tokens": 1}} for i in ("a", "b", "a")]
    assert (await http.post("/api/v1/events", json=events)).status_code == 204
    await gql.ok('mutation Feed { ingestEvents(events: [{id: "c", source: "m", type: "prompt", subject: "me", '
                 'time: "2024-01-15T12:00:00Z", data: {tokens: 1}}]) { accepted } }')

    after = scrape((await http.get("/metrics")).text)
    got = delta(before, after)
    count = "creditgate_request_duration_seconds_count"
    expected = {
        key(count, api="other", operation="/metrics"): 2,  # the first two scrapes
        key(count, api="graphql", operation="Hot"): 2,
        key(count, api="graphql", operation="Probe"): 3,
        key(count, api="graphql", operation="Missing"): 1,
        key(count, api="graphql", operation="Feed"): 1,
        key(count, api="rest", operation="GET /api/v1/features"): 1,
        key(count, api="rest", operation=rest_label("getFeature")): 1,
        key(count, api="rest", operation="POST /api/v1/events"): 1,
        key("creditgate_http_requests_total", operation="listFeatures", status="200"): 1,
        key("creditgate_http_requests_total", operation="getFeature", status="404"): 1,
        key("creditgate_http_requests_total", operation="ingestEvents", status="204"): 1,
        key("creditgate_errors_total", api="graphql", code="NOT_FOUND"): 1,
        key("creditgate_errors_total", api="rest", code="NOT_FOUND"): 1,
        key("creditgate_events_total", outcome="accepted"): 3,
        key("creditgate_events_total", outcome="duplicates"): 1,
    }
    assert {k: v for k, v in got.items() if k[0] != "creditgate_cache_lookups_total"} == expected
    assert after[key("creditgate_db_pool_in_use")] == 0 and after[key("creditgate_db_pool_waiting")] == 0
    assert not any(name.endswith("_created") for name, _ in after)


async def test_metrics_need_an_api_key(rt: Runtime, gql: GQL) -> None:
    t = await token(gql)
    async with app_client(rt, api_keys="k1") as http:
        resp = await http.get("/metrics")
        assert resp.status_code == 401 and resp.headers["www-authenticate"] == "Bearer"
        assert (await http.get("/metrics", headers=bearer(t))).status_code == 403
        assert (await http.get("/metrics", headers=bearer("wrong"))).status_code == 401
        resp = await http.get("/metrics", headers=bearer("k1"))
        assert resp.status_code == 200 and "creditgate_request_duration_seconds" in resp.text
    async with app_client(rt, api_keys="k1", metrics_public=True) as http:
        assert (await http.get("/metrics")).status_code == 200


async def test_refusals_are_counted_by_status(rt: Runtime) -> None:
    async with app_client(rt, api_keys="k1", max_body_bytes=100) as http:
        before = scrape((await http.get("/metrics", headers=bearer("k1"))).text)
        assert (await http.post("/graphql", json={"query": MINE})).status_code == 401
        assert (await http.post("/graphql", content=b"{" * 101, headers=bearer("k1"))).status_code == 413
        assert (await http.get("/api/v1/features")).status_code == 401
        after = scrape((await http.get("/metrics", headers=bearer("k1"))).text)
    got = {k: v for k, v in delta(before, after).items() if k[0] == "creditgate_errors_total"}
    assert got == {key("creditgate_errors_total", api="graphql", code="UNAUTHENTICATED"): 1,
                   key("creditgate_errors_total", api="graphql", code="PAYLOAD_TOO_LARGE"): 1,
                   key("creditgate_errors_total", api="rest", code="UNAUTHENTICATED"): 1}


# -- request ids and the access log --

async def test_request_ids(http: httpx.AsyncClient) -> None:
    resp = await http.get("/healthz", headers={"x-request-id": "abc-123"})
    assert resp.headers["x-request-id"] == "abc-123"
    resp = await http.get("/api/v1/features", headers={"x-request-id": b'a b<c>"d\xe9' + b"x" * 200})
    assert resp.headers["x-request-id"] == "abcd" + "x" * 60  # unsafe characters dropped, 64 at most
    made = {(await http.post("/graphql", json={"query": MINE})).headers["x-request-id"] for _ in range(3)}
    assert len(made) == 3 and all(len(m) == 16 and int(m, 16) >= 0 for m in made)
    resp = await http.post("/graphql", headers={"x-request-id": "<>"}, json={"query": MINE})
    assert len(resp.headers["x-request-id"]) == 16  # nothing left: a fresh one
    resp = await http.get("/api/v1/nowhere", headers={"x-request-id": "r-404"})
    assert resp.status_code == 404 and resp.headers["x-request-id"] == "r-404"


@pytest.fixture
def access_lines() -> Any:
    """The access log, formatted as JSON lines."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("creditgate.access")
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lambda: [orjson.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)
    logger.setLevel(old)


async def test_json_access_log(http: httpx.AsyncClient, access_lines: Callable[[], list[dict[str, Any]]]) -> None:
    await http.post("/graphql", json={"query": "query Listing { features { id } }"}, headers={"x-request-id": "q1"})
    await http.get("/api/v1/features/nope", headers={"x-request-id": "r1"})
    await http.get("/healthz")
    first, second, third = access_lines()
    assert first["request_id"] == "q1" and first["method"] == "POST" and first["path"] == "/graphql"
    assert first["api"] == "graphql" and first["operation"] == "Listing" and first["status"] == 200
    assert first["level"] == "info" and first["logger"] == "creditgate.access"
    assert isinstance(first["duration_ms"], float) and first["duration_ms"] >= 0
    assert first["message"].startswith("POST /graphql 200 ") and "op=Listing id=q1" in first["message"]
    assert (second["request_id"], second["path"], second["status"]) == ("r1", "/api/v1/features/nope", 404)
    assert second["operation"] == rest_label("getFeature") and second["api"] == "rest"
    assert third["path"] == "/healthz" and third["operation"] == "/healthz" and len(third["request_id"]) == 16
    assert set(first) == {"ts", "level", "logger", "message", "request_id", "method", "path", "api", "operation",
                          "status", "duration_ms", "client"}


async def test_access_log_can_be_turned_off(rt: Runtime, access_lines: Callable[[], list[dict[str, Any]]]) -> None:
    async with app_client(rt, access_log=False) as http:
        await http.get("/healthz")
    assert access_lines() == []


# -- health --

async def test_readyz(http: httpx.AsyncClient, backend: Backend) -> None:
    resp = await http.get("/readyz")
    expected = {"database": "ok", **({"redis": "ok"} if backend.redis_url else {})}
    assert resp.status_code == 200 and resp.json() == {"status": "ready", "checks": expected, "failed": []}


async def test_readyz_with_redis_down(rt: Runtime, backend: Backend) -> None:
    async with other_runtime(rt, backend, redis_url=CLOSED_REDIS) as down, \
            httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(runtime=down)),
                              base_url="http://test") as http:
        resp = await http.get("/readyz")
        assert (await http.get("/healthz")).status_code == 200  # liveness: still alive
    body = resp.json()
    assert resp.status_code == 503 and body["status"] == "unavailable" and body["failed"] == ["redis"]
    assert body["checks"]["database"] == "ok" and body["checks"]["redis"].startswith("unavailable")


async def test_readyz_with_redis_configured_and_the_cache_off(rt: Runtime) -> None:
    runtime = dataclasses.replace(rt, settings=rt.settings.model_copy(update={"redis_url": CLOSED_REDIS}),
                                  cache=None, extras={})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(runtime=runtime)),
                                 base_url="http://test") as http:
        resp = await http.get("/readyz")
    assert resp.status_code == 503 and resp.json()["failed"] == ["redis"]


async def test_readyz_with_the_database_down(rt: Runtime) -> None:
    db = Database("postgresql://postgres@127.0.0.1:1/nothing")
    try:
        runtime = dataclasses.replace(rt, db=db, extras={})
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(runtime=runtime)),
                                     base_url="http://test") as http:
            resp = await http.get("/readyz")
    finally:
        await db.close()
    assert resp.status_code == 503 and resp.json()["failed"] == ["database"]
    assert resp.json()["checks"]["database"] == "unavailable"


# -- docs --

def test_operations_doc_lists_every_setting_and_metric() -> None:
    from prometheus_client import Counter, Gauge, Histogram

    from creditgate import metrics
    from creditgate.config import Settings

    doc = (Path(__file__).resolve().parent.parent / "docs" / "operations.md").read_text()
    missing = [f"CREDITGATE_{name.upper()}" for name in Settings.model_fields
               if f"`CREDITGATE_{name.upper()}`" not in doc]
    assert missing == []
    names = [m._name + ("_total" if isinstance(m, Counter) else "")
             for m in vars(metrics).values() if isinstance(m, Counter | Gauge | Histogram)]
    assert len(names) >= 9 and [n for n in names if f"`{n}`" not in doc] == []
