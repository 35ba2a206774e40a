"""The pure core: data types, recurrence maths and the balance engine."""

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
]
