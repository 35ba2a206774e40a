"""The one place that turns exceptions into `application/problem+json` responses."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.responses import Response

from creditgate.domain.errors import DomainError

log = logging.getLogger("creditgate.rest")

PROBLEM = "application/problem+json"
STATUS = {"BAD_USER_INPUT": 400, "UNAUTHENTICATED": 401, "FORBIDDEN": 403, "NOT_FOUND": 404, "CONFLICT": 409}
TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
          409: "Conflict", 415: "Unsupported Media Type", 500: "Internal Server Error"}


class HttpProblem(Exception):
    """A protocol-level refusal (unsupported media type, method not allowed...)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


def problem(status: int, detail: str, *, instance: str | None = None,
            extensions: dict[str, Any] | None = None) -> Response:
    body: dict[str, Any] = {"type": "about:blank", "title": TITLES.get(status, "Error"), "status": status,
                            "detail": detail}
    if instance:
        body["instance"] = instance
    if extensions:
        body["extensions"] = extensions
    headers = {"www-authenticate": "Bearer"} if status == 401 else None
    return Response(orjson.dumps(body), status_code=status, media_type=PROBLEM, headers=headers)


def validation_detail(exc: ValidationError, where: str) -> str:
    """A short, safe summary of pydantic errors (no input values echoed)."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False)[:5]:
        loc = ".".join(str(p) for p in (where, *err["loc"]) if p != "")
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts) or f"invalid {where}"


def error_response(exc: Exception, instance: str | None = None) -> Response:
    """Domain errors keep their meaning; anything unexpected is logged and masked."""
    if isinstance(exc, DomainError) and exc.code in STATUS:
        ext = {"conflictingEntityId": exc.conflicting_entity_id} if exc.conflicting_entity_id else None
        return problem(STATUS[exc.code], exc.message, instance=instance, extensions=ext)
    if isinstance(exc, HttpProblem):
        return problem(exc.status, exc.detail, instance=instance)
    if isinstance(exc, ValidationError):
        return problem(400, validation_detail(exc, "request"), instance=instance)
    if isinstance(exc, OverflowError):
        # Date arithmetic on extreme inputs (year 9999 plus a duration...): the input is at fault.
        log.warning("out of range input in %s: %s", instance, exc)
        return problem(400, "a date or number is out of the supported range", instance=instance)
    log.error("unexpected error in %s", instance, exc_info=exc)
    return problem(500, "Internal error.", instance=instance)
