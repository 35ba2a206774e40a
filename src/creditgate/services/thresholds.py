"""Evaluating balance-threshold rules (docs/semantics.md §11.3, §11.4): from the pending work that writes record
to events and their deliveries.

- Every write that can change a value records its subjects in `notification_pending` in its own transaction
  (services/invalidation.py `values_change_in_tx`; nothing is written while no enabled rule exists). So an
  acknowledged write always leads to an evaluation, even if the process dies right after it.
- `evaluate_due` claims due subjects (a short transaction; PostgreSQL `FOR UPDATE SKIP LOCKED`), computes the
  now-values of their entitlements covered by an enabled rule, and for each (rule, entitlement, usage period)
  creates at most one event per threshold: the marks' primary key holds it in the database. The pending row
  is then kept due at the next instant a value changes with no write (TIME), or removed.
- The event's payload is the REST API's representation of the objects (creditgate/wire.py, shared with REST).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from creditgate import metrics
from creditgate.adapters.sql import entitlements as ent_repo
from creditgate.adapters.sql import notifications as repo
from creditgate.adapters.sql import subjects as subject_repo
from creditgate.adapters.sql.db import Session
from creditgate.domain import Value, ceil_m, next_change, value_at
from creditgate.domain import thresholds as th
from creditgate.domain.errors import NotFound
from creditgate.records import (
    BALANCE_THRESHOLD,
    BalanceValue,
    Entitlement,
    EntitlementType,
    NotificationChannel,
    NotificationEvent,
    NotificationRule,
    Subject,
    Threshold,
    ThresholdType,
    new_id,
)
from creditgate.services import validation
from creditgate.services.balances import Bundle, Op, load_bundles, run_ops
from creditgate.services.entitlements import usage_periods
from creditgate.services.runtime import Runtime
from creditgate.wire import balance_threshold_payload

log = logging.getLogger("creditgate.notifications")
CLAIM_LEASE = timedelta(seconds=60)  # an evaluator that died mid-batch loses its claim after this
BATCH = 100  # subjects per claim


# ---- evaluation -----------------------------------------------------------------------------------------

@dataclass(slots=True)
class _Now:
    """A covered entitlement's value now and the instant it next changes with no write."""

    bundle: Bundle
    value: BalanceValue
    period_start: datetime
    until: datetime | None


def _level(t: Threshold) -> th.Level:
    return (t.type.value, t.value)


def _threshold(level: th.Level) -> Threshold:
    return Threshold(level[1], ThresholdType(level[0]))


def _covers(rule: NotificationRule, ent: Entitlement) -> bool:
    return rule.feature_ids is None or ent.feature_id in rule.feature_ids


def _value_op(b: Bundle, t: datetime) -> Op[Value]:
    assert b.metered is not None
    metered, grants, snap = b.metered, b.engine_grants, b.snapshot
    return lambda usage: value_at(metered, grants, usage, t, start=snap)


async def _values_now(s: Session, ents: Sequence[Entitlement], now: datetime) -> list[_Now]:
    """Now-values of metered entitlements with their period start and next change (a fixed number of reads)."""
    limits = {e.id: ceil_m(now) for e in ents}
    bundles = await load_bundles(s, ents, limits)
    ops: list[tuple[Bundle, Op[Any]]] = []
    for e in ents:
        b = bundles[e.id]
        assert b.metered is not None
        ops.append((b, _value_op(b, now)))
    out: list[_Now] = []
    for (b, _op), o in zip(ops, await run_ops(s, ops), strict=True):
        assert b.metered is not None
        v = o.result
        until = next_change(b.metered, b.engine_grants, now)
        if o.next_minute is not None and o.next_minute > now and (until is None or o.next_minute < until):
            until = o.next_minute  # usage already stored for a later minute
        out.append(_Now(b, BalanceValue(v.has_access, v.balance, v.usage, v.overage), v.period_start, until))
    return out


async def evaluate_due(rt: Runtime, limit: int = BATCH) -> int:
    """Evaluate the subjects due now (at most `limit`, together: one value computation and one write for the
    batch); returns how many were evaluated."""
    now = rt.now()
    async with rt.db.transaction() as s:
        claimed = await repo.claim_pending(s, now, now + CLAIM_LEASE, limit)
    if not claimed:
        return 0
    try:
        async with rt.db.read() as s:
            rules, channels, ents = await _scope(s, [c[0] for c in claimed], now)
            plans, until = await _plan(s, ents, rules, channels, now)
        async with rt.db.transaction() as s:
            for event, marks, targets in plans:
                await repo.insert_event(s, event, marks, targets, now)
            await repo.finish_pending_many(s, claimed, until)
        metrics.count_notification_events(len(plans))
    except Exception:  # e.g. a mark stored meanwhile by an evaluator whose claim had ended: one at a time
        log.warning("evaluating a batch of %d subjects failed; evaluating them one by one", len(claimed),
                    exc_info=True)
        for subject, version in claimed:
            try:
                await _evaluate_subject(rt, subject, version, now)
            except Exception:
                log.exception("evaluating notifications of subject %r failed; retried later", subject)
    return len(claimed)


async def _scope(s: Session, subjects: Sequence[str], now: datetime
                 ) -> tuple[list[NotificationRule], dict[str, NotificationChannel], list[Entitlement]]:
    """The enabled rules with an enabled channel, those channels, and the subjects' live metered entitlements
    that some of these rules cover."""
    rules = await repo.enabled_rules(s)
    channels = await repo.channels_by_ids(s, {c for r in rules for c in r.channel_ids})
    live = {cid: ch for cid, ch in channels.items() if ch.deleted_at is None and not ch.disabled}
    rules = [r for r in rules if any(c in live for c in r.channel_ids)]
    ents = [e for e in await ent_repo.list_entitlements(s, None, None, False, now, None, 0, subjects=subjects,
                                                         types=[EntitlementType.METERED.value])
            if e.visible_at(now) and any(_covers(r, e) for r in rules)] if rules else []
    return rules, live, ents


