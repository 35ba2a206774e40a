"""REST: debug metrics. The SDK parses every body as JSON, so this route returns the Prometheus text
as a JSON string; scrapers read the same text as text/plain from /metrics."""

from __future__ import annotations

from creditgate import metrics
from creditgate.adapters.rest.router import Call, api


@api.route("GET", "/debug/metrics", op_id="getDebugMetrics", tag="Debug",
           summary="Metrics in the Prometheus text format, as a JSON string", response=str)
async def debug_metrics(c: Call) -> str:
    return metrics.render().decode()
