"""Throwaway PostgreSQL databases for the benchmark scripts: a fresh one per run, dropped at the end."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from creditgate.adapters.sql.db import migrate


class ThrowawayDatabase:
    """Creates `<prefix>_<random>` on the server of `admin_url` (a database URL it may connect to with
    CREATE DATABASE rights); `url` is the new database's; `drop()` removes it, connections and all."""

    def __init__(self, admin_url: str, prefix: str = "creditgate_bench") -> None:
        self.admin_url = admin_url
        self.name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        self.url = admin_url.rsplit("/", 1)[0] + "/" + self.name

    def drop(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


@contextmanager
def throwaway_database(admin_url: str) -> Iterator[str]:
    """A migrated throwaway database's URL, dropped on the way out."""
    db = ThrowawayDatabase(admin_url)
    try:
        migrate(db.url)
        yield db.url
    finally:
        db.drop()
