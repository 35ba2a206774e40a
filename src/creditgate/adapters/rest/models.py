"""Wire models (camelCase JSON): request bodies, query parameters and responses.

They describe shapes only; the rules (formats, ranges, uniqueness) live in the services. The response
models of subjects, features, entitlements and values live in creditgate/wire.py (the webhook payload
of notifications reuses them) and are re-exported here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from creditgate.records import Aggregation  # the shared vocabulary, as GraphQL's MeterAggregation
from creditgate.wire import (
    EntitlementOut,
    EntitlementTypeName,
    EntitlementValueOut,
    FeatureOut,
    Interval,
    Period,
    SubjectOut,
    Time,
    UsagePeriodOut,
    Wire,
)

__all__ = ["EntitlementOut", "EntitlementValueOut", "FeatureOut", "Period", "SubjectOut", "Time",
           "UsagePeriodOut", "Wire"]

Number = Annotated[float, Field()]


class Problem(Wire):
    """RFC 7807 problem details."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str | None = None
    extensions: dict[str, Any] | None = None


# ---- subjects -------------------------------------------------------------------------------------------

class SubjectIn(Wire):
    key: str
    display_name: str | None = None
    metadata: dict[str, Any] | None = None


# ---- features -------------------------------------------------------------------------------------------

class FeatureIn(Wire):
    key: str
    name: str
    metadata: dict[str, Any] | None = None
    meter_slug: str | None = None
    meter_group_by_filters: dict[str, str] | None = None


class Page(Wire):
    """Paging of the list routes (OpenMeter's defaults)."""

    limit: int = 1000
    offset: int = 0


class FeatureListQuery(Page):
    order_by: Literal["id", "key", "createdAt", "updatedAt"] = "updatedAt"
    include_archived: bool = False
    meter_slug: list[str] | None = None  # any of these meters


# ---- meters and events ----------------------------------------------------------------------------------

WindowSize = Literal["MINUTE", "HOUR", "DAY"]


class MeterIn(Wire):
    slug: str
    aggregation: Aggregation
    event_type: str
    window_size: WindowSize = "MINUTE"
    description: str | None = None
    value_property: str | None = None
    group_by: dict[str, str] | None = None


class MeterOut(Wire):
    id: str
    slug: str
    description: str | None = None
    aggregation: Aggregation
    event_type: str
    value_property: str | None = None
    group_by: dict[str, str] | None = None
    window_size: WindowSize


class MeterQueryParams(Wire):
    from_: Time | None = Field(None, alias="from")
    to: Time | None = None
    window_size: WindowSize | None = None
    window_time_zone: str = "UTC"
    subject: list[str] | None = None
    filter_group_by: dict[str, str] | None = None
    group_by: list[str] | None = None


class PortalMeterQueryParams(Wire):
    from_: Time | None = Field(None, alias="from")
    to: Time | None = None
    window_size: WindowSize | None = None
    window_time_zone: str = "UTC"
    filter_group_by: dict[str, str] | None = None
    group_by: list[str] | None = None


class MeterQueryRowOut(Wire):
    value: float
    window_start: Time
    window_end: Time
    subject: str | None = None
    group_by: dict[str, str | None] | None = None


class MeterQueryResult(Wire):
    from_: Time | None = Field(None, alias="from")
    to: Time | None = None
    window_size: WindowSize | None = None
    data: list[MeterQueryRowOut]


class CloudEventFields(Wire):
    """The attributes every CloudEvent has, with CloudEvents' own (not camelCased) names."""

    model_config = ConfigDict(alias_generator=None)
    id: str
    source: str
    specversion: str = "1.0"
    type: str
    subject: str


class CloudEventIn(CloudEventFields):
    """A CloudEvent as sent (documentation: the events service checks it and names a bad event's index)."""

    time: Time | None = None
    data: dict[str, Any] | None = None
    datacontenttype: str | None = None
    dataschema: str | None = None


class CloudEventOut(CloudEventFields):
    time: Time
    data: dict[str, Any]


class IngestedEvent(Wire):
    event: CloudEventOut
    validation_error: str | None = None
    ingested_at: Time


