"""A whole installation at scale (issue 13): N subjects, a month of usage, then what reads, writes and storage cost.

    uv run python scripts/simulate.py [--subjects 1000000] [--events 20000000] [--keep] [--workers 2] [--senders 3]
                                      [--samples 2000] [--pg postgresql://postgres@127.0.0.1:5432/postgres]
                                      [--redis redis://127.0.0.1:6379/13] [--own-pg]

Everything goes through the real service paths of `--workers` uvicorn workers (scripts/_wrk.py's command line) on a
throwaway PostgreSQL database (created here, dropped at the end; with `--own-pg` on a private PostgreSQL server
started here with the settings docs/scaling.md recommends, scripts/_pg.py's TUNED, and removed at the end)
and Redis under a key prefix of its own (db 13 by default):
  provision  one meter and three features (sso BOOLEAN, plan STATIC, ai METERED); per subject three
             entitlements through createEntitlements (1000 inputs a batch; METERED monthly, anchored and
             measured from 27 days ago so the usage falls in the current period), then two grants on `ai`
             through createGrants (1000 a batch);
  ingest     `--events` events through ingestEvents (1000 a batch), in time order over those 27 days, each
             for a random subject, `--senders` concurrent senders; then ANALYZE, as autovacuum would;
  reads      `--samples` random subjects, one checkAccess of their three features per request, one request
             at a time: first cold (cache miss, no snapshot), then the same again warm (cached);
  sizes      every table with its indexes and TOAST (pg_total_relation_size; partitions counted under their
             parent), Redis memory (INFO memory is the whole server's: its change is shown next to the
             MEMORY USAGE of this run's keys), each worker's VmRSS/VmHWM.
Prints a markdown summary and a linear extrapolation of the run time to the defaults. `--keep` leaves the
database and the Redis keys in place (their names are printed).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import psycopg
import redis

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _pg import OwnCluster, ThrowawayDatabase
from _wrk import UVICORN, free_port, memory, stop_server, wait_up
from creditgate.adapters.sql.db import migrate

BATCH = 1000
SPAN = timedelta(days=27)  # the usage month: inside one monthly usage period whatever the calendar month
FEATURES = ("sso", "plan", "ai")
CREATE_ENTS = "mutation($i: [BatchEntitlementInput!]!) { createEntitlements(inputs: $i) { id } }"
CREATE_GRANTS = "mutation($i: [BatchGrantInput!]!) { createGrants(inputs: $i) { id } }"
INGEST = "mutation($e: [CloudEventInput!]!) { ingestEvents(events: $e) { accepted } }"
CHECK = """query($c: [AccessCheckInput!]!) { checkAccess(checks: $c) {
  featureKey hasAccess reason balance usage config } }"""


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def workers(pid: int) -> list[int]:
    """The worker processes: uvicorn's children with --workers > 1, else the process itself."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = [int(x) for x in f.read().split()]
    except OSError:
        kids = []
    out = []
    for kid in kids:  # not multiprocessing's resource tracker
        try:
            with open(f"/proc/{kid}/cmdline", "rb") as f:
                if b"resource_tracker" not in f.read():
                    out.append(kid)
        except OSError:
            pass
    return out or [pid]


class Bar:
    """A carriage-return progress bar on stderr (no tqdm in the dependencies)."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.done, self.t0, self.shown = label, total, 0, time.perf_counter(), 0.0
        self.lock = threading.Lock()

    def add(self, n: int) -> None:
        with self.lock:
            self.done += n
            now = time.perf_counter()
            if now - self.shown >= 0.5 or self.done >= self.total:
                self.shown = now
                took = now - self.t0
                rate = self.done / took if took else 0.0
                left = (self.total - self.done) / rate if rate else 0.0
                width = 30
                full = int(width * self.done / max(self.total, 1))
                sys.stderr.write(f"\r{self.label:10} [{'#' * full}{'.' * (width - full)}] {self.done:,}/{self.total:,} "
                                 f"{rate:,.0f}/s, {took:,.0f} s, ~{left:,.0f} s left   ")
                sys.stderr.flush()

    def close(self) -> float:
        sys.stderr.write("\n")
        return time.perf_counter() - self.t0


class Api:
    """GraphQL over one HTTP/1.1 connection per thread."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.local = threading.local()

    def __call__(self, query: str, **variables: Any) -> Any:
        client = getattr(self.local, "client", None)
        if client is None:
            client = self.local.client = httpx.Client(base_url=self.base, timeout=600)
        resp = client.post("/graphql", content=orjson.dumps({"query": query, "variables": variables}),
                           headers={"content-type": "application/json"})
        body = orjson.loads(resp.content)
        if body.get("errors"):
            raise RuntimeError(body["errors"])
        return body["data"]


