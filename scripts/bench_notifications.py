"""Notifications (issue 11): what a rule covering every feature costs ingest, and how soon a webhook arrives.

    uv run python scripts/bench_notifications.py [--batches 20] [--rounds 2] [--crossings 100]
                                                 [--backend both|pg|sqlite]
                                                 [--pg postgresql://postgres@127.0.0.1:5432/postgres]

1. Ingest throughput through the service layer (batches of 1000 events over 100 subjects, each with a metered
   entitlement), with the process's notification worker running as `serve` runs it, first with no rule, then
   with an enabled rule covering every feature (thresholds not reached, so every batch makes the worker
   evaluate its subjects); rounds alternate and the best of each is printed with the ratio (target >= 0.8).
2. Latency: `--crossings` times, an ingest that crosses a NUMBER threshold for a fresh subject; the time from
   the acknowledged ingest (ingest_events returned) to the webhook's arrival at a local HTTP receiver;
   p50 / p99 / max (target p99 < 2 s).

Creates a throwaway PostgreSQL database (and a SQLite file in a temporary directory) and drops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import uvloop

from _pg import ThrowawayDatabase
from creditgate.adapters.sql.db import Database, migrate
from creditgate.app import notification_worker
from creditgate.config import Settings
from creditgate.records import EventInput
from creditgate.services import entitlements, events, features, grants, meters
from creditgate.services import notifications as notify
from creditgate.services.runtime import Runtime

BATCH = 1000
SUBJECTS = 100
NO_WORKER = False  # --no-worker: only what ingest itself pays (the pending marks), nothing evaluated


class Receiver:
    """Local webhook receiver: arrival time (monotonic) per subject key."""

    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        self.count = 0
        self.cond = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                at = time.monotonic()
                key = orjson.loads(body)["data"]["subject"]["key"]
                with outer.cond:
                    outer.arrivals.setdefault(key, at)
                    outer.count += 1
                    outer.cond.notify_all()
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def batch(tag: str, n: int, now: datetime) -> list[EventInput]:
    return [EventInput(id=f"{tag}-{n}-{i}", source="bench", type="prompt", subject=f"customer-{i % SUBJECTS}",
                       time=now - timedelta(milliseconds=i), data={"tokens": i % 50 + 0.5})
            for i in range(BATCH)]


async def ingest_rate(rt: Runtime, tag: str, batches: int) -> float:
    now = datetime.now(UTC)
    prepared = [batch(tag, n, now) for n in range(batches)]
    start = time.perf_counter()
    for b in prepared:
        result = await events.ingest_events(rt, b)
        assert result.accepted == BATCH, result
    return batches * BATCH / (time.perf_counter() - start)


async def drained(rt: Runtime) -> float:
    """Seconds until no evaluation is due (the worker caught up)."""
    from creditgate.services import thresholds
    start = time.perf_counter()
    while True:
        due = await thresholds.next_due(rt)
        if due is None or due > datetime.now(UTC):
            return time.perf_counter() - start
        await asyncio.sleep(0.05)


async def run(url: str, batches: int, rounds: int, crossings: int) -> None:
    settings = Settings(database_url=url, redis_url=None, notifications_poll_interval=1.0)
    db = Database(url)
    rt = Runtime(settings=settings, db=db)
    receiver = Receiver()
    worker = notification_worker(rt)
    if not NO_WORKER:
        worker.start()
    try:
        await meters.create_meter(rt, "tokens", "prompt", "SUM", value_property="$.tokens")
        await features.create_feature(rt, "ai", "ai", meter_slug="tokens")
        start = datetime.now(UTC) - timedelta(minutes=1)
        for i in range(SUBJECTS):
            await entitlements.create_entitlement(rt, f"customer-{i}", entitlements.EntitlementInput(
                type="METERED", feature_key="ai", usage_period_interval="MONTH", has_usage_period=True,
                usage_period_anchor=start, measure_usage_from=start))
            await grants.create_grant(rt, f"customer-{i}", "ai", grants.GrantInput(
                amount=10**12, effective_at=start, expiration_duration="YEAR", expiration_count=1))
        channel = await notify.create_channel(rt, "bench", receiver.url)
        rule = await notify.create_rule(rt, "every feature", [notify.ThresholdInput(80, "PERCENT")], [channel.id],
                                        disabled=True)
        if not NO_WORKER:
            await drained(rt)
        best: dict[bool, float] = {False: 0.0, True: 0.0}
        for r in range(rounds):
            for with_rule in (False, True):
                await notify.update_rule(rt, rule.id, "every feature", [notify.ThresholdInput(80, "PERCENT")],
                                         [channel.id], disabled=not with_rule)
                if not NO_WORKER:
                    await drained(rt)
                rate = await ingest_rate(rt, f"r{r}{int(with_rule)}", batches)
                lag = 0.0 if NO_WORKER else await drained(rt)
                best[with_rule] = max(best[with_rule], rate)
                print(f"  round {r + 1}, {'with' if with_rule else 'no  '} rule: {rate:9,.0f} events/s"
                      f"{f'   (evaluation caught up {lag:.2f} s after the last batch)' if with_rule else ''}")
        print(f"  ingest, best of {rounds}: no rule {best[False]:,.0f}/s, rule on every feature {best[True]:,.0f}/s,"
              f" ratio {best[True] / best[False]:.2f} (target >= 0.80)")

        if NO_WORKER:
            return
        # latency: fresh subjects crossing NUMBER 50
        await notify.update_rule(rt, rule.id, "every feature", [notify.ThresholdInput(50, "NUMBER")],
                                 [channel.id], disabled=False)
        for i in range(crossings):
            await entitlements.create_entitlement(rt, f"lat-{i}", entitlements.EntitlementInput(
                type="METERED", feature_key="ai", usage_period_interval="MONTH", has_usage_period=True,
                usage_period_anchor=start, measure_usage_from=start))
        await drained(rt)
        waits: list[float] = []
        for i in range(crossings):
            key = f"lat-{i}"
            await events.ingest_events(rt, [EventInput(id=f"lat-{i}", source="bench", type="prompt", subject=key,
                                                       time=datetime.now(UTC), data={"tokens": 60})])
            acked = time.monotonic()
            deadline = acked + 30
            while key not in receiver.arrivals and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.002)  # the receiver is a thread; the worker runs on this event loop
            got = receiver.arrivals.get(key)
            assert got is not None, f"no webhook for {key} within 30 s"
            waits.append(got - acked)
        waits.sort()
        p99 = waits[min(len(waits) - 1, int(len(waits) * 0.99))]
        print(f"  write -> webhook over {crossings} crossings: p50 {statistics.median(waits) * 1000:.0f} ms, "
              f"p99 {p99 * 1000:.0f} ms, max {waits[-1] * 1000:.0f} ms (target p99 < 2000 ms)")
    finally:
        if not NO_WORKER:
            await worker.stop()
        receiver.close()
        await db.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--crossings", type=int, default=100)
    ap.add_argument("--backend", choices=("both", "pg", "sqlite"), default="both")
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--no-worker", action="store_true", help="ingest only: the worker does not run")
    args = ap.parse_args()
    global NO_WORKER
    NO_WORKER = args.no_worker
    if args.backend in ("both", "pg"):
        db = ThrowawayDatabase(args.pg)
        url = db.url
        try:
            migrate(url)
            print("PostgreSQL")
            uvloop.run(run(url, args.batches, args.rounds, args.crossings))
        finally:
            db.drop()
    if args.backend in ("both", "sqlite"):
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/bench.db"
            migrate(url)
            print("SQLite")
            uvloop.run(run(url, args.batches, args.rounds, args.crossings))


if __name__ == "__main__":
    main()
