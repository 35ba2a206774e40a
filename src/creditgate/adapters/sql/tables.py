"""SQLModel tables: the only place that knows the storage layout.

Invariants live in the database: unique meter slug (live meters), unique
(source, event id), feature key unique among non-archived features, and one
active entitlement per (subject, feature) - all partial unique indexes.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, Column, Index, Integer, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from creditgate.adapters.sql.types import ExactDecimal, UTCDateTime

metadata = SQLModel.metadata
JSONType = JSON().with_variant(JSONB(), "postgresql")


def _ts(nullable: bool = False, index: bool = False) -> Any:
    return Field(sa_type=UTCDateTime, nullable=nullable, index=index)


def _dec(nullable: bool = False) -> Any:
    return Field(sa_type=ExactDecimal, nullable=nullable)


def _json() -> Any:
    return Field(default_factory=dict, sa_type=JSONType, nullable=False)


class MeterRow(SQLModel, table=True):
    __tablename__ = "meters"
    __table_args__ = (
        Index("uq_meters_slug_live", "slug", unique=True,
              postgresql_where=text("deleted_at IS NULL"), sqlite_where=text("deleted_at IS NULL")),
        Index("ix_meters_event_type", "event_type"),
    )
    id: str = Field(primary_key=True, max_length=26)
    slug: str = Field(max_length=63)
    description: str | None = None
    event_type: str
    aggregation: str = Field(max_length=16)
    value_property: str | None = None
    group_by: dict[str, str] = _json()
    window_size: str = Field(max_length=8)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
    deleted_at: datetime | None = _ts(nullable=True)


class EventRow(SQLModel, table=True):
    __tablename__ = "events"
    __table_args__ = (
        Index("uq_events_source_id", "source", "event_id", unique=True),
        Index("ix_events_subject_time", "subject", "time"),
    )
    seq: int | None = Field(default=None, sa_column=Column(BigInteger().with_variant(Integer, "sqlite"),
                                                           primary_key=True, autoincrement=True))
    event_id: str
    source: str
    type: str
    subject: str
    time: datetime = _ts()
    data: dict[str, Any] = _json()
    ingested_at: datetime = _ts()
    validation_error: str | None = Field(default=None, sa_type=Text)


class MeterMinuteRow(SQLModel, table=True):
    """Per-minute aggregate of one meter for one subject and one group-by combination."""

    __tablename__ = "meter_minutes"
    # entitlement usage reads a minute range of one meter and subject, across group keys
    __table_args__ = (Index("ix_meter_minutes_subject_minute", "meter_id", "subject", "minute"),)
    meter_id: str = Field(primary_key=True, max_length=26)
    subject: str = Field(primary_key=True)
    group_key: str = Field(primary_key=True)  # canonical JSON of `groups`
    minute: datetime = Field(sa_type=UTCDateTime, primary_key=True)
    groups: dict[str, str | None] = _json()
    sum: Decimal = _dec()
    count: int = Field(sa_type=BigInteger)
    min: float | None = None
    max: float | None = None
    imported: Decimal | None = _dec(nullable=True)  # the source's minute value, when `creditgate import` wrote it


class UsageHourRow(SQLModel, table=True):
    """SUM/COUNT of meter_minutes per UTC hour (meter, subject, group). Kept in step by database triggers on
    meter_minutes (migration 0004), so every writer of minutes updates it in its own transaction."""

    __tablename__ = "usage_hours"
    meter_id: str = Field(primary_key=True, max_length=26)
    subject: str = Field(primary_key=True)
    at: datetime = Field(sa_type=UTCDateTime, primary_key=True)  # the hour's start, UTC
    group_key: str = Field(primary_key=True)  # as in meter_minutes
    sum: Decimal = _dec()
    count: int = Field(sa_type=BigInteger)


class UsageDayRow(SQLModel, table=True):
    """The same per UTC day (usage_hours' twin, kept by the same triggers)."""

    __tablename__ = "usage_days"
    meter_id: str = Field(primary_key=True, max_length=26)
    subject: str = Field(primary_key=True)
    at: datetime = Field(sa_type=UTCDateTime, primary_key=True)  # the day's start, UTC
    group_key: str = Field(primary_key=True)
    sum: Decimal = _dec()
    count: int = Field(sa_type=BigInteger)


class MeterMinuteValueRow(SQLModel, table=True):
    """Distinct values per minute, for UNIQUE_COUNT meters."""

    __tablename__ = "meter_minute_values"
    meter_id: str = Field(primary_key=True, max_length=26)
    subject: str = Field(primary_key=True)
    group_key: str = Field(primary_key=True)
    minute: datetime = Field(sa_type=UTCDateTime, primary_key=True)
    value: str = Field(primary_key=True)
    groups: dict[str, str | None] = _json()


class SubjectRow(SQLModel, table=True):
    __tablename__ = "subjects"
    id: str = Field(primary_key=True, max_length=26)
    key: str = Field(sa_column=Column(String, unique=True, nullable=False))
    display_name: str | None = None
    metadata_: dict[str, Any] = Field(default_factory=dict, sa_column=Column("metadata", JSONType, nullable=False))
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class FeatureRow(SQLModel, table=True):
    __tablename__ = "features"
    __table_args__ = (
        Index("uq_features_key_live", "key", unique=True,
              postgresql_where=text("archived_at IS NULL"), sqlite_where=text("archived_at IS NULL")),
    )
    id: str = Field(primary_key=True, max_length=26)
    key: str = Field(max_length=64)
    name: str
    metadata_: dict[str, Any] = Field(default_factory=dict, sa_column=Column("metadata", JSONType, nullable=False))
    meter_slug: str | None = None
    meter_group_by_filters: dict[str, str] = _json()
    archived_at: datetime | None = _ts(nullable=True)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class EntitlementRow(SQLModel, table=True):
    __tablename__ = "entitlements"
    __table_args__ = (
        Index("uq_entitlements_active", "subject_key", "feature_id", unique=True,
              postgresql_where=text("deleted_at IS NULL"), sqlite_where=text("deleted_at IS NULL")),
        Index("ix_entitlements_subject", "subject_key"),
        Index("ix_entitlements_feature", "feature_id"),
    )
    id: str = Field(primary_key=True, max_length=26)
    type: str = Field(max_length=8)
    subject_key: str
    feature_id: str = Field(max_length=26)
    feature_key: str
    metadata_: dict[str, Any] = Field(default_factory=dict, sa_column=Column("metadata", JSONType, nullable=False))
    config: Any | None = Field(default=None, sa_type=JSONType)
    is_soft_limit: bool = False
    usage_period_interval: str | None = None
    usage_period_anchor: datetime | None = _ts(nullable=True)
    measure_usage_from: datetime | None = _ts(nullable=True)
    issue_after_reset: Decimal | None = _dec(nullable=True)
    issue_after_reset_priority: int | None = None
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
    deleted_at: datetime | None = _ts(nullable=True)


class GrantRow(SQLModel, table=True):
    __tablename__ = "grants"
    id: str = Field(primary_key=True, max_length=26)
    entitlement_id: str = Field(max_length=26, index=True)
    amount: Decimal = _dec()
    priority: int
    effective_at: datetime = _ts()
    expiration_duration: str = Field(max_length=8)
    expiration_count: int
    expires_at: datetime = _ts()
    recurrence_interval: str | None = None
    recurrence_anchor: datetime | None = _ts(nullable=True)
    min_rollover: Decimal = _dec()
    max_rollover: Decimal = _dec()
    metadata_: dict[str, Any] = Field(default_factory=dict, sa_column=Column("metadata", JSONType, nullable=False))
    voided_at: datetime | None = _ts(nullable=True)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class ResetRow(SQLModel, table=True):
    __tablename__ = "resets"
    id: str = Field(primary_key=True, max_length=26)
    entitlement_id: str = Field(max_length=26, index=True)
    reset_at: datetime = _ts()
    retain_anchor: bool
    created_at: datetime = _ts()


class SnapshotRow(SQLModel, table=True):
    """Engine state (per-grant balances, overage) at an instant; only an optimisation."""

    __tablename__ = "snapshots"
    entitlement_id: str = Field(primary_key=True, max_length=26)
    at: datetime = Field(sa_type=UTCDateTime, primary_key=True)
    balances: dict[str, str] = _json()
    overage: Decimal = _dec()
    period_usage: Decimal | None = _dec(nullable=True)
    created_at: datetime = _ts()


class PortalTokenRow(SQLModel, table=True):
    """Subject (portal) tokens, so that they can be listed and invalidated."""

    __tablename__ = "portal_tokens"
    __table_args__ = (Index("ix_portal_tokens_subject", "subject_key"),)
    id: str = Field(primary_key=True, max_length=26)
    subject_key: str
    allowed_feature_keys: list[str] | None = Field(default=None, sa_type=JSONType)
    expires_at: datetime = _ts()
    invalidated_at: datetime | None = _ts(nullable=True)
    created_at: datetime = _ts()


class InstallationRow(SQLModel, table=True):
    """This database's identity: one row, its random id made by migration 0002 (so a restored dump
    and every upgrade keep it). The Redis cache puts the id in its key namespace."""

    __tablename__ = "installation"
    __table_args__ = (CheckConstraint("singleton = 1", name="ck_installation_singleton"),)
    singleton: int = Field(default=1, sa_column=Column(Integer, primary_key=True, autoincrement=False))
    id: str = Field(max_length=32)
    created_at: datetime = _ts()


# ---- notifications (docs/semantics.md §11) ----------------------------------------------------------------

class NotificationChannelRow(SQLModel, table=True):
    __tablename__ = "notification_channels"
    id: str = Field(primary_key=True, max_length=26)
    type: str = Field(max_length=16)
    name: str
    url: str = Field(sa_type=Text)
    custom_headers: dict[str, str] = _json()
    signing_secret: str
    disabled: bool = False
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
    deleted_at: datetime | None = _ts(nullable=True)


class NotificationRuleRow(SQLModel, table=True):
    __tablename__ = "notification_rules"
    id: str = Field(primary_key=True, max_length=26)
    type: str = Field(max_length=64)
    name: str
    thresholds: list[dict[str, str]] = Field(default_factory=list, sa_type=JSONType, nullable=False)
    feature_ids: list[str] | None = Field(default=None, sa_type=JSONType)  # NULL: every metered feature
    disabled: bool = False
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
    deleted_at: datetime | None = _ts(nullable=True)


class NotificationRuleChannelRow(SQLModel, table=True):
    """The channels of a rule (so that a channel's users are one indexed read)."""

    __tablename__ = "notification_rule_channels"
    __table_args__ = (Index("ix_notification_rule_channels_channel", "channel_id"),)
    rule_id: str = Field(primary_key=True, max_length=26)
    channel_id: str = Field(primary_key=True, max_length=26)
    position: int = 0


class NotificationEventRow(SQLModel, table=True):
    __tablename__ = "notification_events"
    __table_args__ = (
        Index("ix_notification_events_created", "created_at"),
        Index("ix_notification_events_rule", "rule_id"),
        Index("ix_notification_events_subject", "subject_key"),
    )
    id: str = Field(primary_key=True, max_length=26)
    type: str = Field(max_length=64)
    rule_id: str = Field(max_length=26)
    subject_key: str
    feature_id: str = Field(max_length=26)
    feature_key: str
    entitlement_id: str = Field(max_length=26)
    period_start: datetime = _ts()
    threshold_type: str = Field(max_length=8)
    threshold_value: Decimal = _dec()
    value: dict[str, Any] = _json()  # {hasAccess, balance, usage, overage} as decimal text
    payload: dict[str, Any] = _json()
    annotations: dict[str, Any] = _json()
    created_at: datetime = _ts()


class NotificationMarkRow(SQLModel, table=True):
    """One row per (rule, entitlement, usage period, threshold) ever reached: the primary key is what makes
    "at most one event" hold in the database. `event_id` is the event that carried it (for a threshold
    passed together with a higher one, that higher one's event)."""

    __tablename__ = "notification_marks"
    rule_id: str = Field(primary_key=True, max_length=26)
    entitlement_id: str = Field(primary_key=True, max_length=26)
    period_start: datetime = Field(sa_type=UTCDateTime, primary_key=True)
    threshold: str = Field(primary_key=True, max_length=64)  # "NUMBER:80" / "PERCENT:100" (canonical decimal)
    event_id: str = Field(max_length=26)
    passed: bool = False  # reached together with a higher threshold, which carried the event
    created_at: datetime = _ts()


class NotificationDeliveryRow(SQLModel, table=True):
    """The delivery queue: one row per (event, channel)."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (Index("ix_notification_deliveries_due", "state", "next_attempt_at"),)
    event_id: str = Field(primary_key=True, max_length=26)
    channel_id: str = Field(primary_key=True, max_length=26)
    state: str = Field(max_length=8)
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_type=Text)
    next_attempt_at: datetime | None = _ts(nullable=True)  # PENDING: due then; SENDING: the lease's end
    first_attempt_at: datetime | None = _ts(nullable=True)
    updated_at: datetime = _ts()


class NotificationPendingRow(SQLModel, table=True):
    """Evaluation work: the subjects whose values may have crossed a threshold, written in the same transaction
    as the write (only while an enabled rule exists), and the next instant a value changes with no write."""

    __tablename__ = "notification_pending"
    __table_args__ = (Index("ix_notification_pending_due", "due_at"),)
    subject_key: str = Field(primary_key=True)
    due_at: datetime = _ts()
    version: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default=text("0")))
    claimed_until: datetime | None = _ts(nullable=True)  # an evaluator works on it until then
