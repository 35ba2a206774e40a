"""Cheap in-process counters, rendered in the Prometheus text format (for /metrics and the debug route)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

requests: Counter[tuple[str, int]] = Counter()  # (operation, status) -> count
events: Counter[str] = Counter()  # "accepted" / "duplicates" -> count
# Other modules may register extra gauges/counters: name -> (help, kind, read function).
extra: dict[str, tuple[str, str, Callable[[], float]]] = {}


def count_request(operation: str, status: int) -> None:
    requests[(operation, status)] += 1


def count_events(accepted: int, duplicates: int) -> None:
    events["accepted"] += accepted
    events["duplicates"] += duplicates


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render() -> str:
    lines = ["# HELP creditgate_http_requests_total REST requests by operation and status.",
             "# TYPE creditgate_http_requests_total counter"]
    for (op, status), n in sorted(requests.items()):
        lines.append(f'creditgate_http_requests_total{{operation="{_label(op)}",status="{status}"}} {n}')
    lines += ["# HELP creditgate_events_total Events received through REST ingest, by outcome.",
              "# TYPE creditgate_events_total counter"]
    for outcome in ("accepted", "duplicates"):
        lines.append(f'creditgate_events_total{{outcome="{outcome}"}} {events[outcome]}')
    for name, (help_text, kind, read) in sorted(extra.items()):
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {read():g}"]
    return "\n".join(lines) + "\n"