def chunks(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for x in items:
        batch.append(x)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def run_batches(label: str, total: int, batches: Iterator[list[Any]], send: Callable[[list[Any]], None],
                senders: int) -> float:
    """Send every batch with `senders` threads (at most 2 x senders batches built ahead); the seconds taken."""
    bar = Bar(label, total)
    with ThreadPoolExecutor(senders) as pool:
        pending: list[Any] = []
        for batch in batches:
            pending.append(pool.submit(lambda b: (send(b), bar.add(len(b))), batch))
            if len(pending) >= 2 * senders:
                pending.pop(0).result()
        for f in pending:
            f.result()
    return bar.close()


def provision(api: Api, keys: Sequence[str], start: datetime, senders: int) -> tuple[float, float]:
    """Three entitlements and two grants per subject; (seconds for the entitlements, for the grants)."""
    api('mutation { createMeter(input: {slug: "tokens", eventType: "prompt", aggregation: SUM, '
        'valueProperty: "$.tokens"}) { id } }')
    api('mutation { createFeature(input: {key: "ai", name: "AI tokens", meterSlug: "tokens"}) { id } }')
    api('mutation { createFeature(input: {key: "sso", name: "SSO"}) { id } }')
    api('mutation { createFeature(input: {key: "plan", name: "Plan"}) { id } }')
    at = iso(start)
    metered = {"type": "METERED", "featureKey": "ai", "usagePeriod": {"interval": "MONTH", "anchor": at},
               "measureUsageFrom": at}
    kinds = [{"type": "BOOLEAN", "featureKey": "sso"},
             {"type": "STATIC", "featureKey": "plan", "config": {"seats": 5, "tier": "pro"}}, metered]

    def ents() -> Iterator[dict[str, Any]]:
        for k in keys:
            for inp in kinds:
                yield {"subjectKey": k, "input": inp}

    def send_ents(batch: list[Any]) -> None:
        assert len(api(CREATE_ENTS, i=batch)["createEntitlements"]) == len(batch)
    took_ents = run_batches("entitle", 3 * len(keys), chunks(ents(), BATCH), send_ents, senders)
    monthly = {"amount": 1000, "priority": 1, "effectiveAt": at, "expiration": {"duration": "YEAR", "count": 1},
               "recurrence": {"interval": "MONTH", "anchor": at}, "maxRolloverAmount": 200}
    topup = {"amount": 250, "priority": 2, "effectiveAt": at, "expiration": {"duration": "MONTH", "count": 2}}

    def grants() -> Iterator[dict[str, Any]]:
        for k in keys:
            for inp in (monthly, topup):
                yield {"subjectKey": k, "entitlementIdOrFeatureKey": "ai", "input": inp}

    def send_grants(batch: list[Any]) -> None:
        assert len(api(CREATE_GRANTS, i=batch)["createGrants"]) == len(batch)
    took_grants = run_batches("grant", 2 * len(keys), chunks(grants(), BATCH), send_grants, senders)
    return took_ents, took_grants


def ingest(api: Api, keys: Sequence[str], events: int, start: datetime, end: datetime, senders: int,
           tail: list[float]) -> float:
    """`events` events in time order over [start, end), random subjects; the seconds taken. `tail` gets the
    events/s of the last tenth of the batches (the rate at the final size)."""
    batches = (events + BATCH - 1) // BATCH
    step = (end - start) / max(batches, 1)
    rng = random.Random(13)
    n_keys = len(keys)
    last = max(batches - batches // 10, 0)
    tail_t: list[float] = []

    def made() -> Iterator[list[dict[str, Any]]]:
        done = 0
        step_s = max(int(step.total_seconds()), 1)
        for k in range(batches):
            n = min(BATCH, events - done)
            base = start + step * k  # each batch covers its own stretch of the month, at random seconds
            yield [{"id": f"s{done + j}", "source": "sim", "type": "prompt", "subject": keys[rng.randrange(n_keys)],
                    "time": iso(base + timedelta(seconds=rng.randrange(step_s))),
                    "data": {"tokens": rng.randint(1, 10)}} for j in range(n)]
            done += n
            if k == last:
                tail_t.append(time.perf_counter())

    def send(batch: list[Any]) -> None:
        assert api(INGEST, e=batch)["ingestEvents"]["accepted"] == len(batch)
    took = run_batches("ingest", events, made(), send, senders)
    if tail_t and batches > 10:
        tail.append((events - last * BATCH) / (time.perf_counter() - tail_t[0]))
    return took


def pct(xs: Sequence[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


def reads(api: Api, keys: Sequence[str], samples: int) -> dict[str, list[float]]:
    """checkAccess latencies in ms, one request of three pairs per random subject: cold, then warm."""
    picked = random.Random(7).sample(list(keys), min(samples, len(keys)))
    out: dict[str, list[float]] = {"cold": [], "warm": []}
    for label in ("cold", "warm"):
        bar = Bar(label, len(picked))
        for k in picked:
            t0 = time.perf_counter()
            got = api(CHECK, c=[{"subjectKey": k, "featureKey": f} for f in FEATURES])["checkAccess"]
            out[label].append((time.perf_counter() - t0) * 1000)
            assert [a["hasAccess"] for a in got] == [True] * 3, got
            bar.add(1)
        bar.close()
    return out


SIZES = """SELECT coalesce(pg_partition_root(c.oid), c.oid)::regclass::text AS name,
  count(*) AS parts, sum(pg_total_relation_size(c.oid)) AS total, sum(pg_relation_size(c.oid)) AS heap,
  sum(pg_indexes_size(c.oid)) AS indexes, sum(greatest(c.reltuples, 0))::bigint AS rows
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind = 'r' GROUP BY 1 ORDER BY 3 DESC"""


def mb(n: float) -> str:
    return f"{n / 2**20:,.1f}"


def redis_keys(r: redis.Redis, prefix: str) -> Iterator[list[bytes]]:
    """This run's keys, a SCAN page at a time."""
    cursor = 0
    while True:
        cursor, page = r.scan(cursor, match=prefix + "*", count=10_000)
        if page:
            yield page
        if cursor == 0:
            return


def redis_usage(r: redis.Redis, prefix: str) -> tuple[int, int, bool]:
    """(keys of this run, their MEMORY USAGE in bytes, whether the server holds other keys too)."""
    keys = used = 0
    for page in redis_keys(r, prefix):
        pipe = r.pipeline(transaction=False)
        for key in page:
            pipe.memory_usage(key, samples=0)
        keys += len(page)
        used += sum(int(x or 0) for x in pipe.execute())
    total = sum(int(v.get("keys", 0)) for v in r.info("keyspace").values() if isinstance(v, dict))
    return keys, used, total > keys


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subjects", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=20_000_000)
    ap.add_argument("--keep", action="store_true", help="leave the database and the Redis keys")
    ap.add_argument("--workers", type=int, default=2, help="uvicorn workers (creditgate serve --workers)")
    ap.add_argument("--senders", type=int, default=3, help="concurrent requests while provisioning and ingesting")
    ap.add_argument("--samples", type=int, default=2000, help="random subjects read cold, then warm")
    ap.add_argument("--pg", default=os.environ.get("CREDITGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--redis", default=os.environ.get("CREDITGATE_TEST_REDIS", "redis://127.0.0.1:6379/13"))
    ap.add_argument("--own-pg", action="store_true",
                    help="run on a private PostgreSQL server with docs/scaling.md's settings instead of --pg")
    args = ap.parse_args()
    cluster = OwnCluster(free_port()) if args.own_pg else None
    if cluster is not None:
        args.pg = cluster.url
    db = ThrowawayDatabase(args.pg, prefix="creditgate_sim")
    url, prefix = db.url, f"cgsim:{db.name.rsplit('_', 1)[1]}:"
    r = redis.Redis.from_url(args.redis)
    redis_before = int(r.info("memory")["used_memory"])
    proc: subprocess.Popen[bytes] | None = None
    log = tempfile.TemporaryFile()  # noqa: SIM115 (the worker's stderr, shown if the run fails)
    rss: list[str] = []
    out: list[str] = []
    ok = False
    t_all = time.perf_counter()

    def stage(label: str) -> None:
        assert proc is not None
        each = [memory(p) for p in workers(proc.pid)]
        now = " / ".join(f"{m[0]:,.1f}" for m in each)
        peak = " / ".join(f"{m[1]:,.1f}" for m in each)
        rss.append(f"| {label} | {now} | {peak} |")
        print(f"workers after {label}: VmRSS {now} MB, VmHWM {peak} MB", file=sys.stderr, flush=True)

    try:
        migrate(url)
        port = free_port()
        env = {**os.environ, "CREDITGATE_DATABASE_URL": url, "CREDITGATE_REDIS_URL": args.redis,
               "CREDITGATE_REDIS_PREFIX": prefix, "CREDITGATE_API_KEYS": "", "CREDITGATE_TOKEN_SECRET": "sim"}
        command = [*UVICORN, "--port", str(port), "--factory", "creditgate.app:create_app"]
        command[command.index("--workers") + 1] = str(args.workers)
        proc = subprocess.Popen(command, env=env, stderr=log)
        base = f"http://127.0.0.1:{port}"
        wait_up(base + "/healthz")
        while len(workers(proc.pid)) < args.workers:
            time.sleep(0.1)
        stage("start")
        api = Api(base)
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        start = now - SPAN
        width = len(str(args.subjects - 1))
        keys = [f"sim-{i:0{width}d}" for i in range(args.subjects)]
        took_ents, took_grants = provision(api, keys, start, args.senders)
        stage("provisioning")
        tail: list[float] = []
        took_ingest = ingest(api, keys, args.events, start, now - timedelta(minutes=1), args.senders, tail)
        stage("ingest")
        dsn = url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn, autocommit=True) as conn:
            t0 = time.perf_counter()
            conn.execute("ANALYZE")
            took_analyze = time.perf_counter() - t0
        lat = reads(api, keys, args.samples)
        stage(f"{args.samples:,} cold + warm reads")
        with psycopg.connect(dsn, autocommit=True) as conn:
            sizes = conn.execute(SIZES).fetchall()
            db_total = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        assert db_total is not None
        keys_n, keys_bytes, shared = redis_usage(r, prefix)
        redis_after = int(r.info("memory")["used_memory"])
        took_all = time.perf_counter() - t_all

        n_ent, n_grant = 3 * args.subjects, 2 * args.subjects
        out += [f"### {args.subjects:,} subjects, {args.events:,} events ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
                f"load {os.getloadavg()[0]:.1f})", "",
                f"`uv run python scripts/simulate.py --subjects {args.subjects} --events {args.events} "
                f"--workers {args.workers} --senders {args.senders} --samples {args.samples}"
                + (" --own-pg" if cluster else "") + "`", "",
                "| phase | count | seconds | per second |", "|---|---|---|---|",
                f"| createEntitlements x{BATCH} | {n_ent:,} | {took_ents:,.1f} | {n_ent / took_ents:,.0f} |",
                f"| createGrants x{BATCH} | {n_grant:,} | {took_grants:,.1f} | {n_grant / took_grants:,.0f} |",
                f"| ingestEvents x{BATCH} | {args.events:,} | {took_ingest:,.1f} | {args.events / took_ingest:,.0f} "
                + (f"(last tenth: {tail[0]:,.0f}) |" if tail else "|"),
                f"| ANALYZE | | {took_analyze:,.1f} | |",
                f"| whole run | | {took_all:,.1f} | |", "",
                "| checkAccess, 3 pairs, 1 request at a time | p50 ms | p95 ms | p99 ms | mean ms |",
                "|---|---|---|---|---|"]
        for label, xs in lat.items():
            out.append(f"| {label} ({len(xs):,} random subjects) | {pct(xs, 50):.2f} | {pct(xs, 95):.2f} | "
                       f"{pct(xs, 99):.2f} | {sum(xs) / len(xs):.2f} |")
        out += ["", f"PostgreSQL database: {mb(db_total[0])} MB", "",
                "| table | partitions | total MB | heap MB | indexes MB | rows (estimate) | bytes per row |",
                "|---|---|---|---|---|---|---|"]
        for tname, parts, total, heap, indexes, rows in sizes:
            per = f"{total / rows:,.0f}" if rows else ""
            out.append(f"| {tname} | {parts if parts > 1 else ''} | {mb(total)} | {mb(heap)} | {mb(indexes)} | "
                       f"{rows:,} | {per} |")
        out += ["", f"Redis: {keys_n:,} keys of this run, MEMORY USAGE {mb(keys_bytes)} MB; used_memory "
                f"{mb(redis_before)} -> {mb(redis_after)} MB (the whole server"
                + (", shared with other keys: the change is not this run's alone" if shared else "") + ")", "",
                "| workers after | VmRSS MB (each) | VmHWM MB (each) |", "|---|---|---|", *rss]
        full_s, full_e = 1_000_000, 20_000_000
        guess = (took_ents + took_grants) * full_s / args.subjects + took_ingest * full_e / max(args.events, 1)
        out += ["", f"Linear extrapolation to {full_s:,} subjects / {full_e:,} events: provisioning "
                f"{(took_ents + took_grants) * full_s / args.subjects:,.0f} s + ingest "
                f"{took_ingest * full_e / max(args.events, 1):,.0f} s = {guess / 60:,.0f} min"]
        print("\n".join(out))
        ok = True
    finally:
        stop_server(proc, log, show_log=not ok)
        if args.keep:
            print(f"kept: database {url}, Redis keys {prefix}* on {args.redis}"
                  + (f"; stop the server with: pg_ctl -D {cluster.data} stop" if cluster else ""), file=sys.stderr)
        else:
            for page in redis_keys(r, prefix):
                r.unlink(*page)
            db.drop()
            if cluster is not None:
                cluster.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
