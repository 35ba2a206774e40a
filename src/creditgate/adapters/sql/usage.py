"""Metered usage for the balance engine, from the usage aggregates (docs/semantics.md §0.2, §1.9, §6).

`load_usage` answers many requests in ONE statement: each request is one entitlement's sorted
boundaries b0 < ... < bn, and U(b_i, b_i+1) sums its meter's minutes in [b_i, b_i+1) for its
subject and group filters. Each interval is cut into at most five ranges read from three tables:
minutes (`meter_minutes`) for the partial hours at its edges, hours (`usage_hours`) for the partial
days, days (`usage_days`) for the whole days between. The hour and day tables hold the same sums as
the minutes (database triggers keep them in step, migration 0004), so the answer is the minute sum
exactly, and a read costs O(boundaries) rows, whatever the length of the history: at most
59 minutes + 23 hours on each side of a boundary, plus one row per whole day.

Each range is one index probe (PostgreSQL: a LATERAL aggregate per element of a JSON array of ranges;
SQLite: a correlated aggregate per element of a JSON array). Past the last boundary only the
earliest stored minute is read: stored future usage starts counting when that minute arrives,
which bounds how long a cached value stays fresh.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from typing import Any

import orjson
from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from creditgate.adapters.sql.dialect import dialect_name
from creditgate.adapters.sql.types import as_utc, to_decimal
from creditgate.amounts import PRECISION

ZERO = Decimal(0)
MAX_PARAMS = 20_000
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
# table, its time column, its group column: minutes, hours, days
TABLES = (("meter_minutes", "minute", "groups"), ("usage_hours", "at", "group_key"), ("usage_days", "at", "group_key"))
Range = tuple[datetime, datetime, int]  # [lo, hi) of one table, for interval i


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


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _floor(t: datetime, step: timedelta) -> datetime:
    return t - (t - EPOCH) % step  # datetime.replace costs ~10x this


def _ceil(t: datetime, step: timedelta) -> datetime:
    rest = (t - EPOCH) % step
    return t - rest + step if rest else t


def split(bounds: Sequence[datetime]) -> tuple[list[Range], list[Range], list[Range]]:
    """The ranges of (minutes, hours, days) that make up each interval [b_i, b_i+1) (UTC buckets)."""
    minutes: list[Range] = []
    hours: list[Range] = []
    days: list[Range] = []
    utc = [t if t.tzinfo is UTC else t.astimezone(UTC) for t in bounds]
    for i, (a, b) in enumerate(itertools.pairwise(utc)):
        try:
            ha, hb = _ceil(a, HOUR), _floor(b, HOUR)
            da, db = _ceil(ha, DAY), _floor(hb, DAY)
        except OverflowError:  # at the end of the calendar: minutes only
            ha = hb = da = db = b
        if ha >= hb:
            minutes.append((a, b, i))
            continue
        if a < ha:
            minutes.append((a, ha, i))
        if hb < b:
            minutes.append((hb, b, i))
        if da >= db:
            hours.append((ha, hb, i))
            continue
        if ha < da:
            hours.append((ha, da, i))
        days.append((da, db, i))
        if db < hb:
            hours.append((db, hb, i))
    return minutes, hours, days


def _sqlite_ts(t: datetime) -> str:
    return t.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def _filters(r: UsageRequest, p: str, pg: bool, groups: str, params: dict[str, Any]) -> str:
    out = ""
    for j, (name, value) in enumerate(sorted(r.filters.items())):
        params[f"{p}fv{j}"] = value
        if pg:
            params[f"{p}fk{j}"] = name
            doc = "t.groups" if groups == "groups" else "CAST(t.group_key AS jsonb)"
            out += f" AND {doc} ->> :{p}fk{j} = :{p}fv{j}"
        else:
            params[f"{p}fk{j}"] = '$."' + name.replace('"', '') + '"'
            out += f" AND json_extract(t.{groups}, :{p}fk{j}) = :{p}fv{j}"
    return out


def _parts(k: int, r: UsageRequest, pg: bool, params: dict[str, Any]) -> list[str]:
    p = f"p{k}_"
    params[p + "m"] = r.meter_id
    params[p + "s"] = r.subject
    total = "t.count" if r.count else "t.sum"
    where = f"t.meter_id = :{p}m AND t.subject = :{p}s"
    parts = []
    for n, (table, ts, groups), ranges in zip(range(3), TABLES, split(r.bounds), strict=True):
        if not ranges:
            continue
        q = f"{p}{n}"
        cond = f"{where}{_filters(r, q, pg, groups, params)}"
        if pg:  # the ranges as one JSON text: psycopg's array dumping costs ~20 us per element
            params[q + "r"] = orjson.dumps([{"lo": lo, "hi": hi, "i": i} for lo, hi, i in ranges]).decode()
            parts.append(
                f"SELECT {k} AS r, x.i AS i, y.u AS u, CAST(NULL AS timestamptz) AS m "
                f"FROM json_to_recordset(CAST(:{q}r AS json)) AS x(lo timestamptz, hi timestamptz, i int) "
                f"CROSS JOIN LATERAL (SELECT sum({total}) AS u FROM {table} AS t "
                f"WHERE {cond} AND t.{ts} >= x.lo AND t.{ts} < x.hi) AS y WHERE y.u IS NOT NULL")
        else:
            params[q + "r"] = orjson.dumps([(_sqlite_ts(lo), _sqlite_ts(hi), i) for lo, hi, i in ranges]).decode()
            agg = f"sum({total})" if r.count else f"dsum({total})"
            parts.append(
                f"SELECT {k} AS r, json_extract(x.value, '$[2]') AS i, (SELECT {agg} FROM {table} AS t "
                f"WHERE {cond} AND t.{ts} >= json_extract(x.value, '$[0]') AND t.{ts} < json_extract(x.value, '$[1]'))"
                f" AS u, NULL AS m FROM json_each(:{q}r) AS x")
    last = r.bounds[-1]
    params[p + "last"] = last if pg else _sqlite_ts(last)
    lo = f"CAST(:{p}last AS timestamptz)" if pg else f":{p}last"
    u = "CAST(NULL AS numeric)" if pg else "NULL"
    # ORDER BY .. LIMIT 1: one index probe (min() here scans every later minute on both databases)
    parts.append(f"SELECT {k} AS r, -1 AS i, {u} AS u, (SELECT t.minute FROM meter_minutes AS t "
                 f"WHERE {where} AND t.minute >= {lo}{_filters(r, p + 'n', pg, 'groups', params)} "
                 "ORDER BY t.minute LIMIT 1) AS m")
    return parts


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
                parts.extend(_parts(k, requests[k], pg, params))
            k += 1
        if not parts:
            continue
        conn = await session.connection()
        rows = (await conn.execute(text(" UNION ALL ".join(parts)), params)).all()
        with localcontext() as ctx:
            ctx.prec = PRECISION
            for r, i, u, m in rows:
                ans = answers[r]
                if i < 0:
                    ans.next_minute = as_utc(m)
                elif u is not None:
                    ans.usage[i] += to_decimal(u)
    return answers
