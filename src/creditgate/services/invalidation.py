"""What other use cases call when usage or features change, so that snapshots and
cached values of the affected entitlements stop being used.

Cached values live in one cache group per subject (`subject_group`): every write that
can change a value of an entitlement invalidates its subject's group after commit.
Snapshots are dropped inside the writing transaction, with the entitlement rows
locked so that a concurrent snapshot writer cannot store a state computed before the
write (services/snapshots.py takes the same lock, shared).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from creditgate.adapters.sql import entitlements as ent_repo
from creditgate.adapters.sql import snapshots as snap_repo
from creditgate.adapters.sql.db import Session
from creditgate.records import Feature
from creditgate.services.runtime import Runtime

log = logging.getLogger("creditgate.cache")


@dataclass(frozen=True, slots=True)
class UsageTouch:
    """Accepted events of one event type for one subject; `first_minute` is the earliest event minute."""

    event_type: str
    subject: str
    first_minute: datetime


def subject_group(subject_key: str) -> str:
    return "s:" + subject_key


async def invalidate_subjects(rt: Runtime, subjects: Iterable[str]) -> None:
    """After a commit: drop every cached value of these subjects' entitlements."""
    cache = rt.cache
    groups = sorted({subject_group(s) for s in subjects})
    if cache is None or not groups:
        return
    try:
        await cache.invalidate(groups)
    except Exception:  # the cache adapter keeps its own guard for entries it could not drop
        log.warning("cache invalidation failed", exc_info=True)


async def usage_changed_in_tx(session: Session, touches: Sequence[UsageTouch]) -> None:
    """Inside the ingest transaction: drop snapshots the new events make stale (docs/semantics.md §6.4)."""
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


async def usage_changed(rt: Runtime, touches: Sequence[UsageTouch]) -> None:
    """After the ingest commit: invalidate the cached values of the affected entitlements."""
    await invalidate_subjects(rt, {t.subject for t in touches})


async def feature_archived(rt: Runtime, feature: Feature) -> None:
    """After a feature is archived: invalidate the cached values of its entitlements."""
    if rt.cache is None:
        return
    async with rt.db.read() as s:
        subjects = await ent_repo.subjects_of_feature(s, feature.id)
    await invalidate_subjects(rt, subjects)
