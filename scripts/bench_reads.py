"""Reads against history length (issue 10 P3): one METERED entitlement with 20 grants and 1 / 30 / 364 days of
per-minute usage (one minute row per minute), on PostgreSQL and on SQLite, value cache off (every read is
computed from the database, as a cache miss is). 364, not 365: the grants (effective from the first
day) must lie in the current YEAR usage period, which 365 days back has just ended.

    uv run python scripts/bench_reads.py [--lengths 1,30,364] [--backends pg,sqlite] [--reads 40]
                                         [--pg postgresql://postgres@127.0.0.1:5432/postgres]

Per backend and length, through GraphQL on the ASGI app in-process (httpx transport, no socket):
- first read ever: entitlementValue at now of the heavy entitlement, which has no snapshot yet (the process
  read another entitlement before, so connections and statements are warm, as on a running server);
  then "no snapshot" reads: the same with the snapshots deleted before each read (median);
- now after a write: ingest one event in the current minute, then read the value at now (p50 / p95);
- past `at`: values at random instants over the history (p50 / p95);
- history HOUR windows over the last 30 days (the whole history when shorter) and DAY windows from the
  period start (the whole history: 1 / 30 / 365 windows) (median);
and the ratio of each figure at the longest history to the shortest.

The usage is written straight into meter_minutes by SQL (the fastest way to seed a year; the usage buckets
follow through their triggers), not through ingest. Creates a throwaway database (or SQLite file) per case.
Works on trees without the usage buckets too (for before/after runs: PYTHONPATH=<old tree>/src).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text

from _pg import ThrowawayDatabase
from creditgate.adapters.sql.db import Database, migrate
from creditgate.app import create_app
from creditgate.config import Settings
from creditgate.services.runtime import Runtime

GRANTS = 20
VALUE = """query($s: String!, $at: DateTime) {
  entitlementValue(subjectKey: $s, entitlementIdOrFeatureKey: "ai", at: $at) { hasAccess balance usage overage } }"""
HISTORY = """query($id: ID!, $w: WindowSize!, $from: DateTime, $to: DateTime) {
  entitlement(id: $id) { ... on MeteredEntitlement { history(windowSize: $w, from: $from, to: $to) {
    windowedHistory { period { from to } usage balanceAtStart } burndownHistory { usage balanceAtEnd } } } } }"""
INGEST = "mutation($e: [CloudEventInput!]!) { ingestEvents(events: $e) { accepted } }"
SUBJECT = "heavy"


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


async def gql(client: httpx.AsyncClient, query: str, **variables: Any) -> Any:
    body = (await client.post("/graphql", json={"query": query, "variables": variables})).json()
    if body.get("errors"):
        raise RuntimeError(body["errors"])
    return body["data"]


async def seed(client: httpx.AsyncClient, db: Database, start: datetime, now: datetime) -> str:
    await gql(client, """mutation { createMeter(input: {slug: "tokens", eventType: "prompt", aggregation: SUM,
      valueProperty: "$.tokens"}) { id } }""")
    await gql(client, 'mutation { createFeature(input: {key: "ai", name: "AI", meterSlug: "tokens"}) { id } }')
    ent = await gql(client, """mutation($s: String!, $a: DateTime!) { createEntitlement(subjectKey: $s, input: {
      type: METERED, featureKey: "ai", usagePeriod: {interval: YEAR, anchor: $a}, measureUsageFrom: $a}) { id } }""",
                    s=SUBJECT, a=iso(start))
    grant = ("mutation($s: String!, $e: DateTime!, $p: Int!) { createGrant(subjectKey: $s, entitlementIdOrFeatureKey: "
             "\"ai\", input: {amount: 10000000, priority: $p, effectiveAt: $e, expiration: {duration: YEAR, count: 2}})"
             " { id } }")
    span = now - start
    for g in range(GRANTS):  # spread over the history, off hour and day edges
        eff = (start + span * g / GRANTS).replace(second=0, microsecond=0) + timedelta(minutes=7 if g else 0)
        await gql(client, grant, s=SUBJECT, e=iso(eff), p=g % 5)
    # a light entitlement, read first in the measuring process: the pool, the statements and the code paths
    # are warm, so "first read" is the heavy entitlement's first read on a running server
    await gql(client, """mutation($s: String!, $a: DateTime!) { createEntitlement(subjectKey: $s, input: {
      type: METERED, featureKey: "ai", usagePeriod: {interval: YEAR, anchor: $a}, measureUsageFrom: $a}) { id } }""",
              s="light", a=iso(start))
    await gql(client, grant, s="light", e=iso(start), p=1)
    meter_id = await _meter_id(db)
    minutes = int((now - start).total_seconds() // 60)
    t0 = time.perf_counter()
    async with db.transaction() as s:
        conn = await s.connection()
        if db.dialect == "postgresql":
            await conn.execute(text(
                "INSERT INTO meter_minutes (meter_id, subject, group_key, minute, groups, sum, count, min, max) "
                "SELECT :m, :s, '{}', CAST(:a AS timestamptz) + n * interval '1 minute', '{}'::jsonb, 0.5, 1, 0.5, 0.5 "
                "FROM generate_series(0, :n - 1) AS n"), {"m": meter_id, "s": SUBJECT, "a": start, "n": minutes})
        else:
            a = start.replace(tzinfo=None)
            rows = [{"m": meter_id, "s": SUBJECT, "t": (a + timedelta(minutes=k)).isoformat(sep=" ",
                                                                                            timespec="microseconds")}
                    for k in range(minutes)]
            await conn.execute(text("INSERT INTO meter_minutes (meter_id, subject, group_key, minute, groups, sum, "
                                    "count, min, max) VALUES (:m, :s, '{}', :t, '{}', '0.5', 1, 0.5, 0.5)"), rows)
    print(f"  seeded {minutes:,} minutes in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return str(ent["createEntitlement"]["id"])


async def _meter_id(db: Database) -> str:
    async with db.read() as s:
        return str((await (await s.connection()).execute(text("SELECT id FROM meters"))).scalar_one())


async def timed(fn: Callable[[], Awaitable[Any]]) -> float:
    t0 = time.perf_counter()
    await fn()
    return (time.perf_counter() - t0) * 1000


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(p * len(s)) - 1))]


async def drop_snapshots(db: Database) -> None:
    async with db.transaction() as s:
        await (await s.connection()).execute(text("DELETE FROM snapshots"))


async def measure(url: str, days: int, reads: int) -> dict[str, float]:
    now = datetime.now(UTC)
    start = (now - timedelta(days=days)).replace(second=0, microsecond=0)
    settings = Settings(database_url=url, redis_url=None, api_keys="", token_secret="bench")
    # seeding in one runtime; measuring in a fresh one (fresh pool: the first read is really the first)
    db = Database(url)
    rt = Runtime(settings=settings, db=db, cache=None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(runtime=rt)),
                                 base_url="http://bench", timeout=600) as client:
        ent_id = await seed(client, db, start, now)
    await db.close()
    db = Database(url)
    rt = Runtime(settings=settings, db=db, cache=None)
    out: dict[str, float] = {}
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(runtime=rt)),
                                     base_url="http://bench", timeout=600) as client:
            await gql(client, VALUE, s="light")
            await gql(client, VALUE, s="light", at=iso(now - timedelta(minutes=30)))
            out["first"] = await timed(lambda: gql(client, VALUE, s=SUBJECT))
            cold = []
            for _ in range(max(5, reads // 4)):
                await drop_snapshots(db)
                cold.append(await timed(lambda: gql(client, VALUE, s=SUBJECT)))
            out["nosnap"] = statistics.median(cold)
            after_write = []
            for k in range(reads):
                ev = [{"id": f"w{k}", "source": "bench", "type": "prompt", "subject": SUBJECT,
                       "time": iso(datetime.now(UTC)), "data": {"tokens": 0.5}}]
                await gql(client, INGEST, e=ev)
                after_write.append(await timed(lambda: gql(client, VALUE, s=SUBJECT)))
            out["now_p50"], out["now_p95"] = statistics.median(after_write), pct(after_write, 0.95)
            rng = random.Random(1)
            span = int((now - start).total_seconds())
            past = []
            for _ in range(reads):
                at = start + timedelta(seconds=rng.randint(60, span - 120))
                past.append(await timed(lambda at=at: gql(client, VALUE, s=SUBJECT, at=iso(at))))  # type: ignore[misc]
            out["past_p50"], out["past_p95"] = statistics.median(past), pct(past, 0.95)
            h_from = iso(max(start, now - timedelta(days=30)).replace(second=0, microsecond=0) + timedelta(minutes=1))
            hour = [await timed(lambda: gql(client, HISTORY, id=ent_id, w="HOUR", **{"from": h_from}))
                    for _ in range(max(5, reads // 4))]
            day = [await timed(lambda: gql(client, HISTORY, id=ent_id, w="DAY")) for _ in range(max(5, reads // 4))]
            out["hist_hour"], out["hist_day"] = statistics.median(hour), statistics.median(day)
    finally:
        await db.close()
    return out


COLUMNS = [("first", "first read ever"), ("nosnap", "no-snapshot read (median)"), ("now_p50", "now after write p50"),
           ("now_p95", "p95"), ("past_p50", "past at p50"), ("past_p95", "p95"), ("hist_hour", "history HOUR 30 d"),
           ("hist_day", "history DAY (whole)")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", default="1,30,364",
                    help="days of per-minute usage, comma separated (at most 364: one YEAR usage period)")
    ap.add_argument("--backends", default="pg,sqlite")
    ap.add_argument("--reads", type=int, default=40)
    ap.add_argument("--pg", default=os.environ.get("CREDITGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"))
    args = ap.parse_args()
    lengths = [int(x) for x in args.lengths.split(",")]
    print(f"load average before: {os.getloadavg()[0]:.2f}", file=sys.stderr)
    print("| backend | days | " + " | ".join(c[1] for c in COLUMNS) + " |")
    print("|---|---:|" + "---:|" * len(COLUMNS))
    for backend in args.backends.split(","):
        results: dict[int, dict[str, float]] = {}
        for days in lengths:
            print(f"{backend} {days} days ...", file=sys.stderr)
            if backend == "pg":
                db = ThrowawayDatabase(args.pg)
                url = db.url
                try:
                    migrate(url)
                    results[days] = asyncio.run(measure(url, days, args.reads))
                finally:
                    db.drop()
            else:
                with tempfile.TemporaryDirectory() as tmp:
                    url = f"sqlite:///{tmp}/bench.db"
                    migrate(url)
                    results[days] = asyncio.run(measure(url, days, args.reads))
            r = results[days]
            print(f"| {backend} | {days} | " + " | ".join(f"{r[c]:.1f}" for c, _ in COLUMNS) + " |", flush=True)
        lo, hi = min(results), max(results)
        if lo != hi:
            print(f"| {backend} | ratio {hi}/{lo} | "
                  + " | ".join(f"{results[hi][c] / results[lo][c]:.2f}x" for c, _ in COLUMNS) + " |", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