class EventListQuery(Wire):
    from_: Time | None = Field(None, alias="from")
    to: Time | None = None
    limit: int = 100
    subject: str | None = None


# ---- entitlements ---------------------------------------------------------------------------------------

EntitlementType = EntitlementTypeName
Duration = Literal["HOUR", "DAY", "WEEK", "MONTH", "YEAR"]


class UsagePeriodIn(Wire):
    interval: Interval
    anchor: Time | None = None


class EntitlementIn(Wire):
    """One body for the three types; which fields apply to which type is checked by the service."""

    type: EntitlementType
    feature_id: str | None = None
    feature_key: str | None = None
    metadata: dict[str, Any] | None = None
    usage_period: UsagePeriodIn | None = None
    is_soft_limit: bool | None = None
    measure_usage_from: Time | None = None
    issue_after_reset: float | None = None
    issue_after_reset_priority: int | None = None
    config: str | dict[str, Any] | None = Field(None, description="static: a JSON object encoded as a string")


class EntitlementListQuery(Page):
    order_by: Literal["createdAt", "updatedAt"] = "createdAt"
    include_deleted: bool = False
    subject: list[str] | None = None  # any of these subject keys
    feature: list[str] | None = None  # any of these feature ids or keys
    entitlement_type: list[EntitlementType] | None = None


class SubjectEntitlementsQuery(Wire):
    include_deleted: bool = False


class ValueQuery(Wire):
    time: Time | None = None


class HistoryQuery(Wire):
    window_size: WindowSize
    from_: Time | None = Field(None, alias="from")
    to: Time | None = None
    window_time_zone: str = "UTC"


class BalanceWindowOut(Wire):
    period: Period
    usage: float
    balance_at_start: float


class GrantUsageOut(Wire):
    grant_id: str
    usage: float


class BurndownSegmentOut(Wire):
    period: Period
    usage: float
    overage: float
    balance_at_start: float
    balance_at_end: float
    grant_balances_at_start: dict[str, float]
    grant_balances_at_end: dict[str, float]
    grant_usages: list[GrantUsageOut]


class HistoryOut(Wire):
    windowed_history: list[BalanceWindowOut]
    burndown_history: list[BurndownSegmentOut]


class ResetIn(Wire):
    effective_at: Time | None = None
    retain_anchor: bool = False


# ---- grants ---------------------------------------------------------------------------------------------

class ExpirationIn(Wire):
    duration: Duration
    count: int


class GrantIn(Wire):
    amount: float
    effective_at: Time
    expiration: ExpirationIn
    priority: int = 1
    min_rollover_amount: float = 0
    max_rollover_amount: float = 0
    metadata: dict[str, Any] | None = None
    recurrence: UsagePeriodIn | None = None


class GrantOut(Wire):
    id: str
    entitlement_id: str
    amount: float
    priority: int
    effective_at: Time
    expiration: ExpirationIn
    expires_at: Time
    recurrence: UsagePeriodOut | None = None
    next_recurrence: Time | None = None
    min_rollover_amount: float
    max_rollover_amount: float
    metadata: dict[str, Any] | None = None
    voided_at: Time | None = None
    created_at: Time
    updated_at: Time


class GrantListQuery(Page):
    order_by: Literal["id", "createdAt", "updatedAt"] = "updatedAt"
    include_deleted: bool = False
    subject: list[str] | None = None  # any of these subject keys
    feature: list[str] | None = None  # any of these feature ids or keys


class EntitlementGrantsQuery(Wire):
    include_deleted: bool = False
    order_by: Literal["id", "createdAt", "updatedAt"] = "updatedAt"


# ---- portal tokens --------------------------------------------------------------------------------------

class PortalTokenIn(Wire):
    subject: str
    expires_at: Time | None = None
    allowed_meter_slugs: list[str] | None = None


class PortalTokenOut(Wire):
    id: str
    subject: str
    token: str | None = None
    expired: bool
    expires_at: Time
    created_at: Time
    invalidated_at: Time | None = None


class PortalTokenListQuery(Wire):
    limit: int = 25


class InvalidateTokensIn(Wire):
    id: str | None = None
    subject: str | None = None
