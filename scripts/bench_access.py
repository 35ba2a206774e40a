"""Access-check throughput and latency: the service under uvicorn (one worker, PostgreSQL + Redis),
load from wrk in another process.

    uv run python scripts/bench_access.py [--seconds 10] [--rounds 1] [--baseline REF]
                                          [--pg postgresql://postgres@127.0.0.1:5432/postgres]
                                          [--redis redis://127.0.0.1:6379/0]

(1) cached entitlementValue at 32 connections; (2) the floor: a bare Starlette endpoint doing one
Redis GET of a value of the same size; (3) checkAccess with 1/10/100/1000 pairs, all cached;
(4) cold reads (empty cache) of an entitlement with 30 days of minute usage and 20 grants.
Creates a throwaway database and Redis prefix, removes both at the end.

--rounds N runs (1)-(3) N times, alternating the servers, and prints the median of each.
--baseline REF also serves git REF's code (`git archive REF src` into a temporary directory, first on
PYTHONPATH) as a second worker on the same database with its own Redis prefix, and runs (1) and (3)
against both, one after the other in each round: before/after figures under the same load.
--code REF serves REF's code (the same way) instead of the working tree's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import redis

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _pg import ThrowawayDatabase
from _wrk import UVICORN, free_port, wait_up, wrk
from creditgate.adapters.sql.db import migrate

FLOOR_KEY = "bench:floor"


# The floor: one Redis GET per request, nothing else (run by uvicorn as bench_access:floor_app).
def floor_app() -> Any:
    import redis.asyncio as aredis
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    client = aredis.Redis.from_url(os.environ["BENCH_REDIS"])

    async def get(request: Request) -> Response:
        await request.body()
        value = await client.get(FLOOR_KEY)
        return Response(value, media_type="application/json")

    return Starlette(routes=[Route("/", get, methods=["GET", "POST"])])


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """The run with the median throughput (its latencies with it)."""
    return sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]


def export_src(ref: str, into: str) -> str:
    """`ref`'s src/ (git archive) under `into`; the directory to put first on PYTHONPATH."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    archive = subprocess.run(["git", "-C", root, "archive", ref, "src"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", into], input=archive, check=True)
    return os.path.join(into, "src")


def gql(client: httpx.Client, query: str, **variables: Any) -> Any:
    body = client.post("/graphql", json={"query": query, "variables": variables}).json()
    if body.get("errors"):
        raise RuntimeError(body["errors"])
    return body["data"]