Plan = tuple[NotificationEvent, list[tuple[str, bool]], list[str]]  # event, its marks, its channels


async def _plan(s: Session, ents: list[Entitlement], rules: list[NotificationRule],
                channels: dict[str, NotificationChannel], now: datetime
                ) -> tuple[list[Plan], dict[str, datetime | None]]:
    """The events to create (§11.4) and, per subject, the next instant its values change with no write."""
    until: dict[str, datetime | None] = {}
    if not ents:
        return [], until
    values = await _values_now(s, ents, now)
    done = await repo.marked(s, [(r.id, v.bundle.ent.id, v.period_start) for v in values for r in rules
                                 if _covers(r, v.bundle.ent)])
    subjects: dict[str, Subject] = {}
    plans: list[Plan] = []
    for v in values:
        ent = v.bundle.ent
        known = until.get(ent.subject_key)
        if v.until is not None and (known is None or v.until < known):
            until[ent.subject_key] = v.until
        for rule in rules:
            if not _covers(rule, ent):
                continue
            seen = {lv for lv in map(_level, rule.thresholds)
                    if (rule.id, ent.id, v.period_start, repo.threshold_key(_threshold(lv))) in done}
            total = th.total_of(v.value.balance, v.value.usage, v.value.overage)
            found = th.newly_reached([_level(t) for t in rule.thresholds], v.value.usage, total, seen)
            if found is None:
                continue
            top, passed = found
            if ent.subject_key not in subjects:
                subjects[ent.subject_key] = await _subject(s, ent.subject_key, now)
            event = _event(rule, v, subjects[ent.subject_key], _threshold(top), now, {})
            marks = [(repo.threshold_key(_threshold(top)), False),
                     *((repo.threshold_key(_threshold(lv)), True) for lv in passed)]
            plans.append((event, marks, [c for c in rule.channel_ids if c in channels]))
    return plans, until


async def _evaluate_subject(rt: Runtime, subject: str, version: int, now: datetime) -> None:
    """One subject in its own transaction (a mark already stored fails only this subject)."""
    async with rt.db.transaction() as s:
        rules, channels, ents = await _scope(s, [subject], now)
        plans, until = await _plan(s, ents, rules, channels, now)
        for event, marks, targets in plans:
            await repo.insert_event(s, event, marks, targets, now)
        await repo.finish_pending(s, subject, version, until.get(subject))
    metrics.count_notification_events(len(plans))


async def _subject(s: Session, key: str, now: datetime) -> Subject:
    found = await subject_repo.get_subject(s, key)
    return found or Subject(id=key, key=key, display_name=None, metadata={}, created_at=now, updated_at=now)


def _event(rule: NotificationRule, v: _Now, subject: Subject, threshold: Threshold, now: datetime,
           annotations: dict[str, Any]) -> NotificationEvent:
    ent, feature = v.bundle.ent, v.bundle.feature
    assert feature is not None
    event_id = new_id()
    periods = usage_periods(ent, v.bundle.resets, now)
    payload = balance_threshold_payload(event_id, now, ent, periods, feature, subject, v.value, threshold)
    return NotificationEvent(id=event_id, type=BALANCE_THRESHOLD, rule_id=rule.id, subject_key=ent.subject_key,
                             feature_id=ent.feature_id, feature_key=ent.feature_key, entitlement_id=ent.id,
                             period_start=v.period_start, threshold=threshold, value=v.value, payload=payload,
                             annotations=annotations, created_at=now, deliveries=())


async def next_due(rt: Runtime) -> datetime | None:
    """The earliest instant some evaluation is due (for the worker's sleep)."""
    async with rt.db.read() as s:
        return await repo.next_pending_due(s)


# ---- rule test ------------------------------------------------------------------------------------------

async def test_event(rt: Runtime, rule_id: str) -> NotificationEvent:
    """A sample event of a live rule, for its enabled channels: the value now of the newest covered metered
    entitlement (its highest threshold), annotated {"test": true}; no threshold is marked."""
    validation.lookup(rule_id, "rule id")
    now = rt.now()
    async with rt.db.transaction() as s:
        rule = await repo.get_rule(s, rule_id)
        if rule is None or rule.deleted_at is not None:
            raise NotFound(f"notification rule {rule_id!r} not found")
        ents = await ent_repo.list_entitlements(s, None, None, False, now, 200, 0,
                                                features=list(rule.feature_ids) if rule.feature_ids else None,
                                                types=[EntitlementType.METERED.value])
        covered = sorted((e for e in ents if e.type == EntitlementType.METERED and _covers(rule, e)),
                         key=lambda e: (e.created_at, e.id))
        if not covered:
            raise NotFound(f"notification rule {rule_id!r} covers no metered entitlement to build a test event from")
        v = (await _values_now(s, [covered[-1]], now))[0]
        total = th.total_of(v.value.balance, v.value.usage, v.value.overage)
        top = _threshold(th.highest([_level(t) for t in rule.thresholds], total))
        channels = await repo.channels_by_ids(s, rule.channel_ids)
        live = [c for c in rule.channel_ids if c in channels and channels[c].deleted_at is None
                and not channels[c].disabled]
        event = _event(rule, v, await _subject(s, v.bundle.ent.subject_key, now), top, now, {"test": True})
        await repo.insert_event(s, event, [], live, now)
        found = await repo.get_event(s, event.id)
    assert found is not None
    return found

