"""Meters: how events of one type turn into usage (docs/semantics.md §1)."""

from __future__ import annotations

import re
from typing import Any

from creditgate.adapters.sql import meters as repo
from creditgate.domain import WindowSize
from creditgate.domain.errors import BadInput, Conflict, NotFound
from creditgate.records import Aggregation, Meter, new_id
from creditgate.services import validation
from creditgate.services.jsonpath import compile_path
from creditgate.services.runtime import Runtime

SLUG_RE = re.compile(r"^[a-z0-9]+(?:_[a-z0-9]+)*$")
GROUP_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
AGGREGATIONS = tuple(Aggregation)
WINDOW_SIZES = tuple(WindowSize)
MAX_SLUG = 63


def check_meter(slug: str, event_type: str, aggregation: str, value_property: str | None,
                group_by: Any, window_size: str) -> dict[str, str]:
    """Checks a new meter's fields; returns its group-by map."""
    if len(slug) > MAX_SLUG or not SLUG_RE.match(slug):
        raise BadInput(f"meter slug must match ^[a-z0-9]+(?:_[a-z0-9]+)*$ (at most {MAX_SLUG} characters)")
    validation.text(event_type, "eventType")
    if aggregation not in AGGREGATIONS:
        raise BadInput(f"aggregation must be one of {', '.join(AGGREGATIONS)}")
    if window_size not in WINDOW_SIZES:
        raise BadInput(f"windowSize must be one of {', '.join(WINDOW_SIZES)}")
    if value_property is None:
        if aggregation != Aggregation.COUNT:
            raise BadInput(f"valueProperty is required for {aggregation} meters")
    else:
        compile_path(validation.text(value_property, "valueProperty"))
    groups = group_by if group_by is not None else {}
    if not isinstance(groups, dict):
        raise BadInput("groupBy must be an object of name -> JSONPath")
    for name, path in groups.items():
        if not GROUP_NAME_RE.match(name):
            raise BadInput(f"groupBy name {name!r} must match ^[a-zA-Z_][a-zA-Z0-9_]*$")
        if name == "subject":
            raise BadInput("groupBy name 'subject' is reserved")
        if not isinstance(path, str):
            raise BadInput(f"groupBy {name!r} must be a JSONPath string")
        compile_path(validation.text(path, f"groupBy {name!r}"))
    return dict(groups)


async def create_meter(rt: Runtime, slug: str, event_type: str, aggregation: str, *,
                       description: str | None = None, value_property: str | None = None,
                       group_by: Any = None, window_size: str = WindowSize.MINUTE) -> Meter:
    groups = check_meter(slug, event_type, aggregation, value_property, group_by, window_size)
    description = validation.optional_text(description, "description")
    now = rt.now()
    meter = Meter(id=new_id(), slug=slug, description=description, event_type=event_type,
                  aggregation=aggregation, value_property=value_property, group_by=groups,
                  window_size=window_size, created_at=now, updated_at=now)
    async with rt.db.transaction() as s:
        return await repo.insert_meter(s, meter)


async def get_meter(rt: Runtime, id_or_slug: str) -> Meter | None:
    validation.lookup(id_or_slug, "meter id or slug")
    async with rt.db.read() as s:
        return await repo.get_meter(s, id_or_slug)


async def require_meter(rt: Runtime, id_or_slug: str) -> Meter:
    meter = await get_meter(rt, id_or_slug)
    if meter is None:
        raise NotFound(f"meter {id_or_slug!r} not found")
    return meter


async def list_meters(rt: Runtime) -> list[Meter]:
    async with rt.db.read() as s:
        return await repo.list_meters(s)


async def delete_meter(rt: Runtime, id_or_slug: str) -> None:
    """Soft-deletes a meter; refused while a live feature uses it."""
    validation.lookup(id_or_slug, "meter id or slug")
    async with rt.db.transaction() as s:
        meter = await repo.get_meter(s, id_or_slug)
        if meter is None:
            raise NotFound(f"meter {id_or_slug!r} not found")
        feature_id = await repo.live_feature_using(s, meter.slug)
        if feature_id is not None:
            raise Conflict(f"meter {meter.slug!r} is used by a feature", conflicting_entity_id=feature_id)
        if not await repo.soft_delete_meter(s, meter.id, rt.now()):
            raise NotFound(f"meter {id_or_slug!r} not found")
