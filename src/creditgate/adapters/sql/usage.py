"""Metered usage for the balance engine, from the per-minute aggregates (docs/semantics.md §1, §6).

`load_usage` answers many requests in ONE statement: each request is one entitlement's
sorted boundaries b0 < ... < bn; every minute bucket m in [b0, +inf) of its meter,
subject and group filters falls into interval i (b_i <= m < b_i+1) or past the end.
PostgreSQL buckets with width_bucket over an array; SQLite with a CASE chain. Past
the end we only keep the earliest minute: stored future usage starts counting when
that minute arrives, which bounds how long a cached value stays fresh.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from creditgate.adapters.sql.dialect import dialect_name
from creditgate.adapters.sql.types import as_utc, to_decimal

ZERO = Decimal(0)
MAX_PARAMS = 20_000


@dataclass(frozen=True, slots=True)
class UsageRequest:
    meter_id: str
    count: bool  # COUNT meters sum `count`, SUM meters sum `sum`
    subject: str
    filters: dict[str, str]
    bounds: Sequence[datetime]


@dataclass(slots=True)
class UsageAnswer:
    usage: list[Decimal]
    next_minute: datetime | None = None  # first stored minute >= bounds[-1]
    extra: dict[str, Any] = field(default_factory=dict)


def _sqlite_ts(t: datetime) -> str:
    return t.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def _part(k: int, r: UsageRequest, pg: bool, params: dict[str, Any]) -> str:
    p = f"p{k}_"
    params[p + "m"] = r.meter_id
    params[p + "s"] = r.subject
    b = list(r.bounds)
    if pg:
        params[p + "b"] = b
        params[p + "lo"] = b[0]
        bucket = f"width_bucket(minute, CAST(:{p}b AS timestamptz[])) - 1"
        total = "sum(count)" if r.count else "sum(sum)"
        lo = f"CAST(:{p}lo AS timestamptz)"
    else:
        whens = []
        for i in range(1, len(b)):
            params[f"{p}b{i}"] = _sqlite_ts(b[i])
            whens.append(f"WHEN minute < :{p}b{i} THEN {i - 1}")
        params[p + "lo"] = _sqlite_ts(b[0])
        bucket = f"CASE {' '.join(whens)} ELSE {len(b) - 1} END"
        total = "sum(count)" if r.count else "dsum(sum)"
        lo = f":{p}lo"
    filters = ""
    for j, (name, value) in enumerate(sorted(r.filters.items())):
        params[f"{p}fk{j}"] = name
        params[f"{p}fv{j}"] = value
        if pg:
            filters += f" AND groups ->> :{p}fk{j} = :{p}fv{j}"
        else:
            params[f"{p}fk{j}"] = '$."' + name.replace('"', '') + '"'
            filters += f" AND json_extract(groups, :{p}fk{j}) = :{p}fv{j}"
    return (f"SELECT {k} AS r, {bucket} AS i, {total} AS u, min(minute) AS m FROM meter_minutes "
            f"WHERE meter_id = :{p}m AND subject = :{p}s AND minute >= {lo}{filters} GROUP BY 2")


async def load_usage(session: AsyncSession, requests: Sequence[UsageRequest]) -> list[UsageAnswer]:
    """U(b_i, b_i+1) for every request, in as few statements as the parameter limits allow (one, usually)."""
    answers = [UsageAnswer([ZERO] * (len(r.bounds) - 1)) for r in requests]
    pg = dialect_name(session) == "postgresql"
    k = 0
    while k < len(requests):
        params: dict[str, Any] = {}
        parts: list[str] = []
        while k < len(requests) and (not parts or len(params) < MAX_PARAMS):
            if len(requests[k].bounds) >= 2:
                parts.append(_part(k, requests[k], pg, params))
            k += 1
        if not parts:
            continue
        conn = await session.connection()
        rows = (await conn.execute(text(" UNION ALL ".join(parts)), params)).all()
        for r, i, u, m in rows:
            ans = answers[r]
            if i < len(ans.usage):
                ans.usage[i] = to_decimal(u) if u is not None else ZERO
            else:
                ans.next_minute = as_utc(m)
    return answers
