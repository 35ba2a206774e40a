"""What other use cases call when usage or features change, so that snapshots and
cached values of the affected entitlements stop being used.

Owned by the entitlements layer; ingest and feature archiving call it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from creditgate.services.records import Feature
from creditgate.services.runtime import Runtime


@dataclass(frozen=True, slots=True)
class UsageTouch:
    """Accepted events of one event type for one subject; `first_minute` is the earliest event minute."""

    event_type: str
    subject: str
    first_minute: datetime


async def usage_changed_in_tx(session: AsyncSession, touches: Sequence[UsageTouch]) -> None:
    """Inside the ingest transaction: drop snapshots the new events make stale."""
    # The entitlements layer fills this in (SEMANTICS 6.4).


async def usage_changed(rt: Runtime, touches: Sequence[UsageTouch]) -> None:
    """After the ingest commit: invalidate the cached values of the affected entitlements."""


async def feature_archived(rt: Runtime, feature: Feature) -> None:
    """After a feature is archived: invalidate the cached values of its entitlements."""
