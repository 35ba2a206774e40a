"""The amounts both databases can hold: at most 26 integer digits and 12 decimal places.

A storage bound that input rules also enforce (services refuse what storage could not keep),
so it lives below both (docs/semantics.md §0.3)."""

from __future__ import annotations

from decimal import Decimal, localcontext

PRECISION = 38
SCALE = 12  # decimal places stored (NUMERIC(38, 12) on PostgreSQL; SQLite is made to agree)
QUANTUM = Decimal(1).scaleb(-SCALE)
LIMIT = Decimal(1).scaleb(PRECISION - SCALE)  # amounts at or above this do not fit


def fit_stored(value: Decimal) -> Decimal:
    """`value` as both databases store it: rounded to SCALE places; ValueError when too large."""
    if abs(value) >= LIMIT:
        raise ValueError("is out of range")
    if value.as_tuple().exponent < -SCALE:  # type: ignore[operator]
        with localcontext() as ctx:
            ctx.prec = 2 * PRECISION
            return value.quantize(QUANTUM)
    return value
