"""Memory of one worker (issue 10): RSS after ingesting many events and caching many values.

    uv run python scripts/bench_memory.py [--events 1000000] [--subjects 100000] [--metered 10000] [--batch 1000]
                                          [--pg postgresql://postgres@127.0.0.1:5432/postgres]
                                          [--redis redis://127.0.0.1:6379/0]

One uvicorn worker (scripts/_wrk.py's command line) on a throwaway PostgreSQL database and its own
Redis key prefix. Stages, each followed by the worker's VmRSS and VmHWM (peak) from /proc/<pid>/status:
  start     the worker up and answering, one meter, one feature and one entitlement made through GraphQL;
  seeded    `--subjects` subjects: `--metered` of them with a metered entitlement and a grant, the others
            with a boolean one (copies of the first ones' rows, written straight into the database: setup,
            not what is measured);
  ingested  `--events` events through GraphQL ingestEvents in batches of `--batch`, spread evenly over
            the metered subjects and over the last two hours (then ANALYZE, as autovacuum would);
  cold      every subject's value read once through checkAccess batches of 100 pairs (all misses:
            `--subjects` distinct values computed and put into Redis);
  cached    the same batches again (all hits).
Removes the database and the Redis keys at the end.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import psycopg
import redis

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _pg import ThrowawayDatabase
from _wrk import UVICORN, free_port, memory, stop_server, wait_up
from creditgate.adapters.sql.db import migrate
from creditgate.records import new_id

CHECKS = 100  # pairs per checkAccess request


def gql(client: httpx.Client, query: str, **variables: Any) -> Any:
    body = client.post("/graphql", content=orjson.dumps({"query": query, "variables": variables}),
                       headers={"content-type": "application/json"}).json()
    if body.get("errors"):
        raise RuntimeError(body["errors"])
    return body["data"]


def clone(conn: psycopg.Connection[Any], table: str, template: str, columns: dict[str, list[str]]) -> None:
    """Copies of `table`'s row with id `template`, one per element of the lists in `columns` (which
    replace those columns; every other column keeps the template's value)."""
    names = [r[0] for r in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = %s AND table_schema = 'public' "
        "ORDER BY ordinal_position", (table,))]
    new = list(columns)
    select = ", ".join(f"n.{c}" if c in columns else f"t.{c}" for c in names)
    unnest = ", ".join("%s::text[]" for _ in new)
    conn.execute(f"INSERT INTO {table} ({', '.join(names)}) SELECT {select} FROM {table} t, "
                 f"unnest({unnest}) AS n({', '.join(new)}) WHERE t.id = %s",
                 (*columns.values(), template))