def seed(client: httpx.Client, subjects: int) -> str:
    gql(client, """mutation { createMeter(input: {slug: "tokens", eventType: "prompt", aggregation: SUM,
      valueProperty: "$.tokens"}) { id } }""")
    gql(client, 'mutation { createFeature(input: {key: "ai", name: "AI", meterSlug: "tokens"}) { id } }')
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now - timedelta(days=30)
    iso = lambda t: t.isoformat().replace("+00:00", "Z")  # noqa: E731
    ent = ("mutation($s: String!, $a: DateTime!) { createEntitlement(subjectKey: $s, input: {type: METERED, "
           "featureKey: \"ai\", usagePeriod: {interval: YEAR, anchor: $a}, measureUsageFrom: $a}) { id } }")
    grant = ("mutation($s: String!, $e: DateTime!, $p: Int!) { createGrant(subjectKey: $s, entitlementIdOrFeatureKey: "
             "\"ai\", input: {amount: 100000, priority: $p, effectiveAt: $e, expiration: {duration: YEAR, count: 1}})"
             " { id } }")
    heavy = ""
    for i in range(subjects):
        s = f"cust-{i:04d}"
        eid = gql(client, ent, s=s, a=iso(start))["createEntitlement"]["id"]
        gql(client, grant, s=s, e=iso(start), p=1)
        if i == 0:
            heavy = s
            for g in range(19):
                gql(client, grant, s=s, e=iso(start + timedelta(hours=36 * g + 7)), p=g % 5)
        _ = eid
    # 30 days of minute usage for the heavy subject
    minutes = [start + timedelta(minutes=m) for m in range(30 * 24 * 60)]
    ingest = "mutation($e: [CloudEventInput!]!) { ingestEvents(events: $e) { accepted } }"
    for k in range(0, len(minutes), 1000):
        batch = [{"id": f"h{k + j}", "source": "bench", "type": "prompt", "subject": heavy,
                  "time": iso(t + timedelta(seconds=5)), "data": {"tokens": 0.5}}
                 for j, t in enumerate(minutes[k:k + 1000])]
        gql(client, ingest, e=batch)
    return heavy


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--baseline", metavar="REF", help="also serve this git ref's code and compare (1) and (3)")
    ap.add_argument("--code", metavar="REF", help="serve this git ref's code instead of the working tree")
    ap.add_argument("--pg", default=os.environ.get("CREDITGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--redis", default=os.environ.get("CREDITGATE_TEST_REDIS", "redis://127.0.0.1:6379/0"))
    args = ap.parse_args()
    db = ThrowawayDatabase(args.pg)
    prefix = f"cgbench:{uuid.uuid4().hex[:8]}:"
    url = db.url
    r = redis.Redis.from_url(args.redis)
    procs: list[subprocess.Popen[bytes]] = []
    old_src = tempfile.mkdtemp(prefix="bench_access_") if args.baseline else None
    new_src = tempfile.mkdtemp(prefix="bench_access_") if args.code else None
    try:
        migrate(url)
        port, floor_port = free_port(), free_port()
        env = {**os.environ, "CREDITGATE_DATABASE_URL": url, "CREDITGATE_REDIS_URL": args.redis,
               "CREDITGATE_REDIS_PREFIX": prefix, "CREDITGATE_API_KEYS": "", "CREDITGATE_TOKEN_SECRET": "bench",
               "BENCH_REDIS": args.redis}
        new_env = {**env, "PYTHONPATH": export_src(args.code, new_src)} if args.code and new_src else env
        procs.append(subprocess.Popen([*UVICORN, "--port", str(port), "--factory", "creditgate.app:create_app"],
                                      env=new_env))
        procs.append(subprocess.Popen([*UVICORN, "--port", str(floor_port), "--factory", "--app-dir",
                                       os.path.dirname(os.path.abspath(__file__)), "bench_access:floor_app"], env=env))
        servers = {"": f"http://127.0.0.1:{port}"}  # label -> base URL; "" is this checkout
        if args.baseline and old_src:
            old_port = free_port()
            old_env = {**env, "PYTHONPATH": export_src(args.baseline, old_src),
                       "CREDITGATE_REDIS_PREFIX": prefix + "base:"}
            procs.append(subprocess.Popen([*UVICORN, "--port", str(old_port), "--factory", "creditgate.app:create_app"],
                                          env=old_env))
            servers[f" [{args.baseline}]"] = f"http://127.0.0.1:{old_port}"
        base = servers[""]
        for b in servers.values():
            wait_up(b + "/healthz")
        wait_up(f"http://127.0.0.1:{floor_port}/")
        with httpx.Client(base_url=base, timeout=120) as client:
            t0 = time.perf_counter()
            heavy = seed(client, 1000)
            print(f"seeded in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
            value_q = ('query($s: String!) { entitlementValue(subjectKey: $s, entitlementIdOrFeatureKey: "ai") '
                       "{ hasAccess balance usage overage } }")
            light = "cust-0500"
            resp = client.post("/graphql", json={"query": value_q, "variables": {"s": light}}).content
            r.set(FLOOR_KEY, resp)
            rows: list[str] = []
            body = orjson.dumps({"query": value_q, "variables": {"s": light}})
            check_q = ("query($c: [AccessCheckInput!]!) { checkAccess(checks: $c) { hasAccess reason balance } }")
            payloads = {n: orjson.dumps({"query": check_q, "variables": {"c": [
                {"subjectKey": f"cust-{i:04d}", "featureKey": "ai"} for i in range(n)]}}) for n in (1, 10, 100, 1000)}
            for b in servers.values():  # warm every cache
                for payload in (body, *payloads.values()):
                    assert httpx.post(b + "/graphql", content=payload, timeout=120,
                                      headers={"content-type": "application/json"}).status_code == 200
            runs: dict[str, list[dict[str, float]]] = {}
            errors: dict[str, float] = {}
            for _ in range(args.rounds):  # each round: every server once, one after the other
                for label, b in servers.items():
                    runs.setdefault("one" + label, []).append(wrk(b + "/graphql", body, args.seconds))
                runs.setdefault("floor", []).append(wrk(f"http://127.0.0.1:{floor_port}/", body, args.seconds))
                for n, payload in payloads.items():
                    for label, b in servers.items():
                        runs.setdefault(f"x{n}{label}", []).append(
                            wrk(b + "/graphql", payload, args.seconds, conns=32 if n < 1000 else 8))
            for key, got in runs.items():
                errors[key] = sum(g["errors"] for g in got)
            floor = median_run(runs["floor"])
            for label in servers:
                one = median_run(runs["one" + label])
                rows.append(f"| (1) entitlementValue, cached, 32 conns{label} | {one['rps']:,.0f} req/s | "
                            f"{one['p50']:.2f} | {one['p95']:.2f} | {one['p99']:.2f} | "
                            f"ratio to floor {one['rps'] / floor['rps']:.2f} |")
            rows.append(f"| (2) floor: Starlette + one Redis GET ({len(resp)} B) | {floor['rps']:,.0f} req/s | "
                        f"{floor['p50']:.2f} | {floor['p95']:.2f} | {floor['p99']:.2f} | |")
            for n in payloads:
                for label in servers:
                    res = median_run(runs[f"x{n}{label}"])
                    note = ""
                    if label:
                        note = f"this checkout / {args.baseline}: " \
                               f"{median_run(runs[f'x{n}'])['rps'] / res['rps']:.2f}x"
                    rows.append(f"| (3) checkAccess x{n}, cached{label} | {res['rps'] * n:,.0f} checks/s "
                                f"({res['rps']:,.0f} req/s) | {res['p50']:.2f} | {res['p95']:.2f} | {res['p99']:.2f} | "
                                f"{note} |")
            cold: list[float] = []
            heavy_body = {"query": value_q, "variables": {"s": heavy}}
            for _ in range(30):
                for key in r.scan_iter(match=prefix + "*", count=1000):
                    r.delete(key)
                t1 = time.perf_counter()
                got = client.post("/graphql", json=heavy_body).json()
                cold.append((time.perf_counter() - t1) * 1000)
                assert not got.get("errors"), got
            first = cold[0]
            rest = sorted(cold[1:])
            rows.append(f"| (4) cold entitlementValue, 30 days of minutes, 20 grants | first {first:.1f} ms | "
                        f"{statistics.median(rest):.2f} | {rest[int(len(rest) * 0.95) - 1]:.2f} | {rest[-1]:.2f} | "
                        "after the first read, from snapshots |")
        print("| case | throughput | p50 ms | p95 ms | p99/max ms | note |")
        print("|---|---|---|---|---|---|")
        print("\n".join(rows))
        print("wrk errors: " + ", ".join(f"{k} {v:.0f}" for k, v in errors.items()), file=sys.stderr)
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        for key in r.scan_iter(match=prefix + "*", count=1000):
            r.delete(key)
        r.delete(FLOOR_KEY)
        for tmp in (old_src, new_src):
            if tmp:
                shutil.rmtree(tmp, ignore_errors=True)
        db.drop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
