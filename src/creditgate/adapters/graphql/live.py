"""GraphQL: the Subscription type (docs/semantics.md §10); the rules are in services/live.py."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from datetime import datetime

import strawberry

from creditgate.adapters.graphql.context import Info
from creditgate.adapters.graphql.entitlements import EntitlementValue
from creditgate.domain.errors import Unauthenticated
from creditgate.records import ValueChangeCause
from creditgate.services import live as svc

# The shared vocabulary (records.py), registered under the contract's name.
strawberry.enum(ValueChangeCause, name="ValueChangeCause")

_NONE = EntitlementValue(has_access=False)


@strawberry.type
class EntitlementValueUpdate:
    subject_key: str
    feature_key: str
    entitlement_id: strawberry.ID | None
    value: EntitlementValue
    as_of: datetime
    cause: ValueChangeCause

    @classmethod
    def of(cls, u: svc.ValueUpdate) -> EntitlementValueUpdate:
        return cls(subject_key=u.subject_key, feature_key=u.feature_key,
                   entitlement_id=strawberry.ID(u.entitlement_id) if u.entitlement_id else None,
                   value=EntitlementValue.of(u.value) if u.value is not None else _NONE,
                   as_of=u.as_of, cause=u.cause)


async def _stream(info: Info, updates: AsyncGenerator[svc.ValueUpdate]) -> AsyncGenerator[EntitlementValueUpdate]:
    try:
        async with contextlib.aclosing(updates):  # ends the watch at once when the subscription ends
            async for u in updates:
                yield EntitlementValueUpdate.of(u)
    except Unauthenticated as exc:  # the token was invalidated (or expired) mid-subscription: 4403
        conn = info.context.connection
        if conn is not None:
            await conn.refuse(exc.message)
        raise


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def entitlement_values(self, info: Info, subject_key: str, feature_keys: list[str] | None = None
                                 ) -> AsyncGenerator[EntitlementValueUpdate]:
        # Checked before the stream starts, so a refusal is the protocol's `error` message for this
        # subscription only (BAD_USER_INPUT, FORBIDDEN).
        ctx = info.context
        features = await svc.check_request(ctx.rt, ctx.principal, subject_key, feature_keys)
        return _stream(info, svc.watch(ctx.rt, ctx.principal, subject_key, features))
