"""Meter queries: the per-minute aggregates summed into windows aligned in a time zone (docs/semantics.md §1)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from creditgate.adapters.sql import meter_query as repo
from creditgate.adapters.sql import meters as meter_repo
from creditgate.domain import WindowSize, floor_m
from creditgate.domain.errors import BadInput, NotFound
from creditgate.domain.windows import window_edges, zone
from creditgate.records import Aggregation, Meter, MeterQueryRow
from creditgate.services import validation
from creditgate.services.runtime import Runtime

MINUTE = timedelta(minutes=1)
RANK: dict[str, int] = {WindowSize.MINUTE: 0, WindowSize.HOUR: 1, WindowSize.DAY: 2}


def floor_window(t: datetime, size: str, tz: ZoneInfo) -> datetime:
    """The start of the `size` window (aligned in `tz`) holding `t`."""
    t = floor_m(t)
    if size == WindowSize.MINUTE:
        return t
    span = timedelta(days=2) if size == WindowSize.DAY else timedelta(hours=2)
    edges = window_edges(t - span, t + MINUTE, WindowSize(size), tz)
    return max(e for e in edges if e <= t)


def is_aligned(t: datetime, size: str, tz: ZoneInfo) -> bool:
    return floor_window(t, size, tz) == t


def ceil_window(t: datetime, size: str, tz: ZoneInfo) -> datetime:
    start = floor_window(t, size, tz)
    if start == t:
        return t
    if size == WindowSize.MINUTE:
        return start + MINUTE
    return window_edges(start, start + timedelta(days=2), WindowSize(size), tz)[0]


@dataclass
class _Cell:
    sum: Decimal = Decimal(0)
    count: int = 0
    min: float | None = None
    max: float | None = None
    values: set[str] = field(default_factory=set)
    imported: Decimal = Decimal(0)  # imported UNIQUE_COUNT minutes: the source's counts (docs/import.md)


def _value(agg: str, cell: _Cell) -> Decimal:
    if agg == Aggregation.SUM:
        return cell.sum
    if agg == Aggregation.COUNT:
        return Decimal(cell.count)
    if agg == Aggregation.AVG:
        return cell.sum / cell.count if cell.count else Decimal(0)
    if agg == Aggregation.MIN:
        return Decimal(repr(cell.min)) if cell.min is not None else Decimal(0)
    if agg == Aggregation.MAX:
        return Decimal(repr(cell.max)) if cell.max is not None else Decimal(0)
    return len(cell.values) + cell.imported


def _check_groups(meter: Meter, group_by: Sequence[str] | None, filters: Any) -> tuple[list[str], dict[str, str]]:
    names = list(dict.fromkeys(group_by or []))
    unknown = [n for n in names if n != "subject" and n not in meter.group_by]
    if unknown:
        raise BadInput(f"unknown groupBy key(s) for meter {meter.slug!r}: {', '.join(unknown)}")
    filters = validation.string_map(filters, "filterGroupBy")
    unknown = [k for k in filters if k not in meter.group_by]
    if unknown:
        raise BadInput(f"unknown filterGroupBy key(s) for meter {meter.slug!r}: {', '.join(unknown)}")
    return names, dict(filters)


async def query_meter(rt: Runtime, id_or_slug: str, *, from_: datetime | None = None, to: datetime | None = None,
                      window_size: str | None = None, window_time_zone: str = "UTC",
                      subjects: Sequence[str] | None = None, filter_group_by: Any = None,
                      group_by: Sequence[str] | None = None) -> list[MeterQueryRow]:
    """One row per (window, subject?, group values) with data, ordered by window start."""
    validation.lookup(id_or_slug, "meter id or slug")
    validation.lookups(subjects or (), "subject")
    validation.lookups(group_by or (), "groupBy")
    tz = zone(validation.lookup(window_time_zone or "UTC", "windowTimeZone"))
    async with rt.db.read() as s:
        meter = await meter_repo.get_meter(s, id_or_slug)
        if meter is None:
            raise NotFound(f"meter {id_or_slug!r} not found")
        names, filters = _check_groups(meter, group_by, filter_group_by)
        if window_size is not None:
            if window_size not in RANK:
                raise BadInput("windowSize must be MINUTE, HOUR or DAY")
            if RANK[window_size] < RANK[meter.window_size]:
                raise BadInput(f"windowSize {window_size} is finer than the meter's {meter.window_size}")
        for name, t in (("from", from_), ("to", to)):
            if t is not None and not is_aligned(t.astimezone(UTC), meter.window_size, tz):
                raise BadInput(f"{name} is not aligned to the meter's window size {meter.window_size} "
                               f"in {window_time_zone}")
        to = to.astimezone(UTC) if to is not None else ceil_window(rt.now(), meter.window_size, tz)
        if from_ is None:
            # with windows, `from` only bounds the rows (each window with data starts at or after the first
            # minute of the subjects asked for), so the earliest of those subjects answers the same rows
            # without reading the whole meter; without windows, windowStart is `from` itself (the meter's)
            earliest = await repo.earliest_minute(s, meter.id, subjects if window_size is not None else None)
            if earliest is None or earliest >= to:
                return []
            from_ = floor_window(earliest, window_size or meter.window_size, tz)
        from_ = from_.astimezone(UTC)
        if to <= from_:
            raise BadInput("to must be after from")
        by_subject = "subject" in names or subjects is not None
        by_minute = window_size is not None
        if meter.aggregation == Aggregation.UNIQUE_COUNT:
            vrows = await repo.distinct_values(s, meter.id, from_, to, subjects=subjects,
                                               by_subject=by_subject, by_minute=by_minute)
            imported = [r for r in await repo.aggregates(s, meter.id, from_, to, subjects=subjects,
                                                         by_subject=by_subject, by_minute=by_minute) if r.imported]
            rows: list[Any] = [*vrows, *imported]
        else:
            rows = await repo.aggregates(s, meter.id, from_, to, subjects=subjects,
                                         by_subject=by_subject, by_minute=by_minute)
    minutes = window_size == WindowSize.MINUTE
    # the HOUR/DAY window of each minute with data, clipped to [from, to): found from the data, never by
    # listing every window of the range (a range over centuries is cheap, docs/semantics.md §1)
    window_of: dict[datetime, tuple[datetime, datetime]] = {}
    if window_size is not None and not minutes:
        current = (to, to)
        for m in sorted({r.minute for r in rows if r.minute is not None}):
            if not current[0] <= m < current[1]:
                start = floor_window(m, window_size, tz)
                current = (max(start, from_), min(ceil_window(start + MINUTE, window_size, tz), to))
            window_of[m] = current
    ends: dict[datetime, datetime] = dict(window_of.values())
    group_names = [n for n in names if n != "subject"]
    cells: dict[tuple[datetime, str, tuple[str | None, ...]], _Cell] = {}
    parsed: dict[str, dict[str, str | None]] = {}
    for r in rows:
        groups = parsed.get(r.group_key)
        if groups is None:
            groups = parsed[r.group_key] = orjson.loads(r.group_key)
        if any(groups.get(k) != v for k, v in filters.items()):
            continue
        if r.minute is None:
            start = from_
        elif minutes:
            start = r.minute
        else:
            start = window_of[r.minute][0]
        key = (start, r.subject or "", tuple(groups.get(n) for n in group_names))
        cell = cells.get(key)
        if cell is None:
            cell = cells[key] = _Cell()
        if isinstance(r, repo.ValueRow):
            cell.values.add(r.value)
            continue
        cell.sum += r.sum
        cell.count += r.count
        cell.imported += r.imported
        if r.min is not None:
            cell.min = r.min if cell.min is None else min(cell.min, r.min)
        if r.max is not None:
            cell.max = r.max if cell.max is None else max(cell.max, r.max)
    out: list[MeterQueryRow] = []
    for (start, subject, values), cell in sorted(cells.items(), key=lambda kv: (
            kv[0][0], kv[0][1], tuple((v is None, v or "") for v in kv[0][2]))):
        if window_size is None:
            end = to
        elif minutes:
            end = start + MINUTE
        else:
            end = ends[start]
        out.append(MeterQueryRow(window_start=start, window_end=end, value=_value(meter.aggregation, cell),
                                 subject=subject if by_subject else None,
                                 group_by=dict(zip(group_names, values, strict=True))))
    return out


async def list_meter_subjects(rt: Runtime, id_or_slug: str) -> list[str]:
    """The subjects that have data in the meter."""
    validation.lookup(id_or_slug, "meter id or slug")
    async with rt.db.read() as s:
        meter = await meter_repo.get_meter(s, id_or_slug)
        if meter is None:
            raise NotFound(f"meter {id_or_slug!r} not found")
        return await repo.meter_subjects(s, meter.id)
