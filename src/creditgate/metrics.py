"""Prometheus metrics: every metric of the service is a named object here (docs/operations.md lists them).

Later parts add theirs in this module too (subscriptions, webhook deliveries), so that /metrics and the
docs stay in one place. Label children are looked up once and kept (`_child`): the hot path pays one
dict lookup and one increment.

Several workers: `serve` points PROMETHEUS_MULTIPROC_DIR at a fresh directory before any worker starts
(prometheus_client reads it at import); each worker writes its samples there and a scrape, answered by
any worker, sums them (`render`). Gauges use `livesum`: the sum over live workers.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series: counters keep exactly the samples they always had
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# -- HTTP --
http_requests = Counter("creditgate_http_requests", "REST requests by operation and status.",
                        ["operation", "status"])
request_duration = Histogram(
    "creditgate_request_duration_seconds",
    "Request latency, from the first byte seen to the last byte sent, by API (graphql, rest, other) and "
    "operation (GraphQL operation name, REST method and route template, or the path of other routes).",
    ["api", "operation"], buckets=LATENCY_BUCKETS)
errors = Counter("creditgate_errors", "Error answers by API and code (GraphQL extensions.code, or the code of "
                 "the HTTP status for REST and protocol refusals).", ["api", "code"])
rate_limited = Counter("creditgate_rate_limited", "Requests refused by the per-subject-token rate limit.")

# -- events --
events = Counter("creditgate_events", "Events received through ingest (REST and GraphQL), by outcome.", ["outcome"])

# -- value cache --
cache_lookups = Counter("creditgate_cache_lookups", "Value cache keys read, by result (hit, miss).", ["result"])
cache_errors = Counter("creditgate_cache_errors", "Value cache calls that failed (Redis down, timeout, pool full).")

# -- database pool (sampled at scrape time, and every few seconds by each worker when there are several) --
db_pool_in_use = Gauge("creditgate_db_pool_in_use", "Database connections checked out of the pool.",
                       multiprocess_mode="livesum")
db_pool_waiting = Gauge("creditgate_db_pool_waiting", "Tasks waiting for a database connection.",
                        multiprocess_mode="livesum")

# -- live updates (GraphQL subscriptions, docs/semantics.md §10) --
ws_connections = Gauge("creditgate_ws_connections", "Open WebSocket connections on /graphql (after the handshake).",
                       multiprocess_mode="livesum")
subscriptions = Gauge("creditgate_subscriptions", "Live entitlementValues subscriptions.",
                      multiprocess_mode="livesum")
subscription_updates = Counter("creditgate_subscription_updates", "Subscription updates sent, by cause.",
                               ["cause"])
change_signals = Counter("creditgate_change_signals", "Change signals received by this process, by source "
                         "(local: its own writes; remote: another process's, through Redis; gap: signals may "
                         "have been lost, subscriptions resync).", ["source"])
ws_closed = Counter("creditgate_ws_closed", "WebSocket connections closed by the server, by reason (refused: "
                    "bad credentials at connection_init; expired: the token expired or was invalidated; "
                    "slow: the client did not read).", ["reason"])
notification_events = Counter("creditgate_notification_events", "Notification events created by rule "
                              "evaluation (balance thresholds reached; test events not counted).")
webhook_attempts = Counter("creditgate_webhook_attempts", "Webhook delivery attempts, by outcome (success: "
                           "2xx; retry: failed, another attempt is scheduled; failed: given up or 410 Gone).",
                           ["outcome"])

_children: dict[tuple[int, tuple[str, ...]], Any] = {}


def _child(metric: Any, *labels: str) -> Any:
    """The labelled child, looked up once per label tuple."""
    key = (id(metric), labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


def count_request(operation: str, status: int) -> None:
    _child(http_requests, operation, str(status)).inc()


def count_events(accepted: int, duplicates: int) -> None:
    if accepted:
        _child(events, "accepted").inc(accepted)
    if duplicates:
        _child(events, "duplicates").inc(duplicates)


def count_error(api: str, code: str) -> None:
    _child(errors, api, code).inc()


def count_cache(hits: int, misses: int) -> None:
    if hits:
        _child(cache_lookups, "hit").inc(hits)
    if misses:
        _child(cache_lookups, "miss").inc(misses)


def observe_request(api: str, operation: str, seconds: float) -> None:
    _child(request_duration, api, operation).observe(seconds)


def set_pool(in_use: int, waiting: int) -> None:
    """This process's pool figures (read before each scrape, and every few seconds with several workers)."""
    db_pool_in_use.set(in_use)
    db_pool_waiting.set(waiting)


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def render() -> bytes:
    """The exposition text: this process's metrics, or every worker's when several share a directory."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def worker_exit() -> None:
    """A worker stops: its live gauges leave the sums."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def count_update(cause: str) -> None:
    _child(subscription_updates, cause).inc()


def count_signal(source: str) -> None:
    _child(change_signals, source).inc()


def count_ws_closed(reason: str) -> None:
    _child(ws_closed, reason).inc()


def count_notification_events(n: int) -> None:
    if n:
        notification_events.inc(n)


def count_attempt(outcome: str) -> None:
    _child(webhook_attempts, outcome).inc()
