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
