"""Plain data the balance engine reads and returns (docs/semantics.md §4-§7).

All datetimes are aware UTC. Amounts are Decimal; adapters convert at the edges.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum


class Interval(StrEnum):
    HOUR = "HOUR"  # only for grant expirations
    DAY = "DAY"
    WEEK = "WEEK"
    MONTH = "MONTH"
    YEAR = "YEAR"


class WindowSize(StrEnum):
    MINUTE = "MINUTE"
    HOUR = "HOUR"
    DAY = "DAY"


@dataclass(frozen=True, slots=True)
class Recurrence:
    """Instants `anchor + n*interval` for every integer n."""

    interval: Interval
    anchor: datetime


@dataclass(frozen=True, slots=True)
class Grant:
    id: str
    amount: Decimal
    priority: int
    effective_at: datetime
    expires_at: datetime  # exclusive
    created_at: datetime
    voided_at: datetime | None = None
    recurrence: Recurrence | None = None
    min_rollover: Decimal = Decimal(0)
    max_rollover: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class ManualReset:
    at: datetime
    retain_anchor: bool


@dataclass(frozen=True, slots=True)
class Metered:
    """A metered entitlement as the engine sees it."""

    measure_usage_from: datetime
    usage_period: Recurrence
    is_soft_limit: bool = False
    resets: tuple[ManualReset, ...] = ()  # manual resets, any order


@dataclass(frozen=True, slots=True)
class State:
    """Per-grant balances and carried overage at an instant (see `engine.state_at`).

    `balances` must hold every grant the engine was given (zeros included): a grant
    effective at or before `at` that is missing marks the snapshot as stale.
    `period_usage` is U(period_start(at), at) when known; None makes a read that
    starts from this snapshot also fetch the usage since the period start.
    """

    at: datetime
    balances: Mapping[str, Decimal]
    overage: Decimal
    period_usage: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Value:
    at: datetime
    period_start: datetime
    balance: Decimal
    overage: Decimal
    usage: Decimal
    has_access: bool
    balances: Mapping[str, Decimal]


@dataclass(frozen=True, slots=True)
class Segment:
    """One burn-down segment (docs/semantics.md §6.2, §7)."""

    start: datetime
    end: datetime
    usage: Decimal
    overage: Decimal
    balance_at_start: Decimal
    balance_at_end: Decimal
    balances_at_start: Mapping[str, Decimal]
    balances_at_end: Mapping[str, Decimal]
    grant_usage: Mapping[str, Decimal]


@dataclass(frozen=True, slots=True)
class Window:
    start: datetime
    end: datetime
    usage: Decimal
    balance_at_start: Decimal


UsageFn = Callable[[Sequence[datetime]], Sequence[Decimal]]
"""Given sorted instants b0 < b1 < ... < bn (n >= 1, all on whole minutes) returns
[U(b0,b1), ..., U(bn-1,bn)]. The engine calls it once per operation."""
