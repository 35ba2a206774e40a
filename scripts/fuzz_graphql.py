"""A longer GraphQL fuzz run (schemathesis) than the suite's: every query and mutation, positive and
negative documents, admin key. Prints the documents sent per operation and every distinct failure (5xx,
a body that is not JSON, an INTERNAL error); exits 1 when there is one. "answered" counts the documents
answered without any error (the others were refused with a clear code).

    uv run python scripts/fuzz_graphql.py [--examples 200] [--negative 50] [--seed N] [--only checkAccess ...]
        [--pg postgresql://postgres@127.0.0.1:5432/postgres [--redis redis://127.0.0.1:6379/0]]
        [--url http://127.0.0.1:8888 --api-key KEY]

Without --url it serves creditgate itself (a throwaway SQLite file, or with --pg a throwaway PostgreSQL
database), seeds a little data (tests/graphql_fuzz.py SETUP) and removes everything at the end.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.graphql_fuzz import SEED, SETUP, fuzz


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(database_url: str, redis_url: str | None, key: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "CREDITGATE_DATABASE_URL": database_url, "CREDITGATE_API_KEYS": key,
           "CREDITGATE_TOKEN_SECRET": "fuzz", "CREDITGATE_REDIS_PREFIX": f"fuzz{uuid.uuid4().hex[:8]}:"}
    env.pop("CREDITGATE_REDIS_URL", None)
    if redis_url:
        env["CREDITGATE_REDIS_URL"] = redis_url
    log = open(os.path.join(tempfile.gettempdir(), f"fuzz_graphql_{port}.log"), "wb")  # noqa: SIM115
    print(f"server log: {log.name}", file=sys.stderr)
    proc = subprocess.Popen([sys.executable, "-m", "creditgate.cli", "serve", "--port", str(port)], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the server did not start")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=200, help="positive documents per operation")
    ap.add_argument("--negative", type=int, default=50, help="invalid documents per operation")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--only", nargs="*", default=[], help="field names of the operations to fuzz")
    ap.add_argument("--pg", help="PostgreSQL admin URL: fuzz a throwaway database there (default: SQLite)")
    ap.add_argument("--redis", help="Redis URL for the value cache (with --pg)")
    ap.add_argument("--url", help="fuzz this running server instead (its data is changed!)")
    ap.add_argument("--api-key", help="admin key of --url")
    args = ap.parse_args()

    key = args.api_key or "fuzz-key"
    proc = None
    dbname = None
    tmp = tempfile.TemporaryDirectory()
    try:
        if args.url:
            url = args.url.rstrip("/")
        else:
            if args.pg:
                dbname = f"cg_fuzz_{uuid.uuid4().hex[:10]}"
                with psycopg.connect(args.pg, autocommit=True) as conn:
                    conn.execute(f'CREATE DATABASE "{dbname}"')
                base = args.pg.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
                database_url = f"{base}/{dbname}"
            else:
                database_url = f"sqlite:///{tmp.name}/fuzz.db"
            proc, url = serve(database_url, args.redis, key)
        auth = {"Authorization": f"Bearer {key}"}
        if not args.url:
            seeded = httpx.post(f"{url}/graphql", json={"query": SETUP}, headers=auth, timeout=30).json()
            assert not seeded.get("errors"), seeded
        started = time.perf_counter()
        report = fuzz(url, auth, datetime.now(UTC), examples=args.examples, negative=args.negative, only=args.only,
                      fuzz_seed=args.seed)
        elapsed = time.perf_counter() - started
        distinct = report.distinct()
        per_op: dict[str, int] = {}
        for (op, _), _f in distinct.items():
            per_op[op] = per_op.get(op, 0) + 1
        print(f"{'operation':32} {'documents':>9} {'answered':>8} {'failures':>8}")
        for op in sorted(report.examples):
            print(f"{op:32} {report.examples[op]:9d} {report.answered[op]:8d} {per_op.get(op, 0):8d}")
        total = sum(report.examples.values())
        print(f"{len(report.examples)} operations, {total} documents, {len(report.failures)} failing documents, "
              f"{len(distinct)} distinct failures, {elapsed:.1f} s (seed {args.seed})")
        for f in distinct.values():
            print(f"\nFAIL {f.operation}: {f.problem}\n{f.query}")
        return 1 if distinct else 0
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        if dbname and args.pg:
            with psycopg.connect(args.pg, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
