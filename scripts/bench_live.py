"""Live updates under load: one uvicorn worker (PostgreSQL + Redis) holding 1,000 open subscriptions.

    uv run python scripts/bench_live.py [--subscriptions 1000] [--ingests 200] [--seconds 10]
                                        [--pg postgresql://postgres@127.0.0.1:5432/postgres]
                                        [--redis redis://127.0.0.1:6379/0]

(1) Latency of an update: one event ingested at a time (GraphQL ingestEvents, each for another subscribed
subject), timed from the ingest's acknowledgement (its HTTP answer arriving) to the INGEST update arriving
on that subject's socket; also from the moment the ingest was sent. One subscription per connection, as
browsers hold them (1,000 WebSocket connections), every subject its own metered entitlement.
(2) Cost of idle subscriptions: cached entitlementValue throughput (wrk, 32 connections, as
scripts/bench_access.py) without subscriptions, with the 1,000 subscriptions open and idle, and without
again (the ratio uses the mean of the two runs without).
Creates a throwaway database and Redis prefix, removes both at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import redis
from websockets.asyncio.client import ClientConnection, connect

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _pg import ThrowawayDatabase
from _wrk import UVICORN, free_port, wait_up
from _wrk import wrk_async as wrk
from creditgate.adapters.sql.db import migrate

SUBSCRIBE = ('subscription($s: String!) { entitlementValues(subjectKey: $s, featureKeys: ["ai"]) '
             "{ subjectKey cause asOf value { balance usage } } }")
VALUE = ('query($s: String!) { entitlementValue(subjectKey: $s, entitlementIdOrFeatureKey: "ai") '
         "{ hasAccess balance usage overage } }")


async def gql(client: httpx.AsyncClient, query: str, **variables: Any) -> Any:
    body = (await client.post("/graphql", json={"query": query, "variables": variables})).json()
    if body.get("errors"):
        raise RuntimeError(body["errors"])
    return body["data"]


async def seed(client: httpx.AsyncClient, subjects: int) -> None:
    await gql(client, """mutation { createMeter(input: {slug: "tokens", eventType: "prompt", aggregation: SUM,
      valueProperty: "$.tokens"}) { id } }""")
    await gql(client, 'mutation { createFeature(input: {key: "ai", name: "AI", meterSlug: "tokens"}) { id } }')
    start = (datetime.now(UTC) - timedelta(days=1)).replace(second=0, microsecond=0).isoformat()
    ent = ("mutation($s: String!, $a: DateTime!) { createEntitlement(subjectKey: $s, input: {type: METERED, "
           "featureKey: \"ai\", usagePeriod: {interval: MONTH, anchor: $a}, measureUsageFrom: $a, "
           "issueAfterReset: 1000000}) { id } }")
    sem = asyncio.Semaphore(8)

    async def one(i: int) -> None:
        async with sem:
            await gql(client, ent, s=f"cust-{i:04d}", a=start)
    await asyncio.gather(*(one(i) for i in range(subjects)))


class Subscriber:
    """One connection holding one subscription; notes when each INGEST update arrives."""

    def __init__(self, url: str, subject: str) -> None:
        self.url, self.subject = url, subject
        self.ws: ClientConnection | None = None
        self.arrived: asyncio.Queue[float] = asyncio.Queue()
        self.current = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        self.ws = await connect(self.url, subprotocols=["graphql-transport-ws"], open_timeout=60,  # type: ignore[list-item]
                                ping_interval=None)
        await self.ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert json.loads(await self.ws.recv())["type"] == "connection_ack"
        await self.ws.send(json.dumps({"id": "1", "type": "subscribe",
                                       "payload": {"query": SUBSCRIBE, "variables": {"s": self.subject}}}))
        self.task = asyncio.create_task(self.read())

    async def read(self) -> None:
        assert self.ws is not None
        with contextlib.suppress(Exception):
            async for raw in self.ws:
                now = time.perf_counter()
                msg = json.loads(raw)
                if msg["type"] == "ping":
                    await self.ws.send('{"type": "pong"}')
                elif msg["type"] == "next":
                    cause = msg["payload"]["data"]["entitlementValues"]["cause"]
                    if cause == "CURRENT":
                        self.current.set()
                    elif cause == "INGEST":
                        self.arrived.put_nowait(now)
                elif msg["type"] in ("error", "complete"):
                    raise RuntimeError(msg)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        if self.ws is not None:
            await self.ws.close()


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(len(s) * p))]


async def run(args: argparse.Namespace, base: str) -> list[str]:
    rows: list[str] = []
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        t0 = time.perf_counter()
        await seed(client, args.subscriptions)
        print(f"seeded {args.subscriptions} subjects in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        body = orjson.dumps({"query": VALUE, "variables": {"s": "cust-0500"}})
        await client.post("/graphql", content=body, headers={"content-type": "application/json"})  # warm
        without = [await wrk(base + "/graphql", body, args.seconds)]

        ws_url = base.replace("http", "ws", 1) + "/graphql"
        subs = [Subscriber(ws_url, f"cust-{i:04d}") for i in range(args.subscriptions)]
        t0 = time.perf_counter()
        for k in range(0, len(subs), 50):
            await asyncio.gather(*(s.open() for s in subs[k:k + 50]))
        await asyncio.wait_for(asyncio.gather(*(s.current.wait() for s in subs)), 120)
        print(f"{len(subs)} subscriptions open and current in {time.perf_counter() - t0:.1f} s", file=sys.stderr)

        idle = await wrk(base + "/graphql", body, args.seconds)  # the subscriptions are open, nothing changes

        from_ack: list[float] = []
        from_send: list[float] = []
        ingest = "mutation($e: [CloudEventInput!]!) { ingestEvents(events: $e) { accepted } }"
        rng = random.Random(7)
        for n in range(args.ingests):
            sub = subs[rng.randrange(len(subs))]
            while not sub.arrived.empty():
                sub.arrived.get_nowait()
            event = {"id": f"live-{n}", "source": "bench", "type": "prompt", "subject": sub.subject,
                     "time": datetime.now(UTC).isoformat(), "data": {"tokens": 1}}
            sent = time.perf_counter()
            await gql(client, ingest, e=[event])
            acked = time.perf_counter()
            arrived = await asyncio.wait_for(sub.arrived.get(), 30)
            from_ack.append(max(0.0, arrived - acked) * 1000)
            from_send.append((arrived - sent) * 1000)
            await asyncio.sleep(0.01)
        metrics = (await client.get("/metrics")).text
        for line in metrics.splitlines():
            if line.startswith(("creditgate_subscription_updates_total", "creditgate_change_signals_total",
                                "creditgate_cache_lookups_total")):
                print(line, file=sys.stderr)
        for s in subs:
            await s.close()
        without.append(await wrk(base + "/graphql", body, args.seconds))

    base_rps = statistics.mean(w["rps"] for w in without)
    early = sum(1 for a in from_ack if a == 0.0)
    rows.append(f"| (1) ingest acknowledged -> update arrived, {args.subscriptions} subscriptions, "
                f"{args.ingests} ingests | p50 {statistics.median(from_ack):.1f} ms, p99 {pct(from_ack, 0.99):.1f} ms, "
                f"max {max(from_ack):.1f} ms ({early} arrived before the acknowledgement) |")
    rows.append(f"| (1') ingest sent -> update arrived | p50 {statistics.median(from_send):.1f} ms, "
                f"p99 {pct(from_send, 0.99):.1f} ms, max {max(from_send):.1f} ms |")
    rows.append(f"| (2) cached entitlementValue, 32 conns, no subscriptions (before / after) | "
                f"{without[0]['rps']:,.0f} / {without[1]['rps']:,.0f} req/s, p99 {without[0]['p99']:.1f} / "
                f"{without[1]['p99']:.1f} ms |")
    rows.append(f"| (2) same with {args.subscriptions} idle subscriptions open | {idle['rps']:,.0f} req/s, "
                f"p99 {idle['p99']:.1f} ms: {idle['rps'] / base_rps:.0%} of the mean without |")
    errors = sum(w["errors"] for w in without) + idle["errors"]
    if errors:
        rows.append(f"| wrk errors | {errors} |")
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--subscriptions", type=int, default=1000)
    ap.add_argument("--ingests", type=int, default=200)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--pg", default=os.environ.get("CREDITGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--redis", default=os.environ.get("CREDITGATE_TEST_REDIS", "redis://127.0.0.1:6379/0"))
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))  # the worker inherits it
    db = ThrowawayDatabase(args.pg)
    prefix = f"cgbench:{uuid.uuid4().hex[:8]}:"
    url = db.url
    r = redis.Redis.from_url(args.redis)
    proc: subprocess.Popen[bytes] | None = None
    try:
        migrate(url)
        port = free_port()
        env = {**os.environ, "CREDITGATE_DATABASE_URL": url, "CREDITGATE_REDIS_URL": args.redis,
               "CREDITGATE_REDIS_PREFIX": prefix, "CREDITGATE_API_KEYS": "", "CREDITGATE_TOKEN_SECRET": "bench",
               "CREDITGATE_ACCESS_LOG": "false"}
        proc = subprocess.Popen([*UVICORN, "--port", str(port), "--factory", "creditgate.app:create_app"], env=env)
        base = f"http://127.0.0.1:{port}"
        wait_up(base + "/healthz")
        rows = asyncio.run(run(args, base))
        print("| case | measured |")
        print("|---|---|")
        print("\n".join(rows))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        for key in r.scan_iter(match=prefix + "*", count=1000):
            r.delete(key)
        db.drop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
