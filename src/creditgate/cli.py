"""`creditgate serve | migrate | export-schema`."""

from __future__ import annotations

import argparse
import ipaddress
import os
import pathlib
import sys

from creditgate.config import Settings


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from creditgate.adapters.sql.db import migrate

    settings = Settings()
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
    print(f"creditgate on http://{args.host}:{args.port}/graphql (database: "
          f"{settings.database_url.split('@')[-1]}, cache: {'redis' if settings.redis_url else 'in-process'})",
          file=sys.stderr)
    uvicorn.run("creditgate.app:create_app", factory=True, host=args.host, port=args.port,
                workers=args.workers, log_level=args.log_level, access_log=False)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="creditgate", description="Open entitlements service.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="apply migrations, then serve HTTP")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8888)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--log-level", default="info")
    sub.add_parser("migrate", help="apply database migrations")
    p = sub.add_parser("export-schema", help="write the GraphQL schema (SDL)")
    p.add_argument("--output", "-o", default="schema.graphql", help="file to write, or - for stdout")
    args = parser.parse_args(argv)

    if args.command == "serve":
        return serve(args)
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
