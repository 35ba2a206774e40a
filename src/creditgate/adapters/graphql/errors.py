"""One place that turns exceptions into GraphQL errors with `extensions.code`."""

from __future__ import annotations

import logging
from typing import Any

from graphql import GraphQLError

from creditgate.domain.errors import DomainError

log = logging.getLogger("creditgate.graphql")


def is_unexpected(error: GraphQLError) -> bool:
    return error.path is not None and not isinstance(error.original_error, (DomainError, OverflowError))


def log_unexpected(errors: list[GraphQLError]) -> None:
    for error in errors:
        if is_unexpected(error):
            where = ".".join(map(str, error.path or []))
            log.error("unexpected error in %s", where, exc_info=error.original_error or error)


def format_error(error: GraphQLError) -> dict[str, Any]:
    """The error as sent: a code always; unexpected ones masked (their stack is in the log)."""
    original = error.original_error
    ext: dict[str, Any]
    if isinstance(original, DomainError):
        ext, message = {"code": original.code}, original.message
        if original.conflicting_entity_id:
            ext["conflictingEntityId"] = original.conflicting_entity_id
        if original.index is not None:
            ext["index"] = original.index
    elif isinstance(original, OverflowError):
        # Date arithmetic on extreme inputs (year 9999 plus a duration...): the input is at fault.
        ext, message = {"code": "BAD_USER_INPUT"}, "a date or number is out of the supported range"
    elif error.path is None:
        # Parse, validation and variable errors: the caller's query is at fault.
        ext, message = {"code": "BAD_USER_INPUT"}, error.message
    else:
        ext, message = {"code": "INTERNAL"}, "Internal error."
    out = GraphQLError(message, nodes=error.nodes, source=error.source, positions=error.positions,
                       path=error.path, extensions={**(error.extensions or {}), **ext}).formatted
    return dict(out)
