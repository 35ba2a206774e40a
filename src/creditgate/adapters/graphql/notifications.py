"""GraphQL: notification channels, rules and events (docs/semantics.md §11). API keys only: every root field
checks the caller is an admin first (a subject token gets FORBIDDEN); the types are reachable from them only."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import Enum
from typing import Annotated

import strawberry
from strawberry.dataloader import DataLoader

from creditgate.adapters.graphql import loaders
from creditgate.adapters.graphql.context import Info
from creditgate.adapters.graphql.entitlements import EntitlementValue, num
from creditgate.adapters.graphql.features import Feature
from creditgate.adapters.graphql.scalars import JSON
from creditgate.records import DeliveryState, ThresholdType
from creditgate.records import DeliveryStatus as DeliveryRecord
from creditgate.records import NotificationChannel as ChannelRecord
from creditgate.records import NotificationEvent as EventRecord
from creditgate.records import NotificationRule as RuleRecord
from creditgate.records import Threshold as ThresholdRecord
from creditgate.services import notifications as svc

# The shared vocabulary (records.py), registered under the contract's names.
strawberry.enum(ThresholdType, name="ThresholdType")
strawberry.enum(DeliveryState, name="DeliveryState")


@strawberry.enum
class NotificationChannelType(Enum):
    WEBHOOK = "WEBHOOK"


@strawberry.enum
class NotificationEventType(Enum):
    ENTITLEMENTS_BALANCE_THRESHOLD = "entitlements.balance.threshold"


def _channels(info: Info) -> DataLoader[str, ChannelRecord | None]:
    """Channels by id, deleted ones too (a rule's or a delivery's channel), batched per request."""
    loader: DataLoader[str, ChannelRecord | None] | None = info.context.loaders.get("notification_channels")
    if loader is None:
        rt = info.context.rt

        async def load(ids: Sequence[str]) -> list[ChannelRecord | None]:
            found = await svc.channels_by_ids(rt, ids)
            return [found.get(i) for i in ids]
        loader = info.context.loaders["notification_channels"] = DataLoader(load_fn=load)
    return loader


def _rules(info: Info) -> DataLoader[str, RuleRecord | None]:
    """Rules by id, deleted ones too (an event's rule), batched per request."""
    loader: DataLoader[str, RuleRecord | None] | None = info.context.loaders.get("notification_rules")
    if loader is None:
        rt = info.context.rt

        async def load(ids: Sequence[str]) -> list[RuleRecord | None]:
            found = await svc.rules_by_ids(rt, ids)
            return [found.get(i) for i in ids]
        loader = info.context.loaders["notification_rules"] = DataLoader(load_fn=load)
    return loader


@strawberry.type
class NotificationChannel:
    id: strawberry.ID
    type: NotificationChannelType
    name: str
    url: str
    custom_headers: JSON
    signing_secret: str
    disabled: bool
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None

    @classmethod
    def of(cls, c: ChannelRecord) -> NotificationChannel:
        return cls(id=strawberry.ID(c.id), type=NotificationChannelType(c.type), name=c.name, url=c.url,
                   custom_headers=dict(c.custom_headers), signing_secret=c.signing_secret, disabled=c.disabled,
                   created_at=c.created_at, updated_at=c.updated_at, deleted_at=c.deleted_at)


@strawberry.type
class BalanceThreshold:
    value: float
    type: ThresholdType

    @classmethod
    def of(cls, t: ThresholdRecord) -> BalanceThreshold:
        return cls(value=float(t.value), type=t.type)


@strawberry.type
class NotificationRule:
    id: strawberry.ID
    type: NotificationEventType
    name: str
    thresholds: list[BalanceThreshold]
    disabled: bool
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None
    rec: strawberry.Private[RuleRecord]

    @classmethod
    def of(cls, r: RuleRecord) -> NotificationRule:
        return cls(id=strawberry.ID(r.id), type=NotificationEventType(r.type), name=r.name,
                   thresholds=[BalanceThreshold.of(t) for t in r.thresholds], disabled=r.disabled,
                   created_at=r.created_at, updated_at=r.updated_at, deleted_at=r.deleted_at, rec=r)

    @strawberry.field
    async def features(self, info: Info) -> list[Feature] | None:
        """The features the rule covers; null: every metered feature."""
        if self.rec.feature_ids is None:
            return None
        found = await loaders.features(info).load_many(list(self.rec.feature_ids))
        return [Feature.of(f) for f in found if f is not None]

    @strawberry.field
    async def channels(self, info: Info) -> list[NotificationChannel]:
        found = await _channels(info).load_many(list(self.rec.channel_ids))
        return [NotificationChannel.of(c) for c in found if c is not None]


@strawberry.type
class DeliveryStatus:
    state: DeliveryState
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None
    updated_at: datetime
    rec: strawberry.Private[DeliveryRecord]

    @classmethod
    def of(cls, d: DeliveryRecord) -> DeliveryStatus:
        return cls(state=d.state, attempts=d.attempts, last_error=d.last_error, next_attempt_at=d.next_attempt_at,
                   updated_at=d.updated_at, rec=d)

    @strawberry.field
    async def channel(self, info: Info) -> NotificationChannel:
        found = await _channels(info).load(self.rec.channel_id)
        if found is None:  # channels are only ever soft-deleted
            raise LookupError(f"channel {self.rec.channel_id} of a delivery is missing")
        return NotificationChannel.of(found)


@strawberry.type
class NotificationEvent:
    id: strawberry.ID
    type: NotificationEventType
    created_at: datetime
    subject_key: str
    feature_key: str
    entitlement_id: strawberry.ID
    threshold: BalanceThreshold
    value: EntitlementValue
    payload: JSON
    delivery_status: list[DeliveryStatus]
    annotations: JSON
    rec: strawberry.Private[EventRecord]

    @classmethod
    def of(cls, e: EventRecord) -> NotificationEvent:
        v = e.value
        return cls(id=strawberry.ID(e.id), type=NotificationEventType(e.type), created_at=e.created_at,
                   subject_key=e.subject_key, feature_key=e.feature_key,
                   entitlement_id=strawberry.ID(e.entitlement_id), threshold=BalanceThreshold.of(e.threshold),
                   value=EntitlementValue(has_access=v.has_access, balance=num(v.balance), usage=num(v.usage),
                                          overage=num(v.overage)),
                   payload=e.payload, delivery_status=[DeliveryStatus.of(d) for d in e.deliveries],
                   annotations=e.annotations, rec=e)

    @strawberry.field
    async def rule(self, info: Info) -> NotificationRule:
        found = await _rules(info).load(self.rec.rule_id)
        if found is None:  # rules are only ever soft-deleted
            raise LookupError(f"rule {self.rec.rule_id} of an event is missing")
        return NotificationRule.of(found)


@strawberry.input
class BalanceThresholdInput:
    value: float
    type: ThresholdType


@strawberry.input
class NotificationChannelInput:
    name: str
    url: str
    custom_headers: JSON | None = None
    signing_secret: str | None = None
    disabled: bool | None = False


@strawberry.input
class NotificationRuleInput:
    name: str
    thresholds: list[BalanceThresholdInput]
    features: list[str] | None = None
    channels: list[strawberry.ID] = strawberry.field()
    disabled: bool | None = False


def _thresholds(given: list[BalanceThresholdInput]) -> list[svc.ThresholdInput]:
    return [svc.ThresholdInput(value=t.value, type=t.type) for t in given]


@strawberry.type
class NotificationQuery:
    @strawberry.field
    async def notification_channels(self, info: Info,
                                    include_deleted: bool | None = False) -> list[NotificationChannel]:
        page = await svc.list_channels(info.context.admin(), include_deleted=bool(include_deleted))
        return [NotificationChannel.of(c) for c in page.items]

    @strawberry.field
    async def notification_channel(self, info: Info, id: strawberry.ID) -> NotificationChannel | None:
        found = await svc.get_channel(info.context.admin(), str(id))
        return NotificationChannel.of(found) if found else None

    @strawberry.field
    async def notification_rules(self, info: Info, include_deleted: bool | None = False) -> list[NotificationRule]:
        page = await svc.list_rules(info.context.admin(), include_deleted=bool(include_deleted))
        return [NotificationRule.of(r) for r in page.items]

    @strawberry.field
    async def notification_rule(self, info: Info, id: strawberry.ID) -> NotificationRule | None:
        found = await svc.get_rule(info.context.admin(), str(id))
        return NotificationRule.of(found) if found else None

    @strawberry.field  # newest first
    async def notification_events(
            self, info: Info, subject_key: str | None = None, feature_key: str | None = None,
            rule_id: strawberry.ID | None = None,
            from_: Annotated[datetime | None, strawberry.argument(name="from")] = None,
            to: datetime | None = None, limit: int | None = 100, offset: int | None = 0) -> list[NotificationEvent]:
        page = await svc.list_events(
            info.context.admin(), subjects=None if subject_key is None else [subject_key],
            features=None if feature_key is None else [feature_key], rules=None if rule_id is None else [str(rule_id)],
            from_=from_, to=to, limit=100 if limit is None else limit, offset=offset or 0)
        return [NotificationEvent.of(e) for e in page.items]

    @strawberry.field
    async def notification_event(self, info: Info, id: strawberry.ID) -> NotificationEvent | None:
        found = await svc.get_event(info.context.admin(), str(id))
        return NotificationEvent.of(found) if found else None


@strawberry.type
class NotificationMutation:
    @strawberry.mutation
    async def create_notification_channel(self, info: Info, input: NotificationChannelInput) -> NotificationChannel:
        return NotificationChannel.of(await svc.create_channel(
            info.context.admin(), input.name, input.url, input.custom_headers, input.signing_secret,
            bool(input.disabled)))

    @strawberry.mutation
    async def update_notification_channel(self, info: Info, id: strawberry.ID,
                                          input: NotificationChannelInput) -> NotificationChannel:
        return NotificationChannel.of(await svc.update_channel(
            info.context.admin(), str(id), input.name, input.url, input.custom_headers, input.signing_secret,
            bool(input.disabled)))

    @strawberry.mutation
    async def delete_notification_channel(self, info: Info, id: strawberry.ID) -> bool:
        await svc.delete_channel(info.context.admin(), str(id))
        return True

    @strawberry.mutation
    async def create_notification_rule(self, info: Info, input: NotificationRuleInput) -> NotificationRule:
        return NotificationRule.of(await svc.create_rule(
            info.context.admin(), input.name, _thresholds(input.thresholds), [str(c) for c in input.channels],
            input.features, bool(input.disabled)))

    @strawberry.mutation
    async def update_notification_rule(self, info: Info, id: strawberry.ID,
                                       input: NotificationRuleInput) -> NotificationRule:
        return NotificationRule.of(await svc.update_rule(
            info.context.admin(), str(id), input.name, _thresholds(input.thresholds),
            [str(c) for c in input.channels], input.features, bool(input.disabled)))

    @strawberry.mutation
    async def delete_notification_rule(self, info: Info, id: strawberry.ID) -> bool:
        await svc.delete_rule(info.context.admin(), str(id))
        return True

    @strawberry.mutation  # a sample event of the rule, sent to its channels now (annotations.test = true)
    async def test_notification_rule(self, info: Info, id: strawberry.ID) -> NotificationEvent:
        return NotificationEvent.of(await svc.test_rule(info.context.admin(), str(id)))
