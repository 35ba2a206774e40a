"""The pure core: data types, recurrence maths and the balance engine."""

from creditgate.domain.engine import next_change, state_at, value_at
from creditgate.domain.history import burndown, windowed_history
from creditgate.domain.model import (
    Grant,
    Interval,
    ManualReset,
    Metered,
    Recurrence,
    Segment,
    State,
    UsageFn,
    Value,
    Window,
    WindowSize,
)
from creditgate.domain.periods import current_usage_period, period_start, period_starts, reset_instants
from creditgate.domain.recurrence import (
    add_interval,
    ceil_m,
    floor_m,
    recurrence_after,
    recurrence_at_or_after,
    recurrence_at_or_before,
)

__all__ = [
    "Grant",
    "Interval",
    "ManualReset",
    "Metered",
    "Recurrence",
    "Segment",
    "State",
    "UsageFn",
    "Value",
    "Window",
    "WindowSize",
    "add_interval",
    "burndown",
    "ceil_m",
    "current_usage_period",
    "floor_m",
    "next_change",
    "period_start",
    "period_starts",
    "recurrence_after",
    "recurrence_at_or_after",
    "recurrence_at_or_before",
    "reset_instants",
    "state_at",
    "value_at",
    "windowed_history",
]
