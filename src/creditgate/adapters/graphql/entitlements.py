"""GraphQL: entitlements (the interface and its three types), resets, values and history."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Annotated

import strawberry

import creditgate.adapters.graphql.meters  # noqa: F401  (registers the WindowSize enum)
from creditgate.adapters.graphql import loaders
from creditgate.adapters.graphql.context import Info
from creditgate.adapters.graphql.features import Feature
from creditgate.adapters.graphql.permissions import argument, parent_entitlement, subject_field
from creditgate.adapters.graphql.scalars import JSON
from creditgate.domain import WindowSize
from creditgate.domain.errors import NotFound
from creditgate.records import Entitlement as EntitlementRecord
from creditgate.records import EntitlementType
from creditgate.services import entitlements as svc
from creditgate.services import history as history_svc
from creditgate.services import tokens as token_svc
from creditgate.services.values import EntValue

if TYPE_CHECKING:
    from creditgate.adapters.graphql.grants import Grant


def num(x: Decimal | None) -> float | None:
    return None if x is None else float(x)


# The shared vocabulary (records.py), registered under the contract's name.
strawberry.enum(EntitlementType, name="EntitlementType")


@strawberry.enum
class RecurringPeriod(Enum):
    DAY = "DAY"
    WEEK = "WEEK"
    MONTH = "MONTH"
    YEAR = "YEAR"


@strawberry.type
class TimePeriod:
    from_: datetime = strawberry.field(name="from")
    to: datetime


@strawberry.type
class UsagePeriod:
    interval: RecurringPeriod
    anchor: datetime


@strawberry.type
class EntitlementValue:
    has_access: bool
    balance: float | None = None
    usage: float | None = None
    overage: float | None = None
    config: JSON | None = None

    @classmethod
    def of(cls, v: EntValue) -> EntitlementValue:
        return cls(has_access=v.has_access, balance=num(v.balance), usage=num(v.usage), overage=num(v.overage),
                   config=v.config)


@strawberry.interface(name="Entitlement")
class Entitlement:
    id: strawberry.ID
    type: EntitlementType
    subject_key: str
    feature_id: strawberry.ID
    feature_key: str
    metadata: JSON
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None
    rec: strawberry.Private[EntitlementRecord]

    @strawberry.field
    async def feature(self, info: Info) -> Feature:
        found = await loaders.features(info).load(self.rec.feature_id)
        if found is None:
            raise NotFound("feature not found")
        return Feature.of(found)

    @subject_field(parent_entitlement)
    async def value(self, info: Info, at: datetime | None = None) -> EntitlementValue:
        return EntitlementValue.of(await loaders.values(info).load((self.rec, at)))


def _common(e: EntitlementRecord) -> dict[str, object]:
    return {"id": strawberry.ID(e.id), "type": EntitlementType(e.type), "subject_key": e.subject_key,
            "feature_id": strawberry.ID(e.feature_id), "feature_key": e.feature_key, "metadata": e.metadata,
            "created_at": e.created_at, "updated_at": e.updated_at, "deleted_at": e.deleted_at, "rec": e}


@strawberry.type
class BooleanEntitlement(Entitlement):
    pass


@strawberry.type
class StaticEntitlement(Entitlement):
    config: JSON


@strawberry.type
class GrantUsage:
    grant_id: strawberry.ID
    usage: float


@strawberry.type
class GrantBalance:
    grant_id: strawberry.ID
    balance: float


@strawberry.type
class BurndownSegment:
    period: TimePeriod
    usage: float
    overage: float
    balance_at_start: float
    balance_at_end: float
    grant_balances_at_start: list[GrantBalance]
    grant_balances_at_end: list[GrantBalance]
    grant_usages: list[GrantUsage]


@strawberry.type
class BalanceWindow:
    period: TimePeriod
    usage: float
    balance_at_start: float


@strawberry.type
class EntitlementHistory:
    windowed_history: list[BalanceWindow]
    burndown_history: list[BurndownSegment]


def _balances(m: dict[str, Decimal] | object) -> list[GrantBalance]:
    assert isinstance(m, dict)
    return [GrantBalance(grant_id=strawberry.ID(k), balance=float(v)) for k, v in m.items()]


@strawberry.type
class MeteredEntitlement(Entitlement):
    is_soft_limit: bool
    measure_usage_from: datetime
    issue_after_reset: float | None
    issue_after_reset_priority: int | None

    # the period fields: computed by services (entitlements.usage_periods), batched per request
    @strawberry.field
    async def usage_period(self, info: Info) -> UsagePeriod:
        p = await loaders.usage_periods(info).load(self.rec)
        return UsagePeriod(interval=RecurringPeriod(p.interval), anchor=p.anchor)

    @strawberry.field
    async def current_usage_period(self, info: Info) -> TimePeriod:
        p = await loaders.usage_periods(info).load(self.rec)
        return TimePeriod(from_=p.current_from, to=p.current_to)

    @strawberry.field
    async def last_reset(self, info: Info) -> datetime:
        return (await loaders.usage_periods(info).load(self.rec)).last_reset

    @subject_field(parent_entitlement)
    async def grants(self, info: Info, include_voided: bool | None = True) -> list[Annotated[
            Grant, strawberry.lazy("creditgate.adapters.graphql.grants")]]:
        from creditgate.adapters.graphql.grants import Grant

        found = await loaders.grants(info).load(self.rec.id)
        now = info.context.rt.now()
        return [Grant.of(g, now) for g in found if include_voided is not False or g.voided_at is None]

    @subject_field(parent_entitlement)
    async def history(self, info: Info, window_size: WindowSize, from_: Annotated[
            datetime | None, strawberry.argument(name="from")] = None, to: datetime | None = None,
            window_time_zone: str | None = "UTC") -> EntitlementHistory:
        h = await history_svc.history(info.context.rt, self.rec, WindowSize(window_size).value, from_, to,
                                          window_time_zone or "UTC")
        return EntitlementHistory(
            windowed_history=[BalanceWindow(period=TimePeriod(from_=w.start, to=w.end), usage=float(w.usage),
                                            balance_at_start=float(w.balance_at_start)) for w in h.windows],
            burndown_history=[BurndownSegment(
                period=TimePeriod(from_=s.start, to=s.end), usage=float(s.usage), overage=float(s.overage),
                balance_at_start=float(s.balance_at_start), balance_at_end=float(s.balance_at_end),
                grant_balances_at_start=_balances(dict(s.balances_at_start)),
                grant_balances_at_end=_balances(dict(s.balances_at_end)),
                grant_usages=[GrantUsage(grant_id=strawberry.ID(k), usage=float(v)) for k, v in s.grant_usage.items()],
            ) for s in h.segments])


def of(e: EntitlementRecord) -> Entitlement:
    if e.type == "METERED":
        assert e.measure_usage_from is not None
        return MeteredEntitlement(**_common(e), is_soft_limit=e.is_soft_limit,  # type: ignore[arg-type]
                                  measure_usage_from=e.measure_usage_from,
                                  issue_after_reset=num(e.issue_after_reset),
                                  issue_after_reset_priority=e.issue_after_reset_priority)
    if e.type == "STATIC":
        return StaticEntitlement(**_common(e), config=e.config)  # type: ignore[arg-type]
    return BooleanEntitlement(**_common(e))  # type: ignore[arg-type]


@strawberry.input
class UsagePeriodInput:
    interval: RecurringPeriod
    anchor: datetime | None = None


@strawberry.input
class CreateEntitlementInput:
    type: EntitlementType
    feature_key: str
    metadata: JSON | None = None
    usage_period: UsagePeriodInput | None = None
    is_soft_limit: bool | None = None
    measure_usage_from: datetime | None = None
    issue_after_reset: float | None = None
    issue_after_reset_priority: int | None = None
    config: JSON | None = None


@strawberry.input
class BatchEntitlementInput:
    subject_key: str
    input: CreateEntitlementInput


def _entitlement_input(input: CreateEntitlementInput) -> svc.EntitlementInput:
    up = input.usage_period
    return svc.EntitlementInput(
        type=input.type.value, feature_key=input.feature_key, metadata=input.metadata,
        usage_period_interval=up.interval.value if up else None, usage_period_anchor=up.anchor if up else None,
        has_usage_period=up is not None, is_soft_limit=input.is_soft_limit,
        measure_usage_from=input.measure_usage_from, issue_after_reset=input.issue_after_reset,
        issue_after_reset_priority=input.issue_after_reset_priority, config=input.config)


@strawberry.input
class ResetEntitlementInput:
    effective_at: datetime | None = None
    retain_anchor: bool | None = False


ENTITLEMENT_TYPES = [BooleanEntitlement, StaticEntitlement, MeteredEntitlement]


@strawberry.type
class EntitlementQuery:
    @subject_field(argument)
    async def entitlements(self, info: Info, subject_key: str | None = None, feature_key: str | None = None,
                           include_deleted: bool | None = False, limit: int | None = 1000,
                           offset: int | None = 0) -> list[Entitlement]:
        found = await svc.list_entitlements(info.context.rt, subject_key, feature_key, bool(include_deleted),
                                            1000 if limit is None else limit, offset or 0)
        return [of(e) for e in found]

    @strawberry.field
    async def entitlement(self, info: Info, id: strawberry.ID) -> Entitlement | None:
        ctx = info.context
        found = await svc.get_entitlement(ctx.rt, str(id))
        if found is None:
            ctx.principal.require_admin()
            return None
        await token_svc.authorize_subject_read(ctx.rt, ctx.principal, found.subject_key)
        return of(found)


@strawberry.type
class EntitlementMutation:
    @strawberry.mutation
    async def create_entitlement(self, info: Info, subject_key: str, input: CreateEntitlementInput) -> Entitlement:
        return of(await svc.create_entitlement(info.context.admin(), subject_key, _entitlement_input(input)))

    # up to 1000 entitlements in one transaction, all or none; a failing input's error has its extensions.index
    @strawberry.mutation
    async def create_entitlements(self, info: Info, inputs: list[BatchEntitlementInput]) -> list[Entitlement]:
        found = await svc.create_entitlements(info.context.admin(),
                                              [(i.subject_key, _entitlement_input(i.input)) for i in inputs])
        return [of(e) for e in found]

    @strawberry.mutation
    async def delete_entitlement(self, info: Info, subject_key: str, entitlement_id: strawberry.ID) -> bool:
        await svc.delete_entitlement(info.context.admin(), subject_key, str(entitlement_id))
        return True

    @strawberry.mutation
    async def reset_entitlement(self, info: Info, subject_key: str, entitlement_id: strawberry.ID,
                                input: ResetEntitlementInput | None = None) -> MeteredEntitlement:
        inp = input or ResetEntitlementInput()
        e = await svc.reset_entitlement(info.context.admin(), subject_key, str(entitlement_id), inp.effective_at,
                                        bool(inp.retain_anchor))
        out = of(e)
        assert isinstance(out, MeteredEntitlement)
        return out
