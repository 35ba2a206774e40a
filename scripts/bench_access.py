"""Access-check throughput and latency: the service under uvicorn (one worker, PostgreSQL + Redis),
load from wrk in another process.

    uv run python scripts/bench_access.py [--seconds 10] [--pg postgresql://postgres@127.0.0.1:5432/postgres]
                                          [--redis redis://127.0.0.1:6379/0]

(1) cached entitlementValue at 32 connections; (2) the floor: a bare Starlette endpoint doing one
Redis GET of a value of the same size; (3) checkAccess with 1/10/100/1000 pairs, all cached;
(4) cold reads (empty cache) of an entitlement with 30 days of minute usage and 20 grants.
Creates a throwaway database and Redis prefix, removes both at the end.
"""

from __future__ import annotations

import argparse
import os
import socket
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
import psycopg
import redis

from creditgate.adapters.sql.db import migrate

FLOOR_KEY = "bench:floor"
LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = %s
done = function(summary, latency, requests)
  io.write(string.format("RESULT %%d %%f %%f %%f %%f %%d\\n", summary.requests, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.timeout))
end
"""


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str) -> None:
    for _ in range(200):
        try:
            httpx.get(url, timeout=0.5)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not start")


def wrk(url: str, body: bytes, seconds: int, conns: int = 32) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(LUA % ("[==[" + body.decode() + "]==]"))
        script = f.name
    out = subprocess.run(["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "-s", script, url],
                         capture_output=True, text=True, check=True).stdout
    os.unlink(script)
    line = next(x for x in out.splitlines() if x.startswith("RESULT"))
    n, dur, p50, p95, p99, errors = line.split()[1:]
    return {"rps": int(n) / float(dur), "p50": float(p50), "p95": float(p95), "p99": float(p99),
            "errors": int(errors)}


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
    ap.add_argument("--pg", default=os.environ.get("CREDITGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--redis", default=os.environ.get("CREDITGATE_TEST_REDIS", "redis://127.0.0.1:6379/0"))
    args = ap.parse_args()
    name = f"creditgate_bench_{uuid.uuid4().hex[:10]}"
    prefix = f"cgbench:{uuid.uuid4().hex[:8]}:"
    with psycopg.connect(args.pg, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = args.pg.rsplit("/", 1)[0] + "/" + name
    r = redis.Redis.from_url(args.redis)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        migrate(url)
        port, floor_port = free_port(), free_port()
        env = {**os.environ, "CREDITGATE_DATABASE_URL": url, "CREDITGATE_REDIS_URL": args.redis,
               "CREDITGATE_REDIS_PREFIX": prefix, "CREDITGATE_API_KEYS": "", "CREDITGATE_TOKEN_SECRET": "bench",
               "BENCH_REDIS": args.redis}
        uv = [sys.executable, "-m", "uvicorn", "--workers", "1", "--host", "127.0.0.1", "--log-level", "warning",
              "--no-access-log", "--loop", "uvloop", "--http", "httptools"]
        procs.append(subprocess.Popen([*uv, "--port", str(port), "--factory", "creditgate.app:create_app"], env=env))
        procs.append(subprocess.Popen([*uv, "--port", str(floor_port), "--factory", "--app-dir",
                                       os.path.dirname(os.path.abspath(__file__)), "bench_access:floor_app"], env=env))
        base = f"http://127.0.0.1:{port}"
        wait_up(base + "/healthz")
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
            one = wrk(base + "/graphql", body, args.seconds)
            floor = wrk(f"http://127.0.0.1:{floor_port}/", body, args.seconds)
            rows.append(f"| (1) entitlementValue, cached, 32 conns | {one['rps']:,.0f} req/s | {one['p50']:.2f} | "
                        f"{one['p95']:.2f} | {one['p99']:.2f} | ratio to floor {one['rps'] / floor['rps']:.2f} |")
            rows.append(f"| (2) floor: Starlette + one Redis GET ({len(resp)} B) | {floor['rps']:,.0f} req/s | "
                        f"{floor['p50']:.2f} | {floor['p95']:.2f} | {floor['p99']:.2f} | |")
            check_q = ("query($c: [AccessCheckInput!]!) { checkAccess(checks: $c) { hasAccess reason balance } }")
            for n in (1, 10, 100, 1000):
                checks = [{"subjectKey": f"cust-{i:04d}", "featureKey": "ai"} for i in range(n)]
                payload = orjson.dumps({"query": check_q, "variables": {"c": checks}})
                client.post("/graphql", content=payload, headers={"content-type": "application/json"})  # warm
                res = wrk(base + "/graphql", payload, args.seconds, conns=32 if n < 1000 else 8)
                rows.append(f"| (3) checkAccess x{n}, cached | {res['rps'] * n:,.0f} checks/s ({res['rps']:,.0f} req/s)"
                            f" | {res['p50']:.2f} | {res['p95']:.2f} | {res['p99']:.2f} | |")
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
        print(f"errors: value {one['errors']}, floor {floor['errors']}", file=sys.stderr)
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        for key in r.scan_iter(match=prefix + "*", count=1000):
            r.delete(key)
        r.delete(FLOOR_KEY)
        with psycopg.connect(args.pg, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
