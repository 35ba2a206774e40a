"""Throwaway PostgreSQL databases for the benchmark scripts: a fresh one per run, dropped at the end."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
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


# What docs/scaling.md recommends for a primary holding a large installation on a machine like this one
# (24 GiB): a buffer cache that holds the hot index pages, and checkpoints far enough apart (with compressed
# full-page images) that random upserts do not turn into a stream of 8 kB page images in the WAL.
TUNED = {"shared_buffers": "6GB", "effective_cache_size": "16GB", "max_wal_size": "16GB",
         "checkpoint_timeout": "15min", "wal_compression": "lz4", "wal_buffers": "64MB",
         "listen_addresses": "127.0.0.1", "unix_socket_directories": "''"}


class OwnCluster:
    """A private PostgreSQL server (initdb in a temporary directory, run as the `postgres` OS user when
    this process is root, on a free local port) with `settings`; `url` is its admin URL (trust auth);
    `stop()` shuts it down and removes its files."""

    def __init__(self, port: int, settings: dict[str, str] = TUNED) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))  # Debian keeps them off PATH
        self.pg_ctl = found[-1] if found else shutil.which("pg_ctl") or "pg_ctl"
        self.dir = tempfile.mkdtemp(prefix="creditgate_pg_")
        self.data = os.path.join(self.dir, "data")
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.dir, "postgres", "postgres")
        initdb = os.path.join(os.path.dirname(self.pg_ctl), "initdb")
        subprocess.run([*self.as_user, initdb, "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                       check=True, stdout=subprocess.DEVNULL)
        options = " ".join(f"-c {k}={v}" for k, v in {**settings, "port": str(port)}.items())
        subprocess.run([*self.as_user, self.pg_ctl, "-D", self.data, "-w", "-l", os.path.join(self.dir, "log"),
                        "-o", options, "start"], check=True, stdout=subprocess.DEVNULL)
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def stop(self) -> None:
        subprocess.run([*self.as_user, self.pg_ctl, "-D", self.data, "-m", "fast", "stop"], check=False,
                       stdout=subprocess.DEVNULL)
        shutil.rmtree(self.dir, ignore_errors=True)
