"""Notification storage (docs/semantics.md §11): channels, rules, events, threshold marks, the delivery queue and
the evaluation work (`notification_pending`). Every lock lives here: PostgreSQL claims work with
`FOR UPDATE SKIP LOCKED` (several processes), SQLite serialises writers (one process)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import Boolean, and_, bindparam, case, delete, func, or_, text, tuple_, update
from sqlalchemy import select as core_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from creditgate.adapters.sql.dialect import dialect_name
from creditgate.adapters.sql.tables import (
    EntitlementRow,
    NotificationChannelRow,
    NotificationDeliveryRow,
    NotificationEventRow,
    NotificationMarkRow,
    NotificationPendingRow,
    NotificationRuleChannelRow,
    NotificationRuleRow,
)
from creditgate.adapters.sql.types import UTCDateTime, as_utc, dec_text, to_decimal
from creditgate.records import (
    BalanceValue,
    DeliveryState,
    DeliveryStatus,
    EntitlementType,
    NotificationChannel,
    NotificationEvent,
    NotificationRule,
    Threshold,
    ThresholdType,
)

_P: Any = NotificationPendingRow.__table__  # type: ignore[attr-defined]
_D: Any = NotificationDeliveryRow.__table__  # type: ignore[attr-defined]
_RU: Any = NotificationRuleRow.__table__  # type: ignore[attr-defined]
_E: Any = EntitlementRow.__table__  # type: ignore[attr-defined]


async def _run(session: AsyncSession, stmt: Any, params: dict[str, Any] | None = None) -> Any:
    """A Core statement on the session's connection (in its transaction)."""
    conn = await session.connection()
    return await conn.execute(stmt, params) if params is not None else await conn.execute(stmt)


# ---- channels -------------------------------------------------------------------------------------------

def _channel(row: NotificationChannelRow) -> NotificationChannel:
    return NotificationChannel(id=row.id, type=row.type, name=row.name, url=row.url,
                               custom_headers=dict(row.custom_headers or {}), signing_secret=row.signing_secret,
                               disabled=bool(row.disabled), created_at=row.created_at, updated_at=row.updated_at,
                               deleted_at=row.deleted_at)


async def insert_channel(session: AsyncSession, ch: NotificationChannel) -> None:
    session.add(NotificationChannelRow(id=ch.id, type=ch.type, name=ch.name, url=ch.url,
                                       custom_headers=ch.custom_headers, signing_secret=ch.signing_secret,
                                       disabled=ch.disabled, created_at=ch.created_at, updated_at=ch.updated_at))
    await session.flush()


async def save_channel(session: AsyncSession, ch: NotificationChannel) -> None:
    """Store every field of an existing channel."""
    await session.exec(update(NotificationChannelRow).where(col(NotificationChannelRow.id) == ch.id).values(
        name=ch.name, url=ch.url, custom_headers=ch.custom_headers, signing_secret=ch.signing_secret,
        disabled=ch.disabled, updated_at=ch.updated_at, deleted_at=ch.deleted_at))


async def get_channel(session: AsyncSession, channel_id: str, *, lock: bool = False) -> NotificationChannel | None:
    row = await session.get(NotificationChannelRow, channel_id, with_for_update=lock or None)
    return _channel(row) if row is not None else None


async def channels_by_ids(session: AsyncSession, ids: Iterable[str]) -> dict[str, NotificationChannel]:
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = (await session.exec(select(NotificationChannelRow).where(col(NotificationChannelRow.id).in_(wanted)))).all()
    return {r.id: _channel(r) for r in rows}


async def list_channels(session: AsyncSession, include_deleted: bool, include_disabled: bool, limit: int,
                        offset: int) -> tuple[list[NotificationChannel], int]:
    conds: list[Any] = []
    if not include_deleted:
        conds.append(col(NotificationChannelRow.deleted_at).is_(None))
    if not include_disabled:
        conds.append(col(NotificationChannelRow.disabled).is_(False))
    rows = (await session.exec(select(NotificationChannelRow).where(*conds)
                               .order_by(col(NotificationChannelRow.created_at), col(NotificationChannelRow.id))
                               .limit(limit).offset(offset))).all()
    total = (await session.exec(select(func.count()).select_from(NotificationChannelRow).where(*conds))).one()
    return [_channel(r) for r in rows], int(total)


