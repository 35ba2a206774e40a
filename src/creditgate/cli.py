"""`creditgate serve | migrate | cache flush | export-schema | import`."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import pathlib
import shutil
import sys
import tempfile

from creditgate.config import Settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # as creditgate.metrics reads it (not imported here: it must come first)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def read_installation(settings: Settings) -> str:
    """The database's installation id (the Redis cache's namespace is made of it)."""
    from creditgate.adapters.sql.db import Database
    from creditgate.adapters.sql.installation import read_installation_id

    db = Database(settings.database_url)
    try:
        return await read_installation_id(db)
    finally:
        await db.close()


def redis_namespace(settings: Settings, installation: str) -> str:
    from creditgate.adapters.cache.redis_cache import namespace

    return namespace(settings.redis_prefix, installation)


async def flush_cache(settings: Settings) -> str:
    """`creditgate cache flush`: drops every Redis entry of this database's installation (run it
    after restoring the database from a backup: the dump brings the same installation id).
    Returns what it did; raises on database or Redis errors."""
    if not settings.redis_url:
        return ("no CREDITGATE_REDIS_URL: nothing to flush (the in-process cache lives in each server "
                "process; restarting the server empties it)")
    from creditgate.adapters.cache.redis_replicated import open_redis

    installation = await read_installation(settings)
    cache = open_redis(settings.redis_url, settings.redis_prefix, installation=installation,
                       connect_timeout=5.0, read_timeout=30.0, max_connections=2, pool_timeout=5.0)
    try:
        removed = await cache.flush()
    finally:
        await cache.close()
    return (f"installation {installation}: replaced the epoch and unlinked {removed} keys under "
            f"{cache.namespace!r} on {settings.redis_url.split('@')[-1]}")


def cache_command(args: argparse.Namespace) -> int:
    from redis.exceptions import RedisError
    from sqlalchemy.exc import SQLAlchemyError

    from creditgate.adapters.sql.installation import NoInstallation

    try:
        print(asyncio.run(flush_cache(Settings())))
    except (RedisError, OSError, SQLAlchemyError, NoInstallation) as exc:
        print(f"cache flush failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
              file=sys.stderr)
        return 1
    return 0


def settings_problem(settings: Settings) -> str | None:
    """What is wrong with settings that parse but cannot work (None: nothing)."""
    try:
        settings.retention()
    except ValueError as e:
        return str(e)
    return None


async def run_maintenance(settings: Settings) -> int:
    from creditgate.app import open_runtime
    from creditgate.services.maintenance import maintain

    async with open_runtime(settings) as rt:
        done = await maintain(rt)
    print(f"partitions created: {', '.join(done.created) or 'none'}; "
          f"raw event partitions dropped: {', '.join(done.dropped) or 'none'}")
    return 0


def maintain_command(_args: argparse.Namespace) -> int:
    from creditgate.adapters.sql.db import migrate

    settings = Settings()
    if (problem := settings_problem(settings)) is not None:
        print(problem, file=sys.stderr)
        return 2
    migrate(settings.database_url)
    return asyncio.run(run_maintenance(settings))


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from creditgate.adapters.sql.db import migrate

    settings = Settings()
    if (problem := settings_problem(settings)) is not None:
        print(problem, file=sys.stderr)
        return 2
    if not settings.api_key_set and not is_loopback(args.host):
        print(f"refusing to serve on {args.host} without API keys: set CREDITGATE_API_KEYS "
              "(comma-separated) or use a loopback --host such as 127.0.0.1", file=sys.stderr)
        return 2
    if args.workers > 1 and not settings.redis_url:
        print(f"{args.workers} workers and no CREDITGATE_REDIS_URL: running without a value cache "
              "(an in-process cache cannot see other workers' writes)", file=sys.stderr)
        os.environ["CREDITGATE_VALUE_CACHE"] = "false"
    if not settings.token_secret:
        if args.workers > 1:
            print("set CREDITGATE_TOKEN_SECRET when running several workers: subject tokens are signed "
                  "with it", file=sys.stderr)
            return 2
        print("CREDITGATE_TOKEN_SECRET is unset: subject tokens are signed with a per-process secret "
              "and stop working at restart", file=sys.stderr)
    migrate(settings.database_url)
    installation = asyncio.run(read_installation(settings))
    cache = "off" if os.environ.get("CREDITGATE_VALUE_CACHE") == "false" or not settings.value_cache else (
        f"redis, key namespace {redis_namespace(settings, installation)!r}" if settings.redis_url else "in-process")
    print(f"creditgate on http://{args.host}:{args.port}/graphql (database: "
          f"{settings.database_url.split('@')[-1]}, installation {installation}, cache: {cache})", file=sys.stderr)
    from creditgate.adapters.http.logs import log_config

    own_dir = metrics_dir(args.workers)
    try:
        # Our access log (adapters/http) replaces uvicorn's; SIGTERM lets requests in flight finish,
        # for at most shutdown_timeout seconds (an ingest cut short rolls back whole).
        uvicorn.run("creditgate.app:create_app", factory=True, host=args.host, port=args.port,
                    workers=args.workers, log_level=args.log_level, access_log=not settings.access_log,
                    log_config=log_config(settings.log_format, args.log_level),
                    timeout_graceful_shutdown=settings.shutdown_timeout)
    finally:
        if own_dir:
            shutil.rmtree(own_dir, ignore_errors=True)
    return 0


def metrics_dir(workers: int) -> str | None:
    """Several workers share their metrics through files in PROMETHEUS_MULTIPROC_DIR (creditgate/metrics.py):
    a given directory is emptied, else a temporary one is made (its path returned, removed at exit)."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        path = pathlib.Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for old in path.glob("*.db"):  # samples of an earlier run
            old.unlink()
        return None
    if workers <= 1:
        return None
    made = tempfile.mkdtemp(prefix="creditgate-metrics-")
    os.environ[MULTIPROC_ENV] = made
    return made


