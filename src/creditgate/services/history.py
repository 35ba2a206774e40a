"""Usage history of a metered entitlement: burn-down segments and windows (docs/semantics.md §7)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from creditgate.adapters.sql import snapshots as snap_repo
from creditgate.domain import Segment, Window, WindowSize, burndown, ceil_m, period_start, windowed_history
from creditgate.domain.errors import BadInput, NotFound
from creditgate.domain.windows import zone
from creditgate.records import Entitlement, EntitlementType
from creditgate.services import validation
from creditgate.services.balances import Bundle, Op, load_bundles, run_ops
from creditgate.services.runtime import Runtime

# A history is computed window by window: its range may hold at most this many windows
# (MINUTE: ~69 days, HOUR: ~11 years, DAY: ~273 years), so that no request can ask for billions.
MAX_WINDOWS = 100_000
WINDOW = {WindowSize.MINUTE: timedelta(minutes=1), WindowSize.HOUR: timedelta(hours=1),
          WindowSize.DAY: timedelta(days=1)}


@dataclass(frozen=True, slots=True)
class History:
    windows: list[Window]
    segments: list[Segment]


async def history(rt: Runtime, ent: Entitlement, window_size: str, from_: datetime | None,
                  to: datetime | None, tz: str = "UTC") -> History:
    """Windows and burn-down segments of a METERED entitlement; a deleted one has no history (NOT_FOUND)."""
    now = rt.now()
    if not ent.visible_at(now):
        raise NotFound(f"entitlement {ent.id!r} is deleted")
    if ent.type != EntitlementType.METERED:
        raise BadInput("history needs a METERED entitlement")
    if window_size not in {w.value for w in WindowSize}:
        raise BadInput("windowSize must be MINUTE, HOUR or DAY")
    zone(validation.lookup(tz, "windowTimeZone"))  # unknown zone: BAD_USER_INPUT
    async with rt.db.read() as s:
        bundle = (await load_bundles(s, [ent], None))[ent.id]
        assert bundle.metered is not None and ent.measure_usage_from is not None
        a = period_start(bundle.metered, now) if from_ is None else from_
        b = now if to is None else to
        if a < ent.measure_usage_from:
            raise BadInput("`from` is before measureUsageFrom")
        if b <= a:
            raise BadInput("`to` must be after `from`")
        if (b - a) / WINDOW[WindowSize(window_size)] > MAX_WINDOWS:
            raise BadInput(f"`from` to `to` spans more than {MAX_WINDOWS} {window_size} windows: "
                           "narrow the range or take larger windows")
        if rt.settings.snapshots:
            bundle.snapshot = (await snap_repo.latest_at_or_before(s, {ent.id: ceil_m(a)})).get(ent.id)
        assert bundle.metered is not None
        m, g, snap = bundle.metered, bundle.engine_grants, bundle.snapshot
        start, end = a, b
        ops: list[tuple[Bundle, Op[Any]]] = [
            (bundle, lambda u: windowed_history(m, g, u, start, end, WindowSize(window_size), tz, start=snap)),
            (bundle, lambda u: burndown(m, g, u, start, end, start=snap)),
        ]
        outcomes = await run_ops(s, ops)
    return History(outcomes[0].result, outcomes[1].result)