async def enabled_rules_using(session: AsyncSession, channel_id: str) -> list[str]:
    """Ids of the live, enabled rules that send to the channel."""
    stmt = (select(NotificationRuleRow.id)
            .join(NotificationRuleChannelRow, col(NotificationRuleChannelRow.rule_id) == col(NotificationRuleRow.id))
            .where(col(NotificationRuleChannelRow.channel_id) == channel_id,
                   col(NotificationRuleRow.deleted_at).is_(None), col(NotificationRuleRow.disabled).is_(False))
            .order_by(col(NotificationRuleRow.id)))
    return list((await session.exec(stmt)).all())


# ---- rules ----------------------------------------------------------------------------------------------

def threshold_text(value: Decimal) -> str:
    """A threshold value's canonical text ("80", "12.5"): equal values, equal text."""
    text = format(value.normalize(), "f")
    return text


def threshold_key(t: Threshold) -> str:
    return f"{t.type.value}:{threshold_text(t.value)}"


def _thresholds_json(ts: Sequence[Threshold]) -> list[dict[str, str]]:
    return [{"type": t.type.value, "value": threshold_text(t.value)} for t in ts]


def _rule(row: NotificationRuleRow, channel_ids: Sequence[str]) -> NotificationRule:
    ts = tuple(Threshold(to_decimal(t["value"]), ThresholdType(t["type"])) for t in row.thresholds or [])
    return NotificationRule(id=row.id, type=row.type, name=row.name, thresholds=ts,
                            feature_ids=tuple(row.feature_ids) if row.feature_ids is not None else None,
                            channel_ids=tuple(channel_ids), disabled=bool(row.disabled), created_at=row.created_at,
                            updated_at=row.updated_at, deleted_at=row.deleted_at)


