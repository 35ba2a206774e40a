"""Who may resolve a field: the subject-read guard as a Strawberry permission, declared on the fields
(the counterpart of REST's `access="subject"`). The rule itself is services.tokens.authorize_subject_read."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import strawberry
from strawberry.permission import BasePermission, PermissionExtension

from creditgate.adapters.graphql.context import Info
from creditgate.services import tokens as token_svc

# The subject keys a field reads, from its parent object and its arguments (python names);
# None: the field reads no single subject's data, so only an admin may call it.
SubjectKeys = Callable[[Any, dict[str, Any]], Sequence[str] | None]
R = TypeVar("R", bound=Callable[..., Any])


class ReadsSubject(BasePermission):
    """An admin, or a live token of every subject the field reads."""

    def __init__(self, keys: SubjectKeys) -> None:
        self.keys = keys

    async def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        ctx = info.context
        keys = self.keys(source, kwargs)
        if keys is None:
            ctx.principal.require_admin()
        else:
            await token_svc.authorize_subject_read(ctx.rt, ctx.principal, keys)
        return True  # a refusal raises FORBIDDEN / UNAUTHENTICATED with its own message


def subject_field(keys: SubjectKeys) -> Callable[[R], R]:
    """`@strawberry.field` guarded by ReadsSubject (no schema directive: the SDL stays the contract's)."""
    def declare(resolver: R) -> R:
        guard = PermissionExtension([ReadsSubject(keys)], use_directives=False)
        return cast(R, strawberry.field(resolver, extensions=[guard]))
    return declare


def argument(source: Any, args: dict[str, Any]) -> Sequence[str] | None:
    """The field's `subjectKey` argument (absent or null: admin only)."""
    key = args.get("subject_key")
    return None if key is None else [key]


def parent_entitlement(source: Any, args: dict[str, Any]) -> Sequence[str]:
    """The subject of the entitlement the field belongs to."""
    return [source.rec.subject_key]


def parent_subject(source: Any, args: dict[str, Any]) -> Sequence[str]:
    """The subject the field belongs to."""
    return [source.key]


def checked_subjects(source: Any, args: dict[str, Any]) -> Sequence[str]:
    """Every subject of checkAccess's checks."""
    return [c.subject_key for c in args["checks"]]
