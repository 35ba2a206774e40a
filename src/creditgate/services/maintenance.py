"""Storage upkeep, run by every `serve` process each `maintenance_interval` and by `creditgate maintain`
(docs/operations.md, "Partitions and retention"): the coming months' partitions are made ahead, then
raw events older than the retention are dropped. Both are idempotent, so processes may overlap."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from creditgate.adapters.sql import partitions
from creditgate.services.runtime import Runtime

MONTHS_AHEAD = 3
log = logging.getLogger("creditgate")


@dataclass(slots=True)
class Upkeep:
    created: list[str] = field(default_factory=list)  # partitions made
    dropped: list[str] = field(default_factory=list)  # raw event partitions dropped by retention


async def maintain(rt: Runtime) -> Upkeep:
    now = rt.now()
    done = Upkeep(created=await partitions.create_ahead(rt.db, now, MONTHS_AHEAD))
    kept = rt.settings.retention()
    if kept is not None:
        done.dropped = await partitions.drop_raw_before(rt.db, now - kept)
    return done


async def run_forever(rt: Runtime) -> None:
    """`maintain` now and every `maintenance_interval` seconds; a failed pass is logged and tried again."""
    while True:
        try:
            await maintain(rt)
        except Exception:
            log.exception("storage upkeep failed; next try in %.0f s", rt.settings.maintenance_interval)
        await asyncio.sleep(rt.settings.maintenance_interval)