async def _channels_of(session: AsyncSession, rule_ids: Sequence[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {i: [] for i in rule_ids}
    if not rule_ids:
        return out
    rows = (await session.exec(select(NotificationRuleChannelRow)
                               .where(col(NotificationRuleChannelRow.rule_id).in_(sorted(set(rule_ids))))
                               .order_by(col(NotificationRuleChannelRow.position)))).all()
    for r in rows:
        out[r.rule_id].append(r.channel_id)
    return out


async def _set_channels(session: AsyncSession, rule_id: str, channel_ids: Sequence[str]) -> None:
    await session.exec(delete(NotificationRuleChannelRow).where(col(NotificationRuleChannelRow.rule_id) == rule_id))
    for i, cid in enumerate(channel_ids):
        session.add(NotificationRuleChannelRow(rule_id=rule_id, channel_id=cid, position=i))
    await session.flush()


async def insert_rule(session: AsyncSession, rule: NotificationRule) -> None:
    session.add(NotificationRuleRow(id=rule.id, type=rule.type, name=rule.name,
                                    thresholds=_thresholds_json(rule.thresholds),
                                    feature_ids=list(rule.feature_ids) if rule.feature_ids is not None else None,
                                    disabled=rule.disabled, created_at=rule.created_at, updated_at=rule.updated_at))
    await session.flush()
    await _set_channels(session, rule.id, rule.channel_ids)


async def save_rule(session: AsyncSession, rule: NotificationRule) -> None:
    """Store every field of an existing rule, its channels too."""
    await session.exec(update(NotificationRuleRow).where(col(NotificationRuleRow.id) == rule.id).values(
        name=rule.name, thresholds=_thresholds_json(rule.thresholds),
        feature_ids=list(rule.feature_ids) if rule.feature_ids is not None else None, disabled=rule.disabled,
        updated_at=rule.updated_at, deleted_at=rule.deleted_at))
    await _set_channels(session, rule.id, rule.channel_ids)


async def get_rule(session: AsyncSession, rule_id: str, *, lock: bool = False) -> NotificationRule | None:
    row = await session.get(NotificationRuleRow, rule_id, with_for_update=lock or None)
    if row is None:
        return None
    return _rule(row, (await _channels_of(session, [row.id]))[row.id])


async def rules_by_ids(session: AsyncSession, ids: Iterable[str]) -> dict[str, NotificationRule]:
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = (await session.exec(select(NotificationRuleRow).where(col(NotificationRuleRow.id).in_(wanted)))).all()
    chans = await _channels_of(session, [r.id for r in rows])
    return {r.id: _rule(r, chans[r.id]) for r in rows}


async def list_rules(session: AsyncSession, include_deleted: bool, include_disabled: bool,
                     feature_ids: Sequence[str] | None, channel_ids: Sequence[str] | None, limit: int,
                     offset: int) -> tuple[list[NotificationRule], int]:
    """Rules in creation order; with `feature_ids`, those covering any of them (rules for every feature too);
    with `channel_ids`, those sending to any of them."""
    conds: list[Any] = []
    if not include_deleted:
        conds.append(col(NotificationRuleRow.deleted_at).is_(None))
    if not include_disabled:
        conds.append(col(NotificationRuleRow.disabled).is_(False))
    if channel_ids is not None:
        conds.append(col(NotificationRuleRow.id).in_(
            select(NotificationRuleChannelRow.rule_id)
            .where(col(NotificationRuleChannelRow.channel_id).in_(sorted(set(channel_ids))))))
    stmt = select(NotificationRuleRow).where(*conds).order_by(col(NotificationRuleRow.created_at),
                                                               col(NotificationRuleRow.id))
    rows = list((await session.exec(stmt)).all())
    if feature_ids is not None:  # a JSON array: filtered here (rules are few)
        wanted = set(feature_ids)
        rows = [r for r in rows if r.feature_ids is None or wanted & set(r.feature_ids)]
    total = len(rows)
    page = rows[offset:offset + limit]
    chans = await _channels_of(session, [r.id for r in page])
    return [_rule(r, chans[r.id]) for r in page], total


async def enabled_rules(session: AsyncSession) -> list[NotificationRule]:
    rows, _ = await list_rules(session, False, False, None, None, 1_000_000, 0)
    return rows


# ---- events and marks -----------------------------------------------------------------------------------

def _value_json(v: BalanceValue) -> dict[str, Any]:
    return {"hasAccess": v.has_access, "balance": dec_text(v.balance), "usage": dec_text(v.usage),
            "overage": dec_text(v.overage)}


def _value(d: dict[str, Any]) -> BalanceValue:
    return BalanceValue(bool(d.get("hasAccess")), to_decimal(d.get("balance", "0")), to_decimal(d.get("usage", "0")),
                        to_decimal(d.get("overage", "0")))


def _delivery(row: NotificationDeliveryRow) -> DeliveryStatus:
    return DeliveryStatus(event_id=row.event_id, channel_id=row.channel_id, state=DeliveryState(row.state),
                          attempts=row.attempts, last_error=row.last_error,
                          next_attempt_at=row.next_attempt_at if row.state == DeliveryState.PENDING else None,
                          first_attempt_at=row.first_attempt_at, updated_at=row.updated_at)


def _event(row: NotificationEventRow, deliveries: Sequence[DeliveryStatus]) -> NotificationEvent:
    return NotificationEvent(id=row.id, type=row.type, rule_id=row.rule_id, subject_key=row.subject_key,
                             feature_id=row.feature_id, feature_key=row.feature_key, entitlement_id=row.entitlement_id,
                             period_start=row.period_start,
                             threshold=Threshold(row.threshold_value, ThresholdType(row.threshold_type)),
                             value=_value(row.value or {}), payload=dict(row.payload or {}),
                             annotations=dict(row.annotations or {}), created_at=row.created_at,
                             deliveries=tuple(deliveries))


async def _deliveries_of(session: AsyncSession, event_ids: Sequence[str]) -> dict[str, list[DeliveryStatus]]:
    out: dict[str, list[DeliveryStatus]] = {i: [] for i in event_ids}
    if not event_ids:
        return out
    rows = (await session.exec(select(NotificationDeliveryRow)
                               .where(col(NotificationDeliveryRow.event_id).in_(sorted(set(event_ids))))
                               .order_by(col(NotificationDeliveryRow.channel_id)))).all()
    for r in rows:
        out[r.event_id].append(_delivery(r))
    return out


async def marked(session: AsyncSession,
                 keys: Iterable[tuple[str, str, datetime]]) -> set[tuple[str, str, datetime, str]]:
    """The thresholds already reached among (rule, entitlement, period start) keys:
    (rule, entitlement, period start, threshold key)."""
    wanted = set(keys)
    if not wanted:
        return set()
    ents = sorted({k[1] for k in wanted})
    rows = (await session.exec(select(NotificationMarkRow).where(col(NotificationMarkRow.entitlement_id).in_(ents))))
    return {(r.rule_id, r.entitlement_id, r.period_start, r.threshold) for r in rows.all()
            if (r.rule_id, r.entitlement_id, r.period_start) in wanted}


async def insert_event(session: AsyncSession, ev: NotificationEvent, marks: Sequence[tuple[str, bool]],
                       channel_ids: Sequence[str], now: datetime) -> None:
    """An event with its threshold marks ((threshold key, passed); a mark already stored fails the transaction:
    the primary key) and one PENDING delivery per channel, due now."""
    session.add(NotificationEventRow(
        id=ev.id, type=ev.type, rule_id=ev.rule_id, subject_key=ev.subject_key, feature_id=ev.feature_id,
        feature_key=ev.feature_key, entitlement_id=ev.entitlement_id, period_start=ev.period_start,
        threshold_type=ev.threshold.type.value, threshold_value=ev.threshold.value, value=_value_json(ev.value),
        payload=ev.payload, annotations=ev.annotations, created_at=ev.created_at))
    for key, passed in marks:
        session.add(NotificationMarkRow(rule_id=ev.rule_id, entitlement_id=ev.entitlement_id,
                                        period_start=ev.period_start, threshold=key, event_id=ev.id, passed=passed,
                                        created_at=now))
    for cid in channel_ids:
        session.add(NotificationDeliveryRow(event_id=ev.id, channel_id=cid, state=DeliveryState.PENDING.value,
                                            attempts=0, next_attempt_at=now, updated_at=now))
    await session.flush()


async def get_event(session: AsyncSession, event_id: str) -> NotificationEvent | None:
    row = await session.get(NotificationEventRow, event_id)
    if row is None:
        return None
    return _event(row, (await _deliveries_of(session, [row.id]))[row.id])


async def list_events(session: AsyncSession, *, subject_keys: Sequence[str] | None,
                      feature_keys: Sequence[str] | None, rule_ids: Sequence[str] | None,
                      channel_ids: Sequence[str] | None, from_: datetime | None, to: datetime | None,
                      limit: int, offset: int) -> tuple[list[NotificationEvent], int]:
    """Events, newest first (then by id, descending)."""
    E = NotificationEventRow
    conds: list[Any] = []
    if subject_keys is not None:
        conds.append(col(E.subject_key).in_(sorted(set(subject_keys))))
    if feature_keys is not None:
        conds.append(or_(col(E.feature_key).in_(sorted(set(feature_keys))),
                         col(E.feature_id).in_(sorted(set(feature_keys)))))
    if rule_ids is not None:
        conds.append(col(E.rule_id).in_(sorted(set(rule_ids))))
    if channel_ids is not None:
        conds.append(col(E.id).in_(select(NotificationDeliveryRow.event_id)
                                   .where(col(NotificationDeliveryRow.channel_id).in_(sorted(set(channel_ids))))))
    if from_ is not None:
        conds.append(col(E.created_at) >= from_)
    if to is not None:
        conds.append(col(E.created_at) < to)
    rows = (await session.exec(select(E).where(*conds).order_by(col(E.created_at).desc(), col(E.id).desc())
                               .limit(limit).offset(offset))).all()
    total = (await session.exec(select(func.count()).select_from(E).where(*conds))).one()
    dels = await _deliveries_of(session, [r.id for r in rows])
    return [_event(r, dels[r.id]) for r in rows], int(total)


# ---- evaluation work (notification_pending) -------------------------------------------------------------

def _enabled_rule_exists() -> Any:
    return (core_select(_RU.c.id).where(_RU.c.deleted_at.is_(None), _RU.c.disabled.is_(False)).limit(1)).exists()


_MARK = {
    dialect: text(
        "INSERT INTO notification_pending (subject_key, due_at, version) "
        + ("SELECT s, :due, 0 FROM unnest(CAST(:subjects AS text[])) AS s " if dialect == "postgresql"
           else "SELECT value, :due, 0 FROM json_each(:subjects) ")
        + "WHERE EXISTS (SELECT 1 FROM notification_rules WHERE deleted_at IS NULL AND disabled = :off) "
        "ON CONFLICT (subject_key) DO UPDATE SET "
        + ("due_at = LEAST(notification_pending.due_at, excluded.due_at), " if dialect == "postgresql"
           else "due_at = MIN(notification_pending.due_at, excluded.due_at), ")
        + "version = notification_pending.version + 1"
    ).bindparams(bindparam("due", type_=UTCDateTime()), bindparam("off", type_=Boolean()))
    for dialect in ("postgresql", "sqlite")
}


DUE_NOW = datetime(1970, 1, 1, tzinfo=UTC)  # due at once, whatever the clock says


async def mark_pending(session: AsyncSession, subjects: Iterable[str], due: datetime = DUE_NOW) -> None:
    """Inside a writing transaction: these subjects are due for evaluation at `due` (one statement, which writes
    nothing while no enabled rule exists). An earlier due instant wins; every mark bumps the version, so an
    evaluation that started before it does not clear the row (`finish_pending`)."""
    keys = sorted(set(subjects))
    if not keys:
        return
    pg = dialect_name(session) == "postgresql"
    await _run(session, _MARK["postgresql" if pg else "sqlite"],
                          {"due": due, "off": False, "subjects": keys if pg else orjson.dumps(keys).decode()})


async def mark_covered_pending(session: AsyncSession, feature_ids: Sequence[str] | None,
                               due: datetime = DUE_NOW) -> None:
    """Every subject with a live metered entitlement to one of `feature_ids` (None: any) is due at `due`
    (after a rule is created, changed or enabled)."""
    stmt = core_select(_E.c.subject_key).distinct().where(_E.c.deleted_at.is_(None),
                                                          _E.c.type == EntitlementType.METERED.value)
    if feature_ids is not None:
        stmt = stmt.where(_E.c.feature_id.in_(sorted(set(feature_ids))))
    subjects = [r[0] for r in await _run(session, stmt)]
    for i in range(0, len(subjects), 1000):
        await mark_pending(session, subjects[i:i + 1000], due)


async def claim_pending(session: AsyncSession, now: datetime, lease_until: datetime,
                        limit: int) -> list[tuple[str, int]]:
    """Due, unclaimed subjects (subject, version), claimed until `lease_until` (commit right after). Each claim
    is a conditional update, so two claimers never both take a row (SQLite processes included)."""
    free = or_(_P.c.claimed_until.is_(None), _P.c.claimed_until <= now)
    stmt = (core_select(_P.c.subject_key, _P.c.version).where(_P.c.due_at <= now, free)
            .order_by(_P.c.due_at).limit(limit))
    if dialect_name(session) == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    due = [r[0] for r in await _run(session, stmt)]
    if not due:
        return []
    result = await _run(session, update(_P).where(_P.c.subject_key.in_(due), free)
                        .values(claimed_until=lease_until).returning(_P.c.subject_key, _P.c.version))
    got = {r[0]: int(r[1]) for r in result}
    return [(subject, got[subject]) for subject in due if subject in got]


async def finish_pending(session: AsyncSession, subject: str, version: int, next_due: datetime | None) -> None:
    """After evaluating `subject` as of `version`: due again at `next_due` (its next change with no write), or
    done. A write since the claim (another version) leaves the row due, only released."""
    if next_due is None:
        await _run(session, delete(_P).where(_P.c.subject_key == subject, _P.c.version == version))
    else:
        await _run(session, update(_P).where(_P.c.subject_key == subject, _P.c.version == version)
                              .values(due_at=next_due, claimed_until=None))
    await _run(session, update(_P).where(_P.c.subject_key == subject).values(claimed_until=None))


async def finish_pending_many(session: AsyncSession, claimed: Sequence[tuple[str, int]],
                              until: dict[str, datetime | None]) -> None:
    """`finish_pending` for a batch of claimed (subject, version), in a few statements."""
    if not claimed:
        return
    by_due: dict[datetime | None, list[tuple[str, int]]] = {}
    for subject, version in claimed:
        by_due.setdefault(until.get(subject), []).append((subject, version))
    for due, pairs in by_due.items():
        for i in range(0, len(pairs), 500):
            match = tuple_(_P.c.subject_key, _P.c.version).in_(pairs[i:i + 500])
            if due is None:
                await _run(session, delete(_P).where(match))
            else:
                await _run(session, update(_P).where(match).values(due_at=due, claimed_until=None))
    subjects = [c[0] for c in claimed]
    for i in range(0, len(subjects), 500):
        await _run(session, update(_P).where(_P.c.subject_key.in_(subjects[i:i + 500])).values(claimed_until=None))


async def next_pending_due(session: AsyncSession) -> datetime | None:
    """The earliest instant a pending evaluation can be claimed (due, and not claimed by a live evaluator)."""
    at = case((and_(_P.c.claimed_until.is_not(None), _P.c.claimed_until > _P.c.due_at), _P.c.claimed_until),
              else_=_P.c.due_at)
    found = (await _run(session, core_select(func.min(at)))).scalar()
    return as_utc(found)


# ---- delivery queue -------------------------------------------------------------------------------------

async def claim_deliveries(session: AsyncSession, now: datetime, lease_until: datetime,
                           limit: int) -> list[DeliveryStatus]:
    """Due deliveries (PENDING and due, or SENDING with an expired lease: a worker died mid-attempt), each
    claimed for one attempt (state SENDING, attempts + 1) until `lease_until`. Commit right after."""
    due = or_(and_(_D.c.state == DeliveryState.PENDING.value, _D.c.next_attempt_at <= now),
              and_(_D.c.state == DeliveryState.SENDING.value, _D.c.next_attempt_at <= now))
    stmt = core_select(_D.c.event_id, _D.c.channel_id).where(due).order_by(_D.c.next_attempt_at).limit(limit)
    if dialect_name(session) == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    seen = [(r[0], r[1]) for r in await _run(session, stmt)]
    out: list[DeliveryStatus] = []
    keys: list[tuple[str, str]] = []
    for event_id, channel_id in seen:  # conditional: a row another claimer took meanwhile is no longer due
        result = await _run(session,
            update(_D).where(_D.c.event_id == event_id, _D.c.channel_id == channel_id, due).values(
                state=DeliveryState.SENDING.value, attempts=_D.c.attempts + 1, next_attempt_at=lease_until,
                first_attempt_at=func.coalesce(_D.c.first_attempt_at, now), updated_at=now))
        if getattr(result, "rowcount", 0):
            keys.append((event_id, channel_id))
    if keys:
        rows = (await session.exec(select(NotificationDeliveryRow).where(
            or_(*[and_(col(NotificationDeliveryRow.event_id) == e, col(NotificationDeliveryRow.channel_id) == c)
                  for e, c in keys])))).all()
        out = [DeliveryStatus(event_id=r.event_id, channel_id=r.channel_id, state=DeliveryState(r.state),
                              attempts=r.attempts, last_error=r.last_error, next_attempt_at=r.next_attempt_at,
                              first_attempt_at=r.first_attempt_at, updated_at=r.updated_at) for r in rows]
    return out


async def finish_attempt(session: AsyncSession, claimed: DeliveryStatus, state: DeliveryState,
                         last_error: str | None, next_attempt_at: datetime | None, now: datetime) -> bool:
    """The outcome of a claimed attempt; False when the claim was lost (its lease ended and another worker
    claimed the delivery again), in which case nothing is written."""
    result = await _run(session,
        update(_D).where(_D.c.event_id == claimed.event_id, _D.c.channel_id == claimed.channel_id,
                         _D.c.state == DeliveryState.SENDING.value, _D.c.attempts == claimed.attempts)
        .values(state=state.value, last_error=last_error, next_attempt_at=next_attempt_at, updated_at=now))
    return bool(getattr(result, "rowcount", 0))


async def next_delivery_due(session: AsyncSession) -> datetime | None:
    found = (await _run(session, core_select(func.min(_D.c.next_attempt_at)).where(
        _D.c.state.in_([DeliveryState.PENDING.value, DeliveryState.SENDING.value])))).scalar()
    return as_utc(found)


async def event_rows(session: AsyncSession, ids: Iterable[str]) -> dict[str, NotificationEvent]:
    """Events by id, without their delivery status (for the delivery worker)."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = (await session.exec(select(NotificationEventRow).where(col(NotificationEventRow.id).in_(wanted)))).all()
    return {r.id: _event(r, ()) for r in rows}

