"""The HTTP edge around both APIs: request ids, access logs and latency metrics (observe.py), the body
size limit (body_limit.py), the per-subject-token rate limit (rate_limit.py), /readyz and /metrics
(endpoints.py), log formats (logs.py). Settings and metrics: docs/operations.md.

Pure ASGI middlewares; they never import the GraphQL, REST or SQL adapters. The APIs tell the edge
what a request was through `scope["state"]`: `operation` (a bounded label for the latency histogram)
and `errors_counted` (GraphQL answers whose error codes were counted already).
"""

from __future__ import annotations

from starlette.middleware import Middleware

from creditgate.adapters.http.body_limit import BodyLimit
from creditgate.adapters.http.observe import Observe
from creditgate.adapters.http.rate_limit import RateLimit
from creditgate.config import Settings

__all__ = ["BodyLimit", "Observe", "RateLimit", "limits", "observe"]


def observe(settings: Settings) -> Middleware:
    """Outermost: sees every answer, the refusals of the limits and of CORS included."""
    return Middleware(Observe, access_log=settings.access_log)


def limits(settings: Settings) -> list[Middleware]:
    """Inside CORS (so that browsers can read a 429 or 413): the rate limit, then the body limit."""
    return [Middleware(RateLimit, rate=settings.token_rate, burst=settings.token_burst),
            Middleware(BodyLimit, max_bytes=settings.max_body_bytes)]
