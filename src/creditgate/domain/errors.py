"""The one error family every layer speaks; adapters map `code` to GraphQL/REST."""

from __future__ import annotations


class DomainError(Exception):
    code = "INTERNAL"

    def __init__(self, message: str, *, conflicting_entity_id: str | None = None, index: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.conflicting_entity_id = conflicting_entity_id
        self.index = index  # the failing item of a batch, when a batch failed


class BadInput(DomainError):
    code = "BAD_USER_INPUT"


class NotFound(DomainError):
    code = "NOT_FOUND"


class Conflict(DomainError):
    code = "CONFLICT"


class Unauthenticated(DomainError):
    code = "UNAUTHENTICATED"


class Forbidden(DomainError):
    code = "FORBIDDEN"