async def run_import(args: argparse.Namespace, settings: Settings) -> int:
    """`creditgate import`: reads args.source through the openmeter SDK into the configured database."""
    from openmeter import Client
    from rich.console import Console

    from creditgate.adapters.importer.command import Options, SourceUnreadable
    from creditgate.adapters.importer.command import run_import as import_all
    from creditgate.adapters.importer.source import Source
    from creditgate.app import open_runtime

    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    source = Source(Client(endpoint=args.source.rstrip("/"), headers=headers))
    subjects = frozenset(s for arg in args.subjects or () for s in arg.split(",") if s) or None
    console = Console(stderr=True)
    async with open_runtime(settings) as rt:
        try:
            summary = await import_all(rt, source, Options(subjects=subjects, dry_run=args.dry_run), console=console)
        except SourceUnreadable as exc:
            print(f"import failed: cannot read {args.source}: {exc}", file=sys.stderr)
            return 1
    print("\n".join(summary.lines()))
    return 1 if summary.failed else 0


def import_command(args: argparse.Namespace) -> int:
    from creditgate.adapters.sql.db import migrate

    settings = Settings()
    migrate(settings.database_url)
    return asyncio.run(run_import(args, settings))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="creditgate", description="Open entitlements service.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="apply migrations, then serve HTTP")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8888)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--log-level", default="info")
    sub.add_parser("migrate", help="apply database migrations")
    sub.add_parser("maintain", help="one storage upkeep pass: partitions ahead, then event retention "
                   "(serve does it every CREDITGATE_MAINTENANCE_INTERVAL; docs/operations.md)")
    p = sub.add_parser("cache", help="value cache operations")
    cache_sub = p.add_subparsers(dest="cache_command", required=True)
    cache_sub.add_parser("flush", help="drop every Redis entry of this database's installation "
                         "(run it after restoring the database from a backup)")
    p = sub.add_parser("import", help="import an OpenMeter (v1 API) into the configured database, ids kept "
                       "(docs/import.md)")
    p.add_argument("--from", dest="source", required=True, metavar="URL", help="the OpenMeter (or creditgate) URL")
    p.add_argument("--api-key", default=os.environ.get("OPENMETER_API_KEY"),
                   help="the source's API key (default: $OPENMETER_API_KEY)")
    p.add_argument("--subjects", nargs="*", metavar="KEY", help="only these subject keys (space or comma separated)")
    p.add_argument("--dry-run", action="store_true", help="read the source and count what would be imported")
    p = sub.add_parser("export-schema", help="write the GraphQL schema (SDL)")
    p.add_argument("--output", "-o", default="schema.graphql", help="file to write, or - for stdout")
    args = parser.parse_args(argv)

    if args.command == "serve":
        return serve(args)
    if args.command == "cache":
        return cache_command(args)
    if args.command == "import":
        return import_command(args)
    if args.command == "maintain":
        return maintain_command(args)
    if args.command == "migrate":
        from creditgate.adapters.sql.db import migrate

        migrate(Settings().database_url)
        return 0
    from creditgate.adapters.graphql.schema import schema

    sdl = schema.as_str() + "\n"
    if args.output == "-":
        sys.stdout.write(sdl)
    else:
        pathlib.Path(args.output).write_text(sdl)
    return 0


if __name__ == "__main__":
    sys.exit(main())
