"""Ingest throughput: events/s for batches of 1000 through the service layer and through GraphQL and
REST over HTTP (ASGI in-process), on PostgreSQL beside a raw COPY of the same rows into a keyed table
(the ratio is printed), and on embedded SQLite.

    uv run python scripts/bench_ingest.py [--batches 20] [--backend both|pg|sqlite]
                                          [--pg postgresql://postgres@127.0.0.1:5432/postgres]

Creates a throwaway PostgreSQL database creditgate_bench_<random> (and a SQLite file in a temporary
directory), migrates them and drops them at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import psycopg
import uvloop

from _pg import ThrowawayDatabase
from creditgate.adapters.sql.db import Database, migrate
from creditgate.app import create_app
from creditgate.config import Settings
from creditgate.records import EventInput
from creditgate.services import events, meters
from creditgate.services.runtime import Runtime

BATCH = 1000
START = datetime(2024, 1, 1, tzinfo=UTC)
# per path: (CPU ms of this process, CPU ms of the PostgreSQL backends) per 1000 events; on a machine
# shared with other work these move less than the rates do
CPU: dict[str, tuple[float, float | None]] = {}
SERVER_DB: str | None = None  # the PostgreSQL database whose backends' CPU is counted (same machine)
PG_ADMIN = ""
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


def server_ticks() -> dict[int, int]:
    """CPU clock ticks (user + system) of each PostgreSQL backend serving SERVER_DB, from /proc."""
    if SERVER_DB is None:
        return {}
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        pids = [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (SERVER_DB,))]
    ticks: dict[int, int] = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # gone, or PostgreSQL is elsewhere
            continue
        ticks[pid] = int(fields[11]) + int(fields[12])
    return ticks


async def timed(key: str, batches: int, work: Awaitable[None]) -> float:
    """Runs `work` (all the batches); its rate in events/s, and CPU[key]."""
    s0 = server_ticks()
    t0, c0 = time.perf_counter(), time.process_time()
    await work
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    s1 = server_ticks()
    per = 1000 / (batches * BATCH)
    server = sum(t - s0.get(pid, 0) for pid, t in s1.items()) / os.sysconf("SC_CLK_TCK") if s1 else None
    CPU[key] = (cpu * 1000 * per, server * 1000 * per if server is not None else None)
    return batches * BATCH / wall


SLOTS = itertools.count()  # each batch made gets the next time slot: no path writes another's minutes


def make_batch(prefix: str) -> list[dict[str, Any]]:
    """1000 events of 100 subjects and 2 models.

    spread: one event a second over ~17 minutes, so nearly every event makes its own aggregate rows;
    live: all in one minute (as when ingesting as they happen), 200 aggregate rows a batch.
    Consecutive batches of a path follow each other in time (spread: each overlaps the previous
    one's minutes); every path starts in minutes of its own.
    """
    n = next(SLOTS)

    def at(i: int) -> datetime:
        return START + (timedelta(seconds=n * 10 + i) if SPREAD else timedelta(minutes=n, milliseconds=i * 50))

    return [{"id": f"{prefix}-{i}", "source": "bench", "type": "prompt", "subject": f"customer-{i % 100}",
             "time": at(i).isoformat().replace("+00:00", "Z"),
             "data": {"tokens": i % 50 + 0.5, "model": "gpt" if i % 2 else "llama"}} for i in range(BATCH)]


def as_inputs(batch: list[dict[str, Any]]) -> list[EventInput]:
    return [EventInput(id=e["id"], source=e["source"], type=e["type"], subject=e["subject"], time=e["time"],
                       data=e["data"]) for e in batch]


async def service_path(rt: Runtime, batches: int, tag: str = "svc") -> float:
    prepared = [as_inputs(make_batch(f"{tag}{n}")) for n in range(batches)]
    async def send(batch: list[EventInput]) -> None:
        result = await events.ingest_events(rt, batch)
        assert result.accepted == BATCH, result

    return await timed("svc", batches, send_all(prepared, send))


async def graphql_path(rt: Runtime, batches: int, tag: str = "gql") -> float:
    bodies = [orjson.dumps({"query": INGEST, "variables": {"e": make_batch(f"{tag}{n}")}})
              for n in range(batches)]
    app = create_app(runtime=rt)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client:
        async def send(body: bytes) -> None:
            resp = await client.post("/graphql", content=body, headers={"content-type": "application/json"})
            data = resp.json()
            assert data["data"]["ingestEvents"]["accepted"] == BATCH, data

        return await timed("gql", batches, send_all(bodies, send))


async def rest_path(rt: Runtime, batches: int, tag: str = "rest") -> float:
    """POST /api/v1/events with a CloudEvents batch (the REST ingestEvents operation)."""
    bodies = [orjson.dumps(make_batch(f"{tag}{n}")) for n in range(batches)]
    app = create_app(runtime=rt)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client:
        async def send(body: bytes) -> None:
            resp = await client.post("/api/v1/events", content=body,
                                      headers={"content-type": "application/cloudevents-batch+json"})
            assert resp.status_code == 204, resp.text

        return await timed("rest", batches, send_all(bodies, send))


async def copy_path(url: str, batches: int) -> float:
    """The floor: COPY of the same rows into a scratch table keyed by (source, id), one transaction
    a batch (as ingest commits each batch)."""
    rows = [(e["id"], e["source"], e["type"], e["subject"], datetime.fromisoformat(e["time"]),
             orjson.dumps(e["data"]).decode()) for n in range(batches) for e in make_batch(f"copy{n}")]
    async with await psycopg.AsyncConnection.connect(url) as conn:
        await conn.execute("CREATE TABLE scratch_events (event_id text, source text, type text, subject text, "
                           "time timestamptz, data jsonb, PRIMARY KEY (source, event_id))")
        await conn.commit()

        async def work() -> None:
            for n in range(batches):
                async with conn.cursor() as cur, cur.copy(
                        "COPY scratch_events (event_id, source, type, subject, time, data) FROM STDIN") as copy:
                    for row in rows[n * BATCH:(n + 1) * BATCH]:
                        await copy.write_row(row)
                await conn.commit()

        return await timed("copy", batches, work())


Row = tuple[str, float, tuple[float, float | None] | None]


async def run(url: str, batches: int, profile: str | None) -> list[Row]:
    """The paths' rates on one database: (name, events/s, CPU ms per 1000 events)."""
    settings = Settings(database_url=url, redis_url=None)
    db = Database(url)
    rt = Runtime(settings=settings, db=db)
    try:
        await meters.create_meter(rt, "tokens", "prompt", "SUM", value_property="$.tokens",
                                  group_by={"model": "$.model"})
        await meters.create_meter(rt, "calls", "prompt", "COUNT")
        await events.ingest_events(rt, as_inputs(make_batch("warmup")))
        gc.collect()  # as the server's lifespan does after start-up (httpx's ASGI transport runs no lifespan)
        gc.freeze()
        if profile:
            from pyinstrument import Profiler

            with Profiler() as prof:
                if profile == "gql":
                    await graphql_path(rt, batches, "prof")
                elif profile == "rest":
                    await rest_path(rt, batches, "prof")
                else:
                    await service_path(rt, batches, "prof")
            prof.print(show_all=os.environ.get("SHOW_ALL") == "1")
        svc = await service_path(rt, batches)
        gql = await graphql_path(rt, batches)
        rest = await rest_path(rt, batches)
    finally:
        await db.close()
    return [("service ingest_events", svc, CPU["svc"]), ("GraphQL ingestEvents (HTTP)", gql, CPU["gql"]),
            ("REST POST /api/v1/events", rest, CPU["rest"])]


def report(title: str, rows: list[Row], floor: float | None) -> None:
    print(title)
    print(f"  {'path':<34}{'events/s':>10}{'vs COPY':>9}{'CPU ms/1000 events: client':>28}{'server':>8}")
    for name, rate, cpu in rows:
        client = f"{cpu[0]:.1f}" if cpu is not None else "-"
        server = f"{cpu[1]:.1f}" if cpu is not None and cpu[1] is not None else "-"
        ratio = f"{rate / floor:.2f}" if floor else "-"
        print(f"  {name:<34}{rate:>10,.0f}{ratio:>9}{client:>28}{server:>8}")


def bench_pg(pg: str, batches: int, profile: str | None) -> None:
    global SERVER_DB, PG_ADMIN
    db = ThrowawayDatabase(pg)
    PG_ADMIN = pg
    url = db.url
    SERVER_DB = db.name
    try:
        migrate(url)
        rows = uvloop.run(run(url, batches, profile))  # the event loop uvicorn serves with
        copy = uvloop.run(copy_path(url, batches))
    finally:
        SERVER_DB = None
        db.drop()
    report("PostgreSQL", [*rows, ("raw COPY, keyed table (floor)", copy, CPU["copy"])], copy)


def bench_sqlite(batches: int, profile: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        migrate(url)
        rows = uvloop.run(run(url, batches, profile))
    report("SQLite (embedded, WAL, synchronous=NORMAL)", rows, None)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--backend", choices=["both", "pg", "sqlite"], default="both")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--scenario", choices=["spread", "live"], default="spread")
    parser.add_argument("--clients", type=int, default=1, help="batches in flight at once (as several producers)")
    parser.add_argument("--profile", choices=["svc", "gql", "rest"], help="print a pyinstrument profile of one path")
    parser.add_argument("--notifications", action="store_true",
                        help="instead: ingest with and without a notification rule, and write -> webhook latency "
                             "(scripts/bench_notifications.py, same --backend/--batches/--pg)")
    args = parser.parse_args()
    if args.notifications:
        import subprocess
        import sys
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_notifications.py")
        raise SystemExit(subprocess.call([sys.executable, script, "--backend", args.backend,
                                          "--batches", str(args.batches), "--pg", args.pg]))
    global SPREAD, CLIENTS
    SPREAD = args.scenario == "spread"
    CLIENTS = args.clients
    print(f"scenario {args.scenario}: {args.batches} batches of {BATCH}, {CLIENTS} sender(s), "
          f"2 meters (SUM with groupBy, COUNT); load average {os.getloadavg()[0]:.1f}")
    if args.backend in ("both", "pg"):
        bench_pg(args.pg, args.batches, args.profile)
    if args.backend in ("both", "sqlite"):
        bench_sqlite(args.batches, args.profile)


if __name__ == "__main__":
    main()
