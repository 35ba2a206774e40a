"""Features: what a plan sells, optionally tied to a SUM/COUNT meter (SEMANTICS §2)."""

from __future__ import annotations

import re
from typing import Any

from creditgate.adapters.sql import features as repo
from creditgate.adapters.sql.meters import get_meter
from creditgate.domain.errors import BadInput, NotFound
from creditgate.records import Feature, new_id
from creditgate.services import invalidation
from creditgate.services.runtime import Runtime
from creditgate.services.subjects import check_metadata

KEY_RE = re.compile(r"^[a-z0-9]+(?:[-_][a-z0-9]+)*$")
METERABLE = {"SUM", "COUNT"}
ORDERS = {"ID", "KEY", "CREATED_AT", "UPDATED_AT"}
MAX_LIMIT = 1000

def check_page(limit: int, offset: int) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise BadInput(f"limit must be between 1 and {MAX_LIMIT}")
    if offset < 0:
        raise BadInput("offset must be >= 0")


async def create_feature(rt: Runtime, key: str, name: str, metadata: Any = None,
                         meter_slug: str | None = None, meter_group_by_filters: Any = None) -> Feature:
    if len(key) > 64 or not KEY_RE.match(key):
        raise BadInput("feature key must match ^[a-z0-9]+(?:[-_][a-z0-9]+)*$ (1-64 characters)")
    if not name or not name.strip():
        raise BadInput("feature name must not be empty")
    meta = check_metadata(metadata)
    filters = meter_group_by_filters if meter_group_by_filters is not None else {}
    if not isinstance(filters, dict) or not all(isinstance(v, str) for v in filters.values()):
        raise BadInput("meterGroupByFilters must be an object of string values")
    now = rt.now()
    async with rt.db.transaction() as s:
        if meter_slug is not None:
            meter = await get_meter(s, meter_slug)
            if meter is None:
                raise NotFound(f"meter {meter_slug!r} not found")
            if meter.aggregation not in METERABLE:
                raise BadInput(f"meter {meter_slug!r} aggregates with {meter.aggregation}; "
                               "a feature needs a SUM or COUNT meter")
            unknown = sorted(set(filters) - set(meter.group_by))
            if unknown:
                raise BadInput(f"meterGroupByFilters keys not in the meter's groupBy: {', '.join(unknown)}")
            meter_slug = meter.slug
        elif filters:
            raise BadInput("meterGroupByFilters needs a meterSlug")
        feature = Feature(id=new_id(), key=key, name=name, metadata=meta, meter_slug=meter_slug,
                          meter_group_by_filters=filters, archived_at=None, created_at=now, updated_at=now)
        return await repo.insert_feature(s, feature)


async def get_feature(rt: Runtime, id_or_key: str) -> Feature | None:
    async with rt.db.read() as s:
        return await repo.get_feature(s, id_or_key)


async def list_features(rt: Runtime, include_archived: bool = False, limit: int = MAX_LIMIT, offset: int = 0,
                        order_by: str = "UPDATED_AT") -> list[Feature]:
    check_page(limit, offset)
    if order_by not in ORDERS:
        raise BadInput(f"orderBy must be one of {', '.join(sorted(ORDERS))}")
    async with rt.db.read() as s:
        return await repo.list_features(s, include_archived, limit, offset, order_by)


async def archive_feature(rt: Runtime, feature_id: str) -> Feature:
    async with rt.db.transaction() as s:
        feature = await repo.archive_feature(s, feature_id, rt.now())
        if feature is None:
            raise NotFound(f"feature {feature_id!r} not found or already archived")
    await invalidation.feature_archived(rt, feature)
    return feature
