"""Reads of the per-minute aggregates (never the raw events)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from creditgate.adapters.sql.tables import MeterMinuteRow, MeterMinuteValueRow
from creditgate.adapters.sql.types import exact_sum

M = MeterMinuteRow
V = MeterMinuteValueRow


@dataclass(frozen=True, slots=True)
class AggRow:
    """Aggregates of one (subject?, group_key, minute?) cell."""

    subject: str | None
    group_key: str
    minute: datetime | None
    sum: Decimal
    count: int
    min: float | None
    max: float | None
    imported: Decimal = Decimal(0)  # the sum of imported minute values (`creditgate import`)


@dataclass(frozen=True, slots=True)
class ValueRow:
    subject: str | None
    group_key: str
    minute: datetime | None
    value: str


def _where(stmt: Any, table: Any, meter_id: str, from_: datetime, to: datetime,
           subjects: Sequence[str] | None) -> Any:
    stmt = stmt.where(col(table.meter_id) == meter_id, col(table.minute) >= from_, col(table.minute) < to)
    if subjects is not None:
        stmt = stmt.where(col(table.subject).in_(list(subjects)))
    return stmt


async def aggregates(session: AsyncSession, meter_id: str, from_: datetime, to: datetime, *,
                     subjects: Sequence[str] | None, by_subject: bool, by_minute: bool) -> list[AggRow]:
    keys: list[Any] = [col(M.group_key)]
    if by_subject:
        keys.append(col(M.subject))
    if by_minute:
        keys.append(col(M.minute))
    stmt = select(*keys, exact_sum(col(M.sum)), func.sum(col(M.count)), func.min(col(M.min)), func.max(col(M.max)),
                  exact_sum(col(M.imported)))
    stmt = _where(stmt, M, meter_id, from_, to, subjects).group_by(*keys)
    out: list[AggRow] = []
    for r in (await (await session.connection()).execute(stmt)).all():
        subject = r[1] if by_subject else None
        minute = r[len(keys) - 1] if by_minute else None
        total, count, lo, hi, imported = r[len(keys):]
        out.append(AggRow(subject, r[0], minute, total if total is not None else Decimal(0), int(count), lo, hi,
                          imported if imported is not None else Decimal(0)))
    return out


async def distinct_values(session: AsyncSession, meter_id: str, from_: datetime, to: datetime, *,
                          subjects: Sequence[str] | None, by_subject: bool, by_minute: bool) -> list[ValueRow]:
    keys: list[Any] = [col(V.group_key), col(V.value)]
    if by_subject:
        keys.append(col(V.subject))
    if by_minute:
        keys.append(col(V.minute))
    stmt = _where(select(*keys).distinct(), V, meter_id, from_, to, subjects)
    out: list[ValueRow] = []
    for r in (await (await session.connection()).execute(stmt)).all():
        out.append(ValueRow(r[2] if by_subject else None, r[0], r[len(keys) - 1] if by_minute else None, r[1]))
    return out


async def earliest_minute(session: AsyncSession, meter_id: str,
                          subjects: Sequence[str] | None = None) -> datetime | None:
    """The meter's first minute with data, of these subjects only when given: the (meter, subject, minute)
    index then answers from those subjects' rows alone, where the meter's first minute reads every row of
    the meter (no index leads with (meter, minute))."""
    stmt = select(func.min(col(M.minute))).where(col(M.meter_id) == meter_id)
    if subjects is not None:
        stmt = stmt.where(col(M.subject).in_(list(subjects)))
    value: datetime | None = (await (await session.connection()).execute(stmt)).scalar()
    return value


async def meter_subjects(session: AsyncSession, meter_id: str) -> list[str]:
    stmt = select(col(M.subject)).distinct().where(col(M.meter_id) == meter_id).order_by(col(M.subject))
    return [r[0] for r in (await (await session.connection()).execute(stmt)).all()]
