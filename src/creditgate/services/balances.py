"""The bridge between storage and the pure balance engine.

`load_bundles` loads what the engine needs for many entitlements in a fixed number of
statements (features with meters; grants, resets and snapshots). `run_ops` runs engine
operations whose usage comes from the database: the engine asks for usage once per
operation, synchronously, with boundaries it derives from grants and resets only. So
each operation runs twice: first with a usage function that records the boundaries
and stops, then (after ONE batched usage query for all operations) with the answers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from creditgate.adapters.sql.bundles import engine_inputs
from creditgate.adapters.sql.db import Session
from creditgate.adapters.sql.features import features_with_meters
from creditgate.adapters.sql.usage import UsageRequest, load_usage
from creditgate.domain import Grant as EngineGrant
from creditgate.domain import Interval, ManualReset, Metered, Recurrence, State, add_interval
from creditgate.records import Aggregation, Entitlement, EntitlementType, Feature, Grant, Meter, Reset

T = TypeVar("T")
Op = Callable[[Callable[[Sequence[datetime]], Sequence[Decimal]]], T]


@dataclass(slots=True)
class Bundle:
    ent: Entitlement
    feature: Feature | None
    meter: Meter | None
    grants: list[Grant]
    resets: list[Reset]
    snapshot: State | None
    metered: Metered | None
    engine_grants: list[EngineGrant]


def to_metered(ent: Entitlement, resets: Sequence[Reset]) -> Metered:
    assert ent.usage_period_interval and ent.usage_period_anchor and ent.measure_usage_from
    return Metered(measure_usage_from=ent.measure_usage_from,
                   usage_period=Recurrence(Interval(ent.usage_period_interval), ent.usage_period_anchor),
                   is_soft_limit=ent.is_soft_limit,
                   resets=tuple(ManualReset(r.reset_at, r.retain_anchor) for r in resets))


def to_engine_grant(g: Grant) -> EngineGrant:
    rec = None
    if g.recurrence_interval and g.recurrence_anchor:
        rec = Recurrence(Interval(g.recurrence_interval), g.recurrence_anchor)
    return EngineGrant(id=g.id, amount=g.amount, priority=g.priority, effective_at=g.effective_at,
                       expires_at=g.expires_at, created_at=g.created_at, voided_at=g.voided_at, recurrence=rec,
                       min_rollover=g.min_rollover, max_rollover=g.max_rollover)


def expires_at(effective_at: datetime, duration: str, count: int) -> datetime:
    return add_interval(effective_at, Interval(duration), count)


async def load_bundles(session: Session, ents: Sequence[Entitlement],
                       snapshot_limits: dict[str, datetime] | None) -> dict[str, Bundle]:
    """Bundles of the METERED entitlements among `ents`; snapshots only with `snapshot_limits`."""
    metered = {e.id: e for e in ents if e.type == EntitlementType.METERED}
    if not metered:
        return {}
    ids = sorted(metered)
    features = await features_with_meters(session, sorted({e.feature_id for e in metered.values()}))
    inputs = await engine_inputs(session, ids, snapshot_limits or None)
    out: dict[str, Bundle] = {}
    for i in ids:
        e = metered[i]
        f, m = features.get(e.feature_id, (None, None))
        gs = inputs.grants[i]
        rs = inputs.resets[i]
        out[i] = Bundle(e, f, m, gs, rs, inputs.snapshots.get(i), to_metered(e, rs), [to_engine_grant(g) for g in gs])
    return out


class _Captured(Exception):
    def __init__(self, bounds: Sequence[datetime]) -> None:
        super().__init__("boundaries captured")
        self.bounds = list(bounds)


def _capture(bounds: Sequence[datetime]) -> Sequence[Decimal]:
    raise _Captured(bounds)


@dataclass(slots=True)
class Outcome:
    result: Any
    next_minute: datetime | None  # first stored usage minute at or after the last boundary
    probed: bool  # False when the operation needed no usage


async def run_ops(session: Session, ops: Sequence[tuple[Bundle, Op[Any]]]) -> list[Outcome]:
    """Run engine operations with usage from the database: one usage statement for all of them."""
    outcomes: list[Outcome | None] = [None] * len(ops)
    pending: list[tuple[int, list[datetime]]] = []
    for k, (_bundle, op) in enumerate(ops):
        try:
            outcomes[k] = Outcome(op(_capture), None, False)
        except _Captured as cap:
            pending.append((k, cap.bounds))
    requests: list[UsageRequest] = []
    for k, bounds in pending:
        b = ops[k][0]
        feature, meter = b.feature, b.meter
        if meter is None or feature is None:
            requests.append(UsageRequest("", False, b.ent.subject_key, {}, bounds))  # no meter: no usage
        else:
            requests.append(UsageRequest(meter.id, meter.aggregation == Aggregation.COUNT, b.ent.subject_key,
                                         dict(feature.meter_group_by_filters), bounds))
    answers = await load_usage(session, requests) if requests else []
    for (k, bounds), ans in zip(pending, answers, strict=True):
        def replay(got: Sequence[datetime], bounds: list[datetime] = bounds,
                   usage: list[Decimal] = ans.usage) -> Sequence[Decimal]:
            if list(got) != bounds:
                raise RuntimeError("the engine asked for different boundaries on replay")
            return usage
        outcomes[k] = Outcome(ops[k][1](replay), ans.next_minute, True)
    return [o for o in outcomes if o is not None]
