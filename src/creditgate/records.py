"""Plain records the layers exchange (services, repositories, API adapters), and their ids.

They sit below services and adapters so that repositories can return them without importing services."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from ulid import ULID


def new_id() -> str:
    """A new entity id: a ULID (sortable by creation time)."""
    return str(ULID())


# One vocabulary for every layer: both APIs register these same enums, storage stores their values.
class EntitlementType(StrEnum):
    METERED = "METERED"
    BOOLEAN = "BOOLEAN"
    STATIC = "STATIC"


class Aggregation(StrEnum):
    SUM = "SUM"
    COUNT = "COUNT"
    AVG = "AVG"
    MIN = "MIN"
    MAX = "MAX"
    UNIQUE_COUNT = "UNIQUE_COUNT"


class AccessReason(StrEnum):
    """Why an access check answered as it did (docs/semantics.md §8.1)."""

    GRANTED = "GRANTED"
    SOFT_LIMIT = "SOFT_LIMIT"
    NO_BALANCE = "NO_BALANCE"
    NO_ENTITLEMENT = "NO_ENTITLEMENT"


class ValueChangeCause(StrEnum):
    """Why the now-value of an entitlement may have changed (docs/semantics.md §10): the change signal's
    cause (services/changes.py) and the subscription update's."""

    CURRENT = "CURRENT"  # the first update of a subscription: the value as it stands
    INGEST = "INGEST"  # usage arrived (late usage too)
    GRANT = "GRANT"  # a grant was created
    VOID = "VOID"  # a grant was voided
    RESET = "RESET"  # a manual reset
    ENTITLEMENT = "ENTITLEMENT"  # an entitlement created or deleted, or its feature archived
    TIME = "TIME"  # no write: a grant started, expired or recurred, or an automatic reset
    RESYNC = "RESYNC"  # changes may have been lost: the value as it stands


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


@dataclass(frozen=True, slots=True)
class EventInput:
    """One CloudEvent as a caller sends it (GraphQL or REST); checked by services.events."""

    id: Any
    source: Any
    type: Any
    subject: Any
    specversion: Any = "1.0"
    time: Any = None  # datetime, RFC 3339 string or None (the time of ingestion)
    data: Any = None


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    source: str
    type: str
    subject: str
    time: datetime
    data: dict[str, Any]
    ingested_at: datetime
    validation_error: str | None


@dataclass(frozen=True, slots=True)
class IngestResult:
    accepted: int
    duplicates: int


@dataclass(frozen=True, slots=True)
class MeterQueryRow:
    window_start: datetime
    window_end: datetime
    value: Decimal
    subject: str | None
    group_by: dict[str, str | None]


@dataclass(frozen=True, slots=True)
class Entitlement:
    id: str
    type: str  # METERED | BOOLEAN | STATIC
    subject_key: str
    feature_id: str
    feature_key: str
    metadata: dict[str, Any]
    config: Any
    is_soft_limit: bool
    usage_period_interval: str | None
    usage_period_anchor: datetime | None
    measure_usage_from: datetime | None
    issue_after_reset: Decimal | None
    issue_after_reset_priority: int | None
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None

    def visible_at(self, t: datetime) -> bool:
        return self.deleted_at is None or self.deleted_at > t


@dataclass(frozen=True, slots=True)
class Grant:
    id: str
    entitlement_id: str
    amount: Decimal
    priority: int
    effective_at: datetime
    expiration_duration: str
    expiration_count: int
    expires_at: datetime
    recurrence_interval: str | None
    recurrence_anchor: datetime | None
    min_rollover: Decimal
    max_rollover: Decimal
    metadata: dict[str, Any]
    voided_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Reset:
    id: str
    entitlement_id: str
    reset_at: datetime
    retain_anchor: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class PortalToken:
    id: str
    subject_key: str
    expires_at: datetime
    invalidated_at: datetime | None
    created_at: datetime


# ---- notifications (docs/semantics.md §11) ---------------------------------------------------------------

BALANCE_THRESHOLD = "entitlements.balance.threshold"  # the one rule and event type, as on the wire


class ThresholdType(StrEnum):
    NUMBER = "NUMBER"
    PERCENT = "PERCENT"


class DeliveryState(StrEnum):
    PENDING = "PENDING"  # waiting for its next attempt (next_attempt_at)
    SENDING = "SENDING"  # an attempt is in flight (claimed by one worker until its lease ends)
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"


@dataclass(frozen=True, slots=True)
class NotificationChannel:
    """A webhook channel; `type` is always "WEBHOOK"."""

    id: str
    type: str
    name: str
    url: str
    custom_headers: dict[str, str]
    signing_secret: str  # "whsec_" + base64
    disabled: bool
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None


@dataclass(frozen=True, slots=True)
class Threshold:
    value: Decimal  # > 0
    type: ThresholdType


@dataclass(frozen=True, slots=True)
class NotificationRule:
    id: str
    type: str  # BALANCE_THRESHOLD
    name: str
    thresholds: tuple[Threshold, ...]
    feature_ids: tuple[str, ...] | None  # None: every metered feature
    channel_ids: tuple[str, ...]
    disabled: bool
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None


@dataclass(frozen=True, slots=True)
class BalanceValue:
    """A metered entitlement's value as an event recorded it."""

    has_access: bool
    balance: Decimal
    usage: Decimal
    overage: Decimal


@dataclass(frozen=True, slots=True)
class DeliveryStatus:
    event_id: str
    channel_id: str
    state: DeliveryState
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None  # PENDING: when the next attempt is due
    first_attempt_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class NotificationEvent:
    id: str  # also the webhook-id of every delivery attempt
    type: str  # BALANCE_THRESHOLD
    rule_id: str
    subject_key: str
    feature_id: str
    feature_key: str
    entitlement_id: str
    period_start: datetime  # the usage period the threshold was reached in
    threshold: Threshold
    value: BalanceValue
    payload: dict[str, Any]  # the exact JSON body sent to the channels
    annotations: dict[str, Any]  # {"test": true} for a rule test
    created_at: datetime
    deliveries: tuple[DeliveryStatus, ...]
