"""Plain records the services hand to adapters (no ORM objects leave the SQL adapter)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Subject:
    id: str
    key: str
    display_name: str | None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Meter:
    id: str
    slug: str
    description: str | None
    event_type: str
    aggregation: str
    value_property: str | None
    group_by: dict[str, str]
    window_size: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Feature:
    id: str
    key: str
    name: str
    metadata: dict[str, Any]
    meter_slug: str | None
    meter_group_by_filters: dict[str, str]
    archived_at: datetime | None
    created_at: datetime
    updated_at: datetime
