"""What use cases call when values may change: snapshots dropped inside the writing transaction, and after
the commit the one change signal (services/changes.py), which the value cache, live updates and
notifications all hang off.

Cached values live in one cache group per subject (`subject_group`): the change signal invalidates the
subjects' groups before the write returns. Snapshots are dropped inside the writing transaction, with the
entitlement rows locked so that a concurrent snapshot writer cannot store a state computed before the
write (services/snapshots.py takes the same lock, shared).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from creditgate.adapters.sql import entitlements as ent_repo
from creditgate.adapters.sql import notifications as notification_repo
from creditgate.adapters.sql import snapshots as snap_repo
from creditgate.adapters.sql.db import Session
from creditgate.records import Feature, ValueChangeCause
from creditgate.services.cache import subject_group
from creditgate.services.runtime import Runtime

__all__ = ["UsageTouch", "feature_archived", "feature_archived_in_tx", "invalidate_subjects", "subject_group",
           "usage_changed", "usage_changed_in_tx", "values_change_in_tx"]


@dataclass(frozen=True, slots=True)
class UsageTouch:
    """Accepted events of one event type for one subject; `first_minute` is the earliest event minute."""

    event_type: str
    subject: str
    first_minute: datetime


async def invalidate_subjects(rt: Runtime, subjects: Iterable[str],
                              cause: ValueChangeCause = ValueChangeCause.RESYNC) -> None:
    """After a commit: these subjects' values may have changed because of `cause` (once per write).
    Their cached values stop being served before this returns; subscriptions and other listeners follow."""
    await rt.changes.emit(subjects, cause)


async def values_change_in_tx(session: Session, subjects: Iterable[str]) -> None:
    """Inside every writing transaction that can change these subjects' now-values: record that their
    notification rules must be evaluated (docs/semantics.md §11.4), committed with the write so that a crash
    right after it cannot lose an event. One statement; it writes nothing while no enabled rule exists."""
    await notification_repo.mark_pending(session, subjects)


async def usage_changed_in_tx(session: Session, touches: Sequence[UsageTouch]) -> None:
    """Inside the ingest transaction: drop snapshots the new events make stale (docs/semantics.md §6.4) and
    record the notification evaluation of the subjects with a touched metered entitlement (§11.4)."""
    if not touches:
        return
    first: dict[tuple[str, str], datetime] = {}
    for t in touches:
        key = (t.event_type, t.subject)
        first[key] = min(first.get(key, t.first_minute), t.first_minute)
    touched = await ent_repo.lock_metered_touched(session, [t.subject for t in touches],
                                                  [t.event_type for t in touches])
    since: dict[str, datetime] = {}
    for ent_id, subject, event_type in touched:
        at = first.get((event_type, subject))
        if at is not None:
            since[ent_id] = min(since.get(ent_id, at), at)
    by_minute: dict[datetime, list[str]] = {}
    for ent_id, at in since.items():
        by_minute.setdefault(at, []).append(ent_id)
    if len(by_minute) > 1:  # one statement: from the earliest minute (dropping more is harmless)
        by_minute = {min(by_minute): sorted(since)}
    for at, ids in by_minute.items():
        await snap_repo.drop_from(session, ids, at)
    if touched:
        await values_change_in_tx(session, {subject for _, subject, _ in touched})


async def usage_changed(rt: Runtime, touches: Sequence[UsageTouch]) -> None:
    """After the ingest commit: invalidate the cached values of the affected entitlements."""
    await invalidate_subjects(rt, {t.subject for t in touches}, ValueChangeCause.INGEST)


async def feature_archived_in_tx(session: Session, feature: Feature) -> None:
    """Inside the archiving transaction: the feature's entitlements' values may change (§11.4)."""
    await values_change_in_tx(session, await ent_repo.subjects_of_feature(session, feature.id))


async def feature_archived(rt: Runtime, feature: Feature) -> None:
    """After a feature is archived: invalidate the cached values of its entitlements."""
    async with rt.db.read() as s:
        subjects = await ent_repo.subjects_of_feature(s, feature.id)
    await invalidate_subjects(rt, subjects, ValueChangeCause.ENTITLEMENT)
