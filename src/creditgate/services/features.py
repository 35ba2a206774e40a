"""Features: what a plan sells, optionally tied to a SUM/COUNT meter (docs/semantics.md §2)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from creditgate.adapters.sql import features as repo
from creditgate.adapters.sql.meters import get_meter
from creditgate.domain.errors import BadInput, NotFound
from creditgate.records import Aggregation, Feature, new_id
from creditgate.services import invalidation, validation
from creditgate.services.runtime import Runtime
from creditgate.services.subjects import check_metadata

KEY_RE = re.compile(r"^[a-z0-9]+(?:[-_][a-z0-9]+)*$")
METERABLE = {Aggregation.SUM, Aggregation.COUNT}
ORDERS = {"ID", "KEY", "CREATED_AT", "UPDATED_AT"}
MAX_LIMIT = validation.MAX_LIMIT
check_page = validation.page


async def create_feature(rt: Runtime, key: str, name: str, metadata: Any = None,
                         meter_slug: str | None = None, meter_group_by_filters: Any = None) -> Feature:
    if len(key) > 64 or not KEY_RE.match(key):
        raise BadInput("feature key must match ^[a-z0-9]+(?:[-_][a-z0-9]+)*$ (1-64 characters)")
    validation.text(name, "feature name")
    meta = check_metadata(metadata)
    filters = validation.string_map(meter_group_by_filters, "meterGroupByFilters")
    if meter_slug is not None:
        validation.lookup(meter_slug, "meterSlug")
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
    validation.lookup(id_or_key, "feature id or key")
    async with rt.db.read() as s:
        return await repo.get_feature(s, id_or_key)


async def features_by_ids(rt: Runtime, ids: Sequence[str]) -> dict[str, Feature]:
    """Features (archived ones too) by id, for the features of entitlements."""
    validation.lookups(ids, "feature id")
    async with rt.db.read() as s:
        return await repo.get_features_by_ids(s, sorted(set(ids)))


async def list_features(rt: Runtime, include_archived: bool = False, limit: int = MAX_LIMIT, offset: int = 0,
                        order_by: str = "UPDATED_AT", meter_slugs: Sequence[str] | None = None) -> list[Feature]:
    """Features, optionally only those of any of `meter_slugs`."""
    check_page(limit, offset)
    if order_by not in ORDERS:
        raise BadInput(f"orderBy must be one of {', '.join(sorted(ORDERS))}")
    validation.lookups(meter_slugs or (), "meterSlug")
    async with rt.db.read() as s:
        return await repo.list_features(s, include_archived, limit, offset, order_by, meter_slugs)


async def archive_feature(rt: Runtime, id_or_key: str) -> Feature:
    """Archive the live feature with this id or key (a key wins over an id, as in get_feature)."""
    validation.lookup(id_or_key, "feature id or key")
    async with rt.db.transaction() as s:
        live = await repo.get_feature(s, id_or_key)
        feature = await repo.archive_feature(s, live.id, rt.now()) if live is not None else None
        if feature is None:
            raise NotFound(f"feature {id_or_key!r} not found or already archived")
        await invalidation.feature_archived_in_tx(s, feature)
    await invalidation.feature_archived(rt, feature)
    return feature