def seed(client: httpx.Client, conn: psycopg.Connection[Any], subjects: int, metered: int, start: datetime
         ) -> list[str]:
    """The subject keys: the first `metered` have entitlement "ai" (metered), the others "sso" (boolean)."""
    gql(client, """mutation { createMeter(input: {slug: "tokens", eventType: "prompt", aggregation: SUM,
      valueProperty: "$.tokens"}) { id } }""")
    gql(client, 'mutation { createFeature(input: {key: "ai", name: "AI", meterSlug: "tokens"}) { id } }')
    gql(client, 'mutation { createFeature(input: {key: "sso", name: "SSO"}) { id } }')
    iso = start.isoformat().replace("+00:00", "Z")
    keys = [f"mem-{i:06d}" for i in range(subjects)]
    metered_keys, boolean_keys = keys[:metered], keys[metered:]
    ent = gql(client, "mutation($s: String!, $a: DateTime!) { createEntitlement(subjectKey: $s, input: {type: METERED, "
              "featureKey: \"ai\", usagePeriod: {interval: MONTH, anchor: $a}, measureUsageFrom: $a}) { id } }",
              s=keys[0], a=iso)["createEntitlement"]["id"]
    gql(client, "mutation($s: String!, $e: DateTime!) { createGrant(subjectKey: $s, entitlementIdOrFeatureKey: "
        "\"ai\", input: {amount: 1000, priority: 1, effectiveAt: $e, expiration: {duration: YEAR, count: 1}}) { id } }",
        s=keys[0], e=iso)
    grant = conn.execute("SELECT id FROM grants WHERE entitlement_id = %s", (ent,)).fetchone()
    subject = conn.execute("SELECT id FROM subjects WHERE key = %s", (keys[0],)).fetchone()
    assert grant is not None and subject is not None
    rest = metered_keys[1:]
    ents = [new_id() for _ in rest]
    with conn.transaction():
        clone(conn, "subjects", subject[0], {"id": [new_id() for _ in rest], "key": rest})
        clone(conn, "entitlements", ent, {"id": ents, "subject_key": rest})
        clone(conn, "grants", grant[0], {"id": [new_id() for _ in rest], "entitlement_id": ents})
    if boolean_keys:
        flag = gql(client, 'mutation($s: String!) { createEntitlement(subjectKey: $s, input: {type: BOOLEAN, '
                   'featureKey: "sso"}) { id } }', s=boolean_keys[0])["createEntitlement"]["id"]
        subject = conn.execute("SELECT id FROM subjects WHERE key = %s", (boolean_keys[0],)).fetchone()
        assert subject is not None
        rest = boolean_keys[1:]
        with conn.transaction():
            clone(conn, "subjects", subject[0], {"id": [new_id() for _ in rest], "key": rest})
            clone(conn, "entitlements", flag, {"id": [new_id() for _ in rest], "subject_key": rest})
    return keys


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--subjects", type=int, default=100_000)
    ap.add_argument("--metered", type=int, default=10_000, help="subjects with a metered entitlement (the events')")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--pg", default=os.environ.get("CREDITGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--redis", default=os.environ.get("CREDITGATE_TEST_REDIS", "redis://127.0.0.1:6379/0"))
    args = ap.parse_args()
    db = ThrowawayDatabase(args.pg)
    prefix = f"cgmem:{uuid.uuid4().hex[:8]}:"
    url = db.url
    r = redis.Redis.from_url(args.redis)
    proc: subprocess.Popen[bytes] | None = None
    rows: list[str] = []
    log = tempfile.TemporaryFile()  # noqa: SIM115 (the worker's stderr, shown if the run fails; closed at exit)

    def stage(label: str, seconds: float | None, what: str) -> None:
        assert proc is not None
        rss, hwm = memory(proc.pid)
        took = "" if seconds is None else f"{seconds:.1f} s"
        rows.append(f"| {label} | {rss:.1f} | {hwm:.1f} | {took} | {what} |")
        print(rows[-1], file=sys.stderr, flush=True)

    ok = False
    try:
        migrate(url)
        port = free_port()
        env = {**os.environ, "CREDITGATE_DATABASE_URL": url, "CREDITGATE_REDIS_URL": args.redis,
               "CREDITGATE_REDIS_PREFIX": prefix, "CREDITGATE_API_KEYS": "", "CREDITGATE_TOKEN_SECRET": "bench"}
        # one worker: uvicorn runs the app in this very process (no supervisor), so proc.pid is the worker
        proc = subprocess.Popen([*UVICORN, "--port", str(port), "--factory", "creditgate.app:create_app"], env=env,
                                stderr=log)
        base = f"http://127.0.0.1:{port}"
        wait_up(base + "/healthz")
        stage("start", None, "the worker up, empty database")
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        with httpx.Client(base_url=base, timeout=600) as client, \
                psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
            t0 = time.perf_counter()
            metered = min(args.metered, args.subjects)
            keys = seed(client, conn, args.subjects, metered, now - timedelta(days=1))
            stage("seeded", time.perf_counter() - t0, f"{args.subjects:,} subjects: {metered:,} with a metered "
                  f"entitlement, {args.subjects - metered:,} with a boolean one")

            ingest = "mutation($e: [CloudEventInput!]!) { ingestEvents(events: $e) { accepted } }"
            batches = (args.events + args.batch - 1) // args.batch
            first = now - timedelta(hours=2)
            step = timedelta(hours=2) / max(batches, 1)
            t0 = time.perf_counter()
            done = 0
            for k in range(batches):
                n = min(args.batch, args.events - done)
                at = (first + step * k).isoformat().replace("+00:00", "Z")
                events = [{"id": f"m{done + j}", "source": "bench", "type": "prompt",
                           "subject": keys[(done + j) % metered], "time": at, "data": {"tokens": 0.25}}
                          for j in range(n)]
                assert gql(client, ingest, e=events)["ingestEvents"]["accepted"] == n
                done += n
                if (k + 1) % max(batches // 4, 1) == 0 and k + 1 < batches:
                    stage(f"ingest {done:,}", time.perf_counter() - t0, "")
            took = time.perf_counter() - t0
            conn.execute("ANALYZE")  # as autovacuum would have by now (stale statistics make usage reads scans)
            stage("ingested", took, f"{done:,} events in batches of {args.batch} ({done / took:,.0f} events/s)")

            check = "query($c: [AccessCheckInput!]!) { checkAccess(checks: $c) { hasAccess reason balance } }"
            for label in ("cold", "cached"):
                t0 = time.perf_counter()
                for i in range(0, len(keys), CHECKS):
                    got = gql(client, check, c=[{"subjectKey": s, "featureKey": "ai" if n < metered else "sso"}
                                                for n, s in enumerate(keys[i:i + CHECKS], i)])
                    assert all(a["hasAccess"] for a in got["checkAccess"])
                took = time.perf_counter() - t0
                cached = sum(1 for _ in r.scan_iter(match=prefix + "*:a:*", count=10_000)) if label == "cold" else None
                stage(label, took, f"{len(keys):,} values read through checkAccess x{CHECKS}"
                      + (f"; {cached:,} value entries in Redis" if cached is not None else " (all hits)"))
        ok = True
        print("| stage | VmRSS MB | VmHWM MB | took | what |")
        print("|---|---|---|---|---|")
        print("\n".join(rows))
    finally:
        stop_server(proc, log, show_log=not ok)
        for key in r.scan_iter(match=prefix + "*", count=10_000):
            r.delete(key)
        db.drop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
