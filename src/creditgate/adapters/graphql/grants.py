"""GraphQL: grants."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry

from creditgate.adapters.graphql.context import Info
from creditgate.adapters.graphql.entitlements import RecurringPeriod, UsagePeriod, UsagePeriodInput
from creditgate.adapters.graphql.permissions import argument, subject_field
from creditgate.adapters.graphql.scalars import JSON
from creditgate.records import Grant as GrantRecord
from creditgate.services import grants as svc


@strawberry.enum
class ExpirationDuration(Enum):
    HOUR = "HOUR"
    DAY = "DAY"
    WEEK = "WEEK"
    MONTH = "MONTH"
    YEAR = "YEAR"


@strawberry.type
class GrantExpiration:
    duration: ExpirationDuration
    count: int


@strawberry.type
class Grant:
    id: strawberry.ID
    entitlement_id: strawberry.ID
    amount: float
    priority: int
    effective_at: datetime
    expiration: GrantExpiration
    expires_at: datetime
    recurrence: UsagePeriod | None
    next_recurrence: datetime | None
    min_rollover_amount: float
    max_rollover_amount: float
    metadata: JSON
    voided_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, g: GrantRecord, now: datetime) -> Grant:
        rec = None
        if g.recurrence_interval and g.recurrence_anchor:
            rec = UsagePeriod(interval=RecurringPeriod(g.recurrence_interval), anchor=g.recurrence_anchor)
        return cls(id=strawberry.ID(g.id), entitlement_id=strawberry.ID(g.entitlement_id), amount=float(g.amount),
                   priority=g.priority, effective_at=g.effective_at,
                   expiration=GrantExpiration(duration=ExpirationDuration(g.expiration_duration),
                                              count=g.expiration_count),
                   expires_at=g.expires_at, recurrence=rec, next_recurrence=svc.next_recurrence(g, now),
                   min_rollover_amount=float(g.min_rollover), max_rollover_amount=float(g.max_rollover),
                   metadata=g.metadata, voided_at=g.voided_at, created_at=g.created_at, updated_at=g.updated_at)


@strawberry.input
class GrantExpirationInput:
    duration: ExpirationDuration
    count: int


@strawberry.input
class CreateGrantInput:
    amount: float
    effective_at: datetime
    expiration: GrantExpirationInput
    priority: int | None = 1
    recurrence: UsagePeriodInput | None = None
    min_rollover_amount: float | None = 0
    max_rollover_amount: float | None = 0
    metadata: JSON | None = None


@strawberry.input
class BatchGrantInput:
    subject_key: str
    entitlement_id_or_feature_key: str
    input: CreateGrantInput


def _grant_input(input: CreateGrantInput) -> svc.GrantInput:
    rec = input.recurrence
    return svc.GrantInput(
        amount=input.amount, effective_at=input.effective_at, expiration_duration=input.expiration.duration.value,
        expiration_count=input.expiration.count, priority=1 if input.priority is None else input.priority,
        recurrence_interval=rec.interval.value if rec else None, recurrence_anchor=rec.anchor if rec else None,
        min_rollover=input.min_rollover_amount or 0, max_rollover=input.max_rollover_amount or 0,
        metadata=input.metadata)


@strawberry.type
class GrantQuery:
    @subject_field(argument)
    async def grants(self, info: Info, subject_key: str | None = None, entitlement_id: strawberry.ID | None = None,
                     include_deleted: bool | None = False, limit: int | None = 1000,
                     offset: int | None = 0) -> list[Grant]:
        rt = info.context.rt
        found = await svc.list_grants(rt, subject_key, str(entitlement_id) if entitlement_id else None,
                                      bool(include_deleted), 1000 if limit is None else limit, offset or 0)
        now = rt.now()
        return [Grant.of(g, now) for g in found]


@strawberry.type
class GrantMutation:
    @strawberry.mutation
    async def create_grant(self, info: Info, subject_key: str, entitlement_id_or_feature_key: str,
                           input: CreateGrantInput) -> Grant:
        rt = info.context.admin()
        g = await svc.create_grant(rt, subject_key, entitlement_id_or_feature_key, _grant_input(input))
        return Grant.of(g, rt.now())

    # up to 1000 grants in one transaction, all or none; a failing input's error has its extensions.index
    @strawberry.mutation
    async def create_grants(self, info: Info, inputs: list[BatchGrantInput]) -> list[Grant]:
        rt = info.context.admin()
        found = await svc.create_grants(rt, [(i.subject_key, i.entitlement_id_or_feature_key, _grant_input(i.input))
                                             for i in inputs])
        now = rt.now()
        return [Grant.of(g, now) for g in found]

    @strawberry.mutation
    async def void_grant(self, info: Info, id: strawberry.ID) -> Grant:
        rt = info.context.admin()
        return Grant.of(await svc.void_grant(rt, str(id)), rt.now())
