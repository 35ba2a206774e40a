"""Settings from the environment (CREDITGATE_*)."""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from creditgate.domain.durations import parse_duration

MIN_RETENTION = timedelta(days=1)  # the shortest CREDITGATE_EVENT_RETENTION (adapters/sql/partitions.py relies on it)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CREDITGATE_", extra="ignore")

    database_url: str = "sqlite:///./creditgate.db"
    redis_url: str | None = None
    redis_prefix: str = "cg:"
    api_keys: str = ""
    token_secret: str = ""
    # Read-your-writes needs every worker to see invalidations: with several
    # workers and no Redis there is no value cache (set by `serve`).
    value_cache: bool = True
    snapshots: bool = True
    cors_origins: str = "*"
    # HTTP edge (adapters/http; docs/operations.md): limits, metrics, logs, shutdown.
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1)
    token_rate: float = Field(50.0, ge=0)  # requests per second per subject token; 0 disables
    token_burst: int = Field(100, ge=1)
    metrics_public: bool = False
    log_format: Literal["text", "json"] = "text"
    access_log: bool = True
    shutdown_timeout: int = Field(30, ge=0)  # seconds SIGTERM waits for requests in flight
    # Live updates (GraphQL subscriptions over WebSocket; docs/semantics.md §10).
    ws_ping_interval: float = Field(15.0, gt=0)  # seconds between the server's pings on an open socket
    ws_send_timeout: float = Field(10.0, gt=0)  # a client that takes longer to take a message is disconnected
    # Notifications (docs/semantics.md §11; docs/operations.md): the worker every `serve` process runs.
    notifications_worker: bool = True  # evaluate rules and deliver webhooks in this process
    notifications_poll_interval: float = Field(1.0, gt=0)  # seconds between looks for due work with no signal
    notifications_evaluation_gap: float = Field(1.0, ge=0)  # seconds between evaluation passes at least: bursts gather
    notifications_retry_delays: str = "5s,1m,5m,30m,2h,5h,10h"  # waits after failed attempts; the last repeats
    notifications_give_up_after: float = Field(86400.0, gt=0)  # seconds after the first attempt: then FAILED
    notifications_timeout: float = Field(10.0, gt=0)  # seconds a receiver has to answer an attempt
    notifications_concurrency: int = Field(16, ge=1)  # deliveries in flight per process
    # Storage upkeep (PostgreSQL; docs/operations.md, "Partitions and retention").
    event_retention: str = ""  # e.g. "400d": raw event payloads older than this are dropped; "" keeps them all
    maintenance_interval: float = Field(3600.0, gt=0)  # seconds between upkeep passes of each process

    @property
    def api_key_set(self) -> frozenset[str]:
        return parse_keys(self.api_keys)

    def retention(self) -> timedelta | None:
        """How long raw events are kept (None: for ever); ValueError when malformed or set on SQLite."""
        if not self.event_retention.strip():
            return None
        kept = parse_duration(self.event_retention, "CREDITGATE_EVENT_RETENTION")
        if not self.database_url.startswith(("postgresql", "postgres:")):
            # SQLite's dedupe keys are the events' own unique index: dropping events would forget them
            raise ValueError("CREDITGATE_EVENT_RETENTION needs PostgreSQL (on SQLite the raw events are the "
                             "dedupe keys, so they are kept)")
        if kept < MIN_RETENTION:
            raise ValueError(f"CREDITGATE_EVENT_RETENTION {self.event_retention!r} must be at least 1d")
        return kept

    @property
    def async_database_url(self) -> str:
        return async_url(self.database_url)


def async_url(url: str) -> str:
    """The async driver URL for a configured database URL."""
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


@lru_cache(maxsize=8)
def parse_keys(api_keys: str) -> frozenset[str]:
    """The admin keys of a comma-separated list (cached: read on every request)."""
    return frozenset(k.strip() for k in api_keys.split(",") if k.strip())
