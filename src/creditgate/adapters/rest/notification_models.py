"""Wire models of /notification/* (OpenMeter's shapes, as the Node SDK's schemas declare them).

Shapes only; the rules (URL schemes, secrets, thresholds, references) live in services/notifications.py.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from creditgate.wire import ThresholdOut, Time, Wire

ChannelType = Literal["WEBHOOK"]
EventType = Literal["entitlements.balance.threshold"]
DeliveryStateName = Literal["PENDING", "SENDING", "SUCCESS", "FAILED"]


class PageQuery(Wire):
    """OpenMeter's paging of the notification lists: 1-based page, pageSize items per page."""

    page: int = 1
    page_size: int = 100
    order: Literal["ASC", "DESC"] | None = None  # accepted; the order is fixed (docs/rest.md)


class ChannelListQuery(PageQuery):
    order_by: Literal["id", "type", "createdAt", "updatedAt"] | None = None
    include_disabled: bool = False
    include_deleted: bool = False


class RuleListQuery(ChannelListQuery):
    feature: list[str] | None = None  # rules covering any of these features (ids or keys)
    channel: list[str] | None = None  # rules sending to any of these channels


class EventListQuery(PageQuery):
    order_by: Literal["id", "createdAt"] | None = None
    from_: Time | None = Field(None, alias="from")
    to: Time | None = None
    feature: list[str] | None = None
    subject: list[str] | None = None
    rule: list[str] | None = None
    channel: list[str] | None = None


class ChannelIn(Wire):
    type: ChannelType = "WEBHOOK"
    name: str
    url: str
    custom_headers: dict[str, Any] | None = None
    signing_secret: str | None = Field(None, description='"whsec_" + base64 of at least 24 bytes; generated when '
                                                         "absent (on update: kept)")
    disabled: bool = False


class ChannelMeta(Wire):
    id: str
    type: ChannelType


class ChannelOut(ChannelMeta):
    name: str
    url: str
    custom_headers: dict[str, str]
    signing_secret: str
    disabled: bool
    created_at: Time
    updated_at: Time
    deleted_at: Time | None = None


class ChannelsOut(Wire):
    total_count: int
    page: int
    page_size: int
    items: list[ChannelOut]


class ThresholdIn(Wire):
    value: float
    type: Literal["NUMBER", "PERCENT"]


class RuleIn(Wire):
    type: EventType = "entitlements.balance.threshold"
    name: str
    thresholds: list[ThresholdIn]
    features: list[str] | None = Field(None, description="feature ids or keys; absent or null: every metered feature")
    channels: list[str]
    disabled: bool = False


class FeatureMeta(Wire):
    id: str
    key: str


class RuleOut(Wire):
    id: str
    type: EventType
    name: str
    thresholds: list[ThresholdOut]
    features: list[FeatureMeta] | None = None
    channels: list[ChannelMeta]
    disabled: bool
    created_at: Time
    updated_at: Time
    deleted_at: Time | None = None


class RulesOut(Wire):
    total_count: int
    page: int
    page_size: int
    items: list[RuleOut]


class DeliveryStatusOut(Wire):
    channel: ChannelMeta
    state: DeliveryStateName
    reason: str | None = Field(None, description="the status code or transport error of the last failed attempt")
    attempts: int
    next_attempt_at: Time | None = None
    updated_at: Time


class EventOut(Wire):
    id: str
    type: EventType
    created_at: Time
    rule: RuleOut
    delivery_status: list[DeliveryStatusOut]
    payload: dict[str, Any] = Field(description="the exact JSON body sent to the channels")
    annotations: dict[str, Any]


class EventsOut(Wire):
    total_count: int
    page: int
    page_size: int
    items: list[EventOut]
