"""The REST representations of records (OpenMeter v1 shapes, camelCase JSON), in one home.

The REST API renders subjects, features, entitlements and values through these models and mappings, and
so does the webhook payload of a balance-threshold notification (docs/semantics.md §11), which carries
"the REST API's representations of those objects". A base module, so that services (which build the
payload) and adapters/rest (which serve it) share one mapping.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, Protocol

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, WithJsonSchema
from pydantic.alias_generators import to_camel

from creditgate.records import (
    BALANCE_THRESHOLD,
    BalanceValue,
    Entitlement,
    EntitlementType,
    Feature,
    Subject,
    Threshold,
)
from creditgate.timefmt import format_rfc3339, parse_rfc3339


def _parse_time(value: Any) -> datetime:
    return parse_rfc3339(value.replace(" ", "+") if isinstance(value, str) else value)


# RFC 3339 in ("+" may arrive unescaped in a query string, decoded as a space), UTC "Z" out.
Time = Annotated[datetime, BeforeValidator(_parse_time), PlainSerializer(format_rfc3339, return_type=str),
                 WithJsonSchema({"type": "string", "format": "date-time"})]

Interval = Literal["DAY", "WEEK", "MONTH", "YEAR"]
EntitlementTypeName = Literal["metered", "static", "boolean"]


class Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


def as_json(model: BaseModel) -> dict[str, Any]:
    """The model exactly as the REST API sends it (camelCase, RFC 3339 "Z", absent fields dropped)."""
    out: dict[str, Any] = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return out


def num(x: Decimal | None) -> float | None:
    return None if x is None else float(x)


def config_text(config: Any) -> str | None:
    """A static entitlement's config: a JSON object encoded as a string on the wire."""
    return None if config is None else orjson.dumps(config).decode()


# ---- subjects and features ------------------------------------------------------------------------------

class SubjectOut(Wire):
    id: str
    key: str
    display_name: str | None = None
    metadata: dict[str, Any] | None = None
    created_at: Time
    updated_at: Time


def subject_out(s: Subject) -> SubjectOut:
    return SubjectOut(id=s.id, key=s.key, display_name=s.display_name, metadata=s.metadata,
                      created_at=s.created_at, updated_at=s.updated_at)


class FeatureOut(Wire):
    id: str
    key: str
    name: str
    metadata: dict[str, Any] | None = None
    meter_slug: str | None = None
    meter_group_by_filters: dict[str, str] | None = None
    archived_at: Time | None = None
    created_at: Time
    updated_at: Time


def feature_out(f: Feature) -> FeatureOut:
    return FeatureOut(id=f.id, key=f.key, name=f.name, metadata=f.metadata, meter_slug=f.meter_slug,
                      meter_group_by_filters=f.meter_group_by_filters, archived_at=f.archived_at,
                      created_at=f.created_at, updated_at=f.updated_at)


# ---- entitlements and values ----------------------------------------------------------------------------

class UsagePeriodOut(Wire):
    interval: Interval
    anchor: Time


class Period(Wire):
    from_: Time = Field(alias="from")
    to: Time


class EntitlementOut(Wire):
    id: str
    type: EntitlementTypeName
    feature_id: str
    feature_key: str
    subject_key: str
    metadata: dict[str, Any] | None = None
    created_at: Time
    updated_at: Time
    deleted_at: Time | None = None
    # metered
    is_soft_limit: bool | None = None
    is_unlimited: bool | None = None
    issue_after_reset: float | None = None
    issue_after_reset_priority: int | None = None
    measure_usage_from: Time | None = None
    usage_period: UsagePeriodOut | None = None
    current_usage_period: Period | None = None
    last_reset: Time | None = None
    # static
    config: str | None = Field(None, description="static: a JSON object encoded as a string")


class PeriodFields(Protocol):
    """The period fields of a METERED entitlement at an instant (services.entitlements.UsagePeriods)."""

    @property
    def interval(self) -> str: ...
    @property
    def anchor(self) -> datetime: ...
    @property
    def current_from(self) -> datetime: ...
    @property
    def current_to(self) -> datetime: ...
    @property
    def last_reset(self) -> datetime: ...


def entitlement_out(e: Entitlement, periods: PeriodFields | None) -> EntitlementOut:
    out = EntitlementOut(id=e.id, type=e.type.lower(), feature_id=e.feature_id,
                         feature_key=e.feature_key, subject_key=e.subject_key, metadata=e.metadata,
                         created_at=e.created_at, updated_at=e.updated_at, deleted_at=e.deleted_at)
    if e.type == EntitlementType.STATIC:
        out.config = config_text(e.config)
    elif periods is not None:  # METERED: the period fields as services compute them
        out.is_soft_limit, out.is_unlimited = e.is_soft_limit, False
        out.issue_after_reset, out.issue_after_reset_priority = num(e.issue_after_reset), e.issue_after_reset_priority
        out.measure_usage_from = e.measure_usage_from
        out.usage_period = UsagePeriodOut(interval=periods.interval, anchor=periods.anchor)
        out.current_usage_period = Period(from_=periods.current_from, to=periods.current_to)
        out.last_reset = periods.last_reset
    return out


class EntitlementValueOut(Wire):
    has_access: bool
    balance: float | None = None
    usage: float | None = None
    overage: float | None = None
    config: str | None = None


def value_out(has_access: bool, balance: Decimal | None = None, usage: Decimal | None = None,
              overage: Decimal | None = None, config: Any = None) -> EntitlementValueOut:
    return EntitlementValueOut(has_access=has_access, balance=num(balance), usage=num(usage), overage=num(overage),
                               config=config_text(config))


def balance_value_out(v: BalanceValue) -> EntitlementValueOut:
    return value_out(v.has_access, v.balance, v.usage, v.overage)


# ---- notifications (docs/semantics.md §11) --------------------------------------------------------------

ThresholdTypeName = Literal["NUMBER", "PERCENT"]


class ThresholdOut(Wire):
    value: float
    type: ThresholdTypeName


def threshold_out(t: Threshold) -> ThresholdOut:
    return ThresholdOut(value=float(t.value), type=t.type.value)


class BalanceThresholdData(Wire):
    entitlement: EntitlementOut
    feature: FeatureOut
    subject: SubjectOut
    value: EntitlementValueOut
    threshold: ThresholdOut


class BalanceThresholdPayload(Wire):
    """The body of every delivery of a balance-threshold event (OpenMeter's shape)."""

    id: str
    type: Literal["entitlements.balance.threshold"] = BALANCE_THRESHOLD  # type: ignore[assignment]
    timestamp: Time
    data: BalanceThresholdData


def balance_threshold_payload(event_id: str, timestamp: datetime, entitlement: Entitlement,
                              periods: PeriodFields | None, feature: Feature, subject: Subject,
                              value: BalanceValue, threshold: Threshold) -> dict[str, Any]:
    """The webhook body of a balance-threshold event, as JSON-ready data (stored as the event's payload)."""
    return as_json(BalanceThresholdPayload(
        id=event_id, timestamp=timestamp,
        data=BalanceThresholdData(entitlement=entitlement_out(entitlement, periods), feature=feature_out(feature),
                                  subject=subject_out(subject), value=balance_value_out(value),
                                  threshold=threshold_out(threshold))))
