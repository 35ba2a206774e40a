"""Storage per event on PostgreSQL (issue 13): the spread workload, 200,000 events over 2,000 subjects and
10 days (random instants), one SUM meter grouped by model, ingested through the service in batches of 1000.
Prints every table's heap, index and TOAST bytes (pg_relation_size of each fork after VACUUM ANALYZE, as
autovacuum leaves them), the total per stored event and the target (<= 150 bytes).

    uv run python scripts/bench_storage.py [--events 200000] [--subjects 2000] [--days 10]
                                           [--pg postgresql://postgres@127.0.0.1:5432/postgres]

Creates a throwaway database creditgate_bench_<random> and drops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg

from _pg import ThrowawayDatabase
from creditgate.adapters.sql.db import Database, migrate
from creditgate.config import Settings
from creditgate.records import EventInput
from creditgate.services import events, meters
from creditgate.services.runtime import Runtime

START = datetime(2026, 1, 1, tzinfo=UTC)
TARGET = 150
# the tables an event's storage is made of (raw event, dedupe key, aggregates, coarser buckets)
USAGE_TABLES = ("events", "event_keys", "meter_minutes", "usage_hours", "usage_days", "meter_minute_values")


def workload(n: int, subjects: int, days: int, seed: int = 13) -> list[list[EventInput]]:
    """n events with CloudEvents-style UUID ids, spread at random over the days, in batches of 1000."""
    rnd = random.Random(seed)
    span = days * 86400
    out: list[EventInput] = []
    for _ in range(n):
        at = START + timedelta(seconds=rnd.randrange(span), microseconds=rnd.randrange(1_000_000))
        out.append(EventInput(id=str(uuid.UUID(int=rnd.getrandbits(128), version=4)), source="api-gateway",
                              type="prompt", subject=f"customer-{rnd.randrange(subjects):05d}",
                              time=at.isoformat().replace("+00:00", "Z"),
                              data={"tokens": rnd.randrange(1, 4000), "model": rnd.choice(("gpt-4o", "llama-3"))}))
    return [out[i:i + 1000] for i in range(0, n, 1000)]


async def ingest(url: str, batches: list[list[EventInput]]) -> float:
    db = Database(url)
    rt = Runtime(settings=Settings(database_url=url, redis_url=None), db=db)
    try:
        await meters.create_meter(rt, "tokens", "prompt", "SUM", value_property="$.tokens",
                                  group_by={"model": "$.model"})
        t0 = time.perf_counter()
        for n, batch in enumerate(batches, 1):
            result = await events.ingest_events(rt, batch)
            assert result.accepted == len(batch), result
            if n % 20 == 0:
                print(f"\r  ingested {n * 1000:,} events", end="", flush=True)
        print()
        return time.perf_counter() - t0
    finally:
        await db.close()


SIZES = """
SELECT c.relname, pg_relation_size(c.oid),
       coalesce((SELECT sum(pg_relation_size(i.indexrelid)) FROM pg_index i WHERE i.indrelid = c.oid), 0),
       coalesce(pg_total_relation_size(c.reltoastrelid), 0),
       pg_total_relation_size(c.oid), c.reltuples
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname = ANY(%s)"""
# a partitioned table's partitions are counted under their parent's name
PARTS = """
SELECT p.relname, c.relname FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid
JOIN pg_class p ON p.oid = h.inhparent"""


def sizes(url: str) -> dict[str, list[float]]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        parent = {child: par for par, child in conn.execute(PARTS).fetchall()}
        names = list(USAGE_TABLES) + [c for c, p in parent.items() if p in USAGE_TABLES]
        out: dict[str, list[float]] = {}
        for name, heap, index, toast, total, rows in conn.execute(SIZES, (names,)).fetchall():
            row = out.setdefault(parent.get(name, name), [0, 0, 0, 0, 0])
            for i, v in enumerate((heap, index, toast, total, max(rows, 0))):
                row[i] += float(v)
        return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--subjects", type=int, default=2_000)
    parser.add_argument("--days", type=int, default=10)
    args = parser.parse_args()
    db = ThrowawayDatabase(args.pg)
    url = db.url
    try:
        migrate(url)
        batches = workload(args.events, args.subjects, args.days)
        print(f"spread workload: {args.events:,} events, {args.subjects:,} subjects, {args.days} days, "
              "one SUM meter grouped by model (2 values)")
        seconds = asyncio.run(ingest(url, batches))
        print(f"  ingest: {seconds:.1f} s ({args.events / seconds:,.0f} events/s, service layer)")
        table = sizes(url)
    finally:
        db.drop()
    print(f"\n  {'table':<22}{'rows':>10}{'heap MB':>10}{'index MB':>10}{'toast MB':>10}{'total MB':>10}"
          f"{'B/event':>9}")
    total = 0.0
    for tname in USAGE_TABLES:
        if tname not in table:
            continue
        heap, index, toast, size, rows = table[tname]
        total += size
        mb = 1024 * 1024
        print(f"  {tname:<22}{rows:>10,.0f}{heap / mb:>10.1f}{index / mb:>10.1f}{toast / mb:>10.1f}"
              f"{size / mb:>10.1f}{size / args.events:>9.0f}")
    per = total / args.events
    print(f"  {'all':<22}{'':>40}{total / 1024 / 1024:>10.1f}{per:>9.0f}")
    print(f"\nbytes per stored event: {per:.0f} (target <= {TARGET}: {'met' if per <= TARGET else 'NOT met'})")


if __name__ == "__main__":
    main()
