"""Timing of `creditgate import` (issue 14): N subjects, each with a METERED entitlement (daily usage period,
so its current period starts with a reset), two grants (one refilled daily), a BOOLEAN entitlement, and
a week of minute usage (one event every --every minutes per subject, on a SUM meter grouped by model).

    uv run python scripts/bench_import.py [--subjects 10000] [--days 7] [--every 60] \
        [--pg postgresql://postgres@127.0.0.1:5432/postgres] [--keep-source | --fill-only] [--source-db NAME] \
        [--profile] [--profile-server]

The source is filled through the services (clock at the start of the week), then served by
`creditgate serve` in a subprocess (its own process, as a real source is); the import runs in this
process into a second empty database, as the command does. Both databases are throwaway
(creditgate_bench_<random>) and dropped at the end; `--keep-source` keeps the filled source (its name is
printed) and `--source-db NAME` imports from such a kept source instead of filling one (its clock: the
week before now at the time it was filled). The import's pace is printed every 1,000 entitlements (a pace
that falls as the target fills points at the writes, a steady one at the reads). `--profile` profiles the
import (pyinstrument), `--profile-server` the source server (pyinstrument around `creditgate serve`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
from openmeter import Client

from creditgate.adapters.importer.command import Options, run_import
from creditgate.adapters.importer.source import Source
from creditgate.adapters.sql.db import Database, migrate
from creditgate.config import Settings
from creditgate.records import EventInput
from creditgate.services import entitlements, events, features, grants, meters
from creditgate.services.entitlements import EntitlementInput
from creditgate.services.grants import GrantInput
from creditgate.services.runtime import Runtime

BATCH = 10_000


def create_db(admin: str) -> tuple[str, str]:
    name = f"creditgate_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin.rsplit("/", 1)[0] + "/" + name
    migrate(url)
    return name, url


def drop_db(admin: str, name: str) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def fill(url: str, subjects: int, start: datetime, end: datetime, every: int) -> int:
    clock = [start]
    rt = Runtime(settings=Settings(database_url=url, value_cache=False), db=Database(url), clock=lambda: clock[0])
    try:
        await meters.create_meter(rt, "tokens", "tokens", "SUM", value_property="$.tokens",
                                  group_by={"model": "$.model"})
        await features.create_feature(rt, "ai", "AI tokens", meter_slug="tokens")
        await features.create_feature(rt, "sso", "SSO")
        keys = [f"cust-{i:05d}" for i in range(subjects)]
        t0 = time.perf_counter()
        async def setup(key: str) -> None:
            ent = await entitlements.create_entitlement(rt, key, EntitlementInput(
                type="METERED", feature_key="ai", has_usage_period=True, usage_period_interval="DAY",
                usage_period_anchor=start, measure_usage_from=start))
            await entitlements.create_entitlement(rt, key, EntitlementInput(type="BOOLEAN", feature_key="sso"))
            await grants.create_grant(rt, key, ent.id, GrantInput(
                amount=1000, effective_at=start, expiration_duration="MONTH", expiration_count=1,
                recurrence_interval="DAY", max_rollover=500))
            await grants.create_grant(rt, key, ent.id, GrantInput(
                amount=250, priority=2, effective_at=start, expiration_duration="YEAR", expiration_count=1))

        for i in range(0, len(keys), 8):  # a few at a time: the database works while Python does
            await asyncio.gather(*(setup(k) for k in keys[i:i + 8]))
            if i % 1000 == 992:
                print(f"  {i + 8} subjects set up ({time.perf_counter() - t0:.0f}s)", file=sys.stderr)
        total = 0
        batch: list[EventInput] = []
        minutes = int((end - start).total_seconds() // 60)
        for i, key in enumerate(keys):
            for m in range(i % every, minutes, every):
                t = start + timedelta(minutes=m, seconds=7)
                batch.append(EventInput(id=f"{key}-{m}", source="bench", type="tokens", subject=key, time=t,
                                        data={"tokens": (i + m) % 13 + 1, "model": "gpt" if m % 2 else "claude"}))
                if len(batch) == BATCH:
                    total += (await events.ingest_events(rt, batch)).accepted
                    batch = []
        if batch:
            total += (await events.ingest_events(rt, batch)).accepted
        return total
    finally:
        await rt.db.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def count_events(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM events").fetchone()
        return int(row[0]) if row else 0


async def run(args: argparse.Namespace) -> None:
    start = (datetime.now(UTC) - timedelta(days=args.days)).replace(hour=0, minute=0, second=0, microsecond=0)
    end = datetime.now(UTC) - timedelta(minutes=5)
    if args.source_db:
        src_name, src_url = args.source_db, args.pg.rsplit("/", 1)[0] + "/" + args.source_db
    else:
        src_name, src_url = create_db(args.pg)
    dst_name, dst_url = create_db(args.pg)
    server = None
    try:
        t0 = time.perf_counter()
        if args.source_db:
            n_events = count_events(src_url)
            print(f"source {src_name}: {n_events} events", file=sys.stderr)
        else:
            n_events = await fill(src_url, args.subjects, start, end, args.every)
            print(f"source filled: {args.subjects} subjects, {n_events} events from {start:%Y-%m-%d} "
                  f"({time.perf_counter() - t0:.0f}s)", file=sys.stderr)
            if args.fill_only:
                return
        port = free_port()
        env = {**os.environ, "CREDITGATE_DATABASE_URL": src_url, "CREDITGATE_ACCESS_LOG": "false"}
        serve = [sys.executable, "-m", "creditgate.cli", "serve", "--port", str(port), "--log-level", "warning"]
        if args.profile_server:  # pyinstrument prints when the server stops on SIGINT
            serve = [sys.executable, "-m", "pyinstrument", "--no-color", "-o", args.profile_server, *serve[1:]]
        server = subprocess.Popen(serve, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: ASYNC220
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                urllib.request.urlopen(url + "/healthz", timeout=1)  # noqa: ASYNC210
                break
            except OSError:
                time.sleep(0.1)  # noqa: ASYNC251
        rt = Runtime(settings=Settings(database_url=dst_url), db=Database(dst_url))
        try:
            profiler = None
            if args.profile:
                from pyinstrument import Profiler

                profiler = Profiler()
                profiler.start()
            t0 = time.perf_counter()
            last = [t0]

            def pace(n: int) -> None:
                if n % 1000 == 0:
                    t = time.perf_counter()
                    print(f"  {n} entitlements written at {t - t0:.1f}s ({1000 / (t - last[0]):.0f}/s)",
                          file=sys.stderr, flush=True)
                    last[0] = t

            summary = await run_import(rt, Source(Client(endpoint=url)), Options(), after_entitlement=pace)
            took = time.perf_counter() - t0
            if profiler is not None:
                profiler.stop()
                print(profiler.output_text(unicode=False, color=False, show_all=False), file=sys.stderr)
        finally:
            await rt.db.close()
        print("\n".join(summary.lines()[: 1 + 5]))
        print("phases: " + ", ".join(f"{k} {v:.1f}s" for k, v in summary.phase_seconds.items()))
        ents = summary.tallies["entitlements"].imported
        print(f"import of {args.subjects} subjects ({ents} entitlements, {n_events} events in "
              f"{args.days} days): {took:.1f}s, "
              f"{args.subjects / took:.0f} subjects/s, {n_events / took:.0f} usage minutes/s")
    finally:
        if server is not None:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(30)
        if args.keep_source or args.source_db or args.fill_only:
            print(f"source database kept: {src_name}", file=sys.stderr)
        else:
            drop_db(args.pg, src_name)
        drop_db(args.pg, dst_name)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subjects", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--every", type=int, default=60, help="minutes between a subject's events")
    parser.add_argument("--profile", action="store_true", help="profile the import (pyinstrument, stderr)")
    parser.add_argument("--profile-server", metavar="FILE", help="profile the source server into FILE")
    parser.add_argument("--keep-source", action="store_true", help="keep the filled source database")
    parser.add_argument("--fill-only", action="store_true", help="fill a source database, keep it, stop")
    parser.add_argument("--source-db", metavar="NAME", help="import from this kept source database (no fill)")
    parser.add_argument("--pg", default=os.environ.get("CREDITGATE_TEST_PG",
                                                       "postgresql://postgres@127.0.0.1:5432/postgres"))
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
