"""Snapshots: engine state persisted at past instants so that reads replay less (docs/semantics.md §6.4).

Where: period starts (automatic and manual resets, measureUsageFrom), grant phase
starts, and whole hours - always at least two minutes in the past (never the future
or the current minute). A read loads the newest snapshot at or before its window start.

Safety: writes that change the past (late events, back-dated grants, voids, resets)
delete the snapshots from the changed instant on, in their own transaction, after
locking the entitlement rows. A snapshot is written in a transaction that first takes
the same lock (shared; on SQLite the database write lock) and only then reads the data
it is computed from, so it can never capture a state from before such a write.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from creditgate.adapters.sql import entitlements as ent_repo
from creditgate.adapters.sql import snapshots as snap_repo
from creditgate.domain import State, floor_m, period_starts, state_at
from creditgate.services.balances import Bundle, Op, load_bundles, run_ops
from creditgate.services.runtime import Runtime

log = logging.getLogger("creditgate.snapshots")
MARGIN = timedelta(minutes=2)


@dataclass(slots=True)
class Counts:
    """What `persist_snapshots` did in this process: snapshots handed to storage, and failed attempts
    (a failure only skips snapshots, so this and the warning log are how it shows)."""

    stored: int = 0
    failed: int = 0


counts = Counts()


def wanted_instant(b: Bundle, now: datetime) -> datetime | None:
    """The newest instant worth a snapshot for this entitlement, if newer than its current one."""
    if b.metered is None:
        return None
    limit = floor_m(now) - MARGIN
    start = b.metered.measure_usage_from
    if limit <= start:
        return None
    candidates = [limit.replace(minute=0)]
    starts = period_starts(b.metered, start, limit + timedelta(microseconds=1))
    if starts:
        candidates.append(starts[-1])
    for g in b.grants:
        for at in (g.effective_at, g.expires_at, g.voided_at):
            if at is not None and at <= limit:
                candidates.append(floor_m(at))
    best = max(c for c in candidates if c >= start) if any(c >= start for c in candidates) else None
    if best is None or (b.snapshot is not None and b.snapshot.at >= best):
        return None
    return best


def snapshot_wishes(bundles: Iterable[Bundle], now: datetime) -> list[tuple[str, datetime]]:
    out = []
    for b in bundles:
        at = wanted_instant(b, now)
        if at is not None:
            out.append((b.ent.id, at))
    return out


def _state_op(b: Bundle, at: datetime) -> Op[State]:
    assert b.metered is not None
    metered, grants, snap = b.metered, b.engine_grants, b.snapshot
    return lambda usage: state_at(metered, grants, usage, at, start=snap)


async def persist_snapshots(rt: Runtime, wishes: Sequence[tuple[str, datetime]]) -> None:
    """Compute and store snapshots. A failure only skips them (they are an optimisation, a read never
    fails for them): it is logged and counted in `counts.failed`."""
    if not wishes or not rt.settings.snapshots:
        return
    want = dict(wishes)
    try:
        async with rt.db.transaction() as s:
            await snap_repo.lock_for_write(s, want)
            ents = list((await ent_repo.by_ids(s, list(want))).values())
            bundles = await load_bundles(s, ents, dict(want))
            ops: list[tuple[Bundle, Op[Any]]] = [(b, _state_op(b, want[i])) for i, b in bundles.items()]
            outcomes = await run_ops(s, ops)
            states = [(b.ent.id, o.result) for (b, _), o in zip(ops, outcomes, strict=True)]
            kept = [(i, st) for i, st in states if st.at == want[i]]
            await snap_repo.save(s, kept, rt.now())
    except Exception:
        counts.failed += 1
        log.warning("snapshot not stored", exc_info=True)
    else:
        counts.stored += len(kept)
