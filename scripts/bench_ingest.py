"""Ingest throughput on PostgreSQL: events/s for batches of 1000 through the service layer and
through GraphQL and REST over HTTP (ASGI in-process), beside a raw COPY of the same rows.

    uv run python scripts/bench_ingest.py [--batches 20] [--pg postgresql://postgres@127.0.0.1:5432/postgres]

Creates a throwaway database creditgate_bench_<random>, migrates it and drops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import psycopg
import uvloop

from creditgate.adapters.sql.db import Database, migrate
from creditgate.app import create_app
from creditgate.config import Settings
from creditgate.records import EventInput
from creditgate.services import events, meters
from creditgate.services.runtime import Runtime

BATCH = 1000
START = datetime(2024, 1, 1, tzinfo=UTC)
CPU: dict[str, float] = {}  # share of wall time this process spent on the CPU
INGEST = "mutation($e: [CloudEventInput!]!) { ingestEvents(events: $e) { accepted duplicates } }"


SPREAD = True  # set by --scenario
CLIENTS = 1  # set by --clients: batches sent concurrently, in order, by this many senders


async def send_all(items: list[Any], send: Callable[[Any], Awaitable[None]]) -> None:
    """Send every item, CLIENTS at a time (each sender takes the next item in order)."""
    queue = iter(items)

    async def sender() -> None:
        for item in queue:
            await send(item)

    await asyncio.gather(*(sender() for _ in range(CLIENTS)))


def make_batch(prefix: str, n: int) -> list[dict[str, Any]]:
    """1000 events of 100 subjects and 2 models.

    spread: one event a second over ~17 minutes, so nearly every event makes its own aggregate rows;
    live: all in one minute (as when ingesting as they happen), 200 aggregate rows a batch.
    """
    def at(i: int) -> datetime:
        return START + (timedelta(seconds=n * 10 + i) if SPREAD else timedelta(minutes=n, milliseconds=i * 50))

    return [{"id": f"{prefix}-{i}", "source": "bench", "type": "prompt", "subject": f"customer-{i % 100}",
             "time": at(i).isoformat().replace("+00:00", "Z"),
             "data": {"tokens": i % 50 + 0.5, "model": "gpt" if i % 2 else "llama"}} for i in range(BATCH)]


def as_inputs(batch: list[dict[str, Any]]) -> list[EventInput]:
    return [EventInput(id=e["id"], source=e["source"], type=e["type"], subject=e["subject"], time=e["time"],
                       data=e["data"]) for e in batch]


async def service_path(rt: Runtime, batches: int, tag: str = "svc") -> float:
    prepared = [as_inputs(make_batch(f"{tag}{n}", n)) for n in range(batches)]
    async def send(batch: list[EventInput]) -> None:
        result = await events.ingest_events(rt, batch)
        assert result.accepted == BATCH, result

    t0, c0 = time.perf_counter(), time.process_time()
    await send_all(prepared, send)
    CPU["svc"] = (time.process_time() - c0) / (time.perf_counter() - t0)
    return batches * BATCH / (time.perf_counter() - t0)


async def graphql_path(rt: Runtime, batches: int, tag: str = "gql") -> float:
    bodies = [orjson.dumps({"query": INGEST, "variables": {"e": make_batch(f"{tag}{n}", n)}})
              for n in range(batches)]
    app = create_app(runtime=rt)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client:
        async def send(body: bytes) -> None:
            resp = await client.post("/graphql", content=body, headers={"content-type": "application/json"})
            data = resp.json()
            assert data["data"]["ingestEvents"]["accepted"] == BATCH, data

        t0, c0 = time.perf_counter(), time.process_time()
        await send_all(bodies, send)
        CPU["gql"] = (time.process_time() - c0) / (time.perf_counter() - t0)
        return batches * BATCH / (time.perf_counter() - t0)


async def rest_path(rt: Runtime, batches: int, tag: str = "rest") -> float:
    """POST /api/v1/events with a CloudEvents batch (the REST ingestEvents operation)."""
    bodies = [orjson.dumps(make_batch(f"{tag}{n}", n)) for n in range(batches)]
    app = create_app(runtime=rt)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client:
        async def send(body: bytes) -> None:
            resp = await client.post("/api/v1/events", content=body,
                                      headers={"content-type": "application/cloudevents-batch+json"})
            assert resp.status_code == 204, resp.text

        t0, c0 = time.perf_counter(), time.process_time()
        await send_all(bodies, send)
        CPU["rest"] = (time.process_time() - c0) / (time.perf_counter() - t0)
        return batches * BATCH / (time.perf_counter() - t0)


async def copy_path(url: str, batches: int) -> float:
    """The floor: COPY of the same rows into an unindexed scratch table."""
    rows = [(e["id"], e["source"], e["type"], e["subject"], datetime.fromisoformat(e["time"]),
             orjson.dumps(e["data"]).decode()) for n in range(batches) for e in make_batch(f"copy{n}", n)]
    async with await psycopg.AsyncConnection.connect(url) as conn:
        await conn.execute("CREATE TABLE scratch_events (event_id text, source text, type text, subject text, "
                           "time timestamptz, data jsonb)")
        await conn.commit()
        t0 = time.perf_counter()
        for n in range(batches):
            async with conn.cursor() as cur, cur.copy(
                    "COPY scratch_events (event_id, source, type, subject, time, data) FROM STDIN") as copy:
                for row in rows[n * BATCH:(n + 1) * BATCH]:
                    await copy.write_row(row)
            await conn.commit()
        return batches * BATCH / (time.perf_counter() - t0)


async def run(url: str, batches: int, profile: str | None) -> None:
    settings = Settings(database_url=url, redis_url=None)
    db = Database(url)
    rt = Runtime(settings=settings, db=db)
    try:
        await meters.create_meter(rt, "tokens", "prompt", "SUM", value_property="$.tokens",
                                  group_by={"model": "$.model"})
        await meters.create_meter(rt, "calls", "prompt", "COUNT")
        await events.ingest_events(rt, as_inputs(make_batch("warmup", 0)))
        gc.collect()  # as the server's lifespan does after start-up (httpx's ASGI transport runs no lifespan)
        gc.freeze()
        if profile:
            from pyinstrument import Profiler

            with Profiler() as prof:
                if profile == "gql":
                    await graphql_path(rt, batches, "prof")
                else:
                    await service_path(rt, batches, "prof")
            prof.print(show_all=os.environ.get("SHOW_ALL") == "1")
        svc = await service_path(rt, batches)
        gql = await graphql_path(rt, batches)
        rest = await rest_path(rt, batches)
        copy = await copy_path(url.replace("postgresql+psycopg://", "postgresql://"), batches)
    finally:
        await db.close()
    print(f"scenario {'spread' if SPREAD else 'live'}: {batches} batches of {BATCH}, {CLIENTS} sender(s), "
          "2 meters (SUM with groupBy, COUNT)")
    print(f"{'path':<30}{'events/s':>10}{'vs COPY':>9}{'client CPU':>12}")
    rows = [("service ingest_events", svc, CPU["svc"]), ("GraphQL ingestEvents (HTTP)", gql, CPU["gql"]),
            ("REST POST /api/v1/events", rest, CPU["rest"]),
            ("raw COPY (scratch table)", copy, None)]
    for name, rate, cpu in rows:
        share = f"{cpu:.0%}" if cpu is not None else "-"
        print(f"{name:<30}{rate:>10,.0f}{rate / copy:>9.2f}{share:>12}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--scenario", choices=["spread", "live"], default="spread")
    parser.add_argument("--clients", type=int, default=1, help="batches in flight at once (as several producers)")
    parser.add_argument("--profile", choices=["svc", "gql"], help="print a pyinstrument profile of one path")
    args = parser.parse_args()
    global SPREAD, CLIENTS
    SPREAD = args.scenario == "spread"
    CLIENTS = args.clients
    name = f"creditgate_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(args.pg, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = args.pg.rsplit("/", 1)[0] + "/" + name
    try:
        migrate(url)
        uvloop.run(run(url, args.batches, args.profile))  # the event loop uvicorn serves with
    finally:
        with psycopg.connect(args.pg, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
