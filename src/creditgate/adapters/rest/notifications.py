"""REST: OpenMeter's /notification/* (channels, rules, rule tests, events; docs/semantics.md §11). API keys only
(the routes' default access), so a subject token gets 403. Lists page like the Node SDK expects:
`?page=1&pageSize=100`, answered as {items, totalCount, page, pageSize}."""

from __future__ import annotations

from collections.abc import Sequence

from creditgate.adapters.rest.notification_models import (
    ChannelIn,
    ChannelListQuery,
    ChannelMeta,
    ChannelOut,
    ChannelsOut,
    DeliveryStatusOut,
    EventListQuery,
    EventOut,
    EventsOut,
    FeatureMeta,
    PageQuery,
    RuleIn,
    RuleListQuery,
    RuleOut,
    RulesOut,
)
from creditgate.adapters.rest.router import Call, api
from creditgate.domain.errors import BadInput, NotFound
from creditgate.records import NotificationChannel, NotificationEvent, NotificationRule
from creditgate.services import features as feature_svc
from creditgate.services import notifications as svc
from creditgate.services.runtime import Runtime
from creditgate.services.validation import MAX_LIMIT
from creditgate.wire import threshold_out

TAG = "Notifications"
CHANNELS, RULES, EVENTS = "/notification/channels", "/notification/rules", "/notification/events"


def _page(q: PageQuery) -> tuple[int, int]:
    """(limit, offset) of a 1-based page."""
    if q.page < 1:
        raise BadInput("page must be >= 1")
    if not 1 <= q.page_size <= MAX_LIMIT:
        raise BadInput(f"pageSize must be between 1 and {MAX_LIMIT}")
    return q.page_size, (q.page - 1) * q.page_size


def channel_out(ch: NotificationChannel) -> ChannelOut:
    return ChannelOut(id=ch.id, type="WEBHOOK", name=ch.name, url=ch.url, custom_headers=dict(ch.custom_headers),
                      signing_secret=ch.signing_secret, disabled=ch.disabled, created_at=ch.created_at,
                      updated_at=ch.updated_at, deleted_at=ch.deleted_at)


async def rules_out(rt: Runtime, rules: Sequence[NotificationRule]) -> list[RuleOut]:
    """Rules with their features' ids and keys (one lookup for all of them)."""
    ids = sorted({f for r in rules for f in (r.feature_ids or ())})
    features = await feature_svc.features_by_ids(rt, ids) if ids else {}
    out = []
    for r in rules:
        metas = None
        if r.feature_ids is not None:
            metas = [FeatureMeta(id=f, key=features[f].key) for f in r.feature_ids if f in features]
        out.append(RuleOut(id=r.id, type="entitlements.balance.threshold", name=r.name,
                           thresholds=[threshold_out(t) for t in r.thresholds], features=metas,
                           channels=[ChannelMeta(id=c, type="WEBHOOK") for c in r.channel_ids], disabled=r.disabled,
                           created_at=r.created_at, updated_at=r.updated_at, deleted_at=r.deleted_at))
    return out


async def events_out(rt: Runtime, events: Sequence[NotificationEvent]) -> list[EventOut]:
    rules = await svc.rules_by_ids(rt, sorted({e.rule_id for e in events})) if events else {}
    by_id = {r.id: r for r in await rules_out(rt, list(rules.values()))}
    out = []
    for e in events:
        deliveries = [DeliveryStatusOut(channel=ChannelMeta(id=d.channel_id, type="WEBHOOK"), state=d.state.value,
                                        reason=d.last_error, attempts=d.attempts, next_attempt_at=d.next_attempt_at,
                                        updated_at=d.updated_at) for d in e.deliveries]
        out.append(EventOut(id=e.id, type="entitlements.balance.threshold", created_at=e.created_at,
                            rule=by_id[e.rule_id], delivery_status=deliveries, payload=e.payload,
                            annotations=e.annotations))
    return out


# ---- channels -------------------------------------------------------------------------------------------

@api.route("GET", CHANNELS, op_id="listNotificationChannels", tag=TAG,
           summary="List notification channels (oldest first; disabled ones with includeDisabled=true)",
           query=ChannelListQuery, response=ChannelsOut)
async def list_channels(c: Call) -> ChannelsOut:
    q: ChannelListQuery = c.query
    limit, offset = _page(q)
    page = await svc.list_channels(c.rt, q.include_deleted, q.include_disabled, limit, offset)
    return ChannelsOut(total_count=page.total, page=q.page, page_size=q.page_size,
                       items=[channel_out(ch) for ch in page.items])


@api.route("POST", CHANNELS, op_id="createNotificationChannel", tag=TAG, summary="Create a webhook channel",
           status=201, body=ChannelIn, response=ChannelOut)
async def create_channel(c: Call) -> ChannelOut:
    b: ChannelIn = c.body
    return channel_out(await svc.create_channel(c.rt, b.name, b.url, b.custom_headers, b.signing_secret, b.disabled))


@api.route("GET", CHANNELS + "/{channelId}", op_id="getNotificationChannel", tag=TAG,
           summary="Get a notification channel (a deleted one too, with deletedAt)", response=ChannelOut)
async def get_channel(c: Call) -> ChannelOut:
    found = await svc.get_channel(c.rt, c.path["channelId"])
    if found is None:
        raise NotFound(f"notification channel {c.path['channelId']!r} not found")
    return channel_out(found)


@api.route("PUT", CHANNELS + "/{channelId}", op_id="updateNotificationChannel", tag=TAG,
           summary="Replace a notification channel's fields (an absent signingSecret keeps the current one)",
           body=ChannelIn, response=ChannelOut)
async def update_channel(c: Call) -> ChannelOut:
    b: ChannelIn = c.body
    return channel_out(await svc.update_channel(c.rt, c.path["channelId"], b.name, b.url, b.custom_headers,
                                                b.signing_secret, b.disabled))


@api.route("DELETE", CHANNELS + "/{channelId}", op_id="deleteNotificationChannel", tag=TAG,
           summary="Delete a notification channel (409 while an enabled rule uses it)", status=204)
async def delete_channel(c: Call) -> None:
    await svc.delete_channel(c.rt, c.path["channelId"])


# ---- rules ----------------------------------------------------------------------------------------------

@api.route("GET", RULES, op_id="listNotificationRules", tag=TAG,
           summary="List notification rules (oldest first; disabled ones with includeDisabled=true)",
           query=RuleListQuery, response=RulesOut)
async def list_rules(c: Call) -> RulesOut:
    q: RuleListQuery = c.query
    limit, offset = _page(q)
    page = await svc.list_rules(c.rt, q.include_deleted, q.include_disabled, q.feature, q.channel, limit, offset)
    return RulesOut(total_count=page.total, page=q.page, page_size=q.page_size,
                    items=await rules_out(c.rt, page.items))


@api.route("POST", RULES, op_id="createNotificationRule", tag=TAG, summary="Create a balance threshold rule",
           status=201, body=RuleIn, response=RuleOut)
async def create_rule(c: Call) -> RuleOut:
    b: RuleIn = c.body
    rule = await svc.create_rule(c.rt, b.name, _thresholds(b), b.channels, b.features, b.disabled)
    return (await rules_out(c.rt, [rule]))[0]


def _thresholds(b: RuleIn) -> list[svc.ThresholdInput]:
    return [svc.ThresholdInput(value=t.value, type=t.type) for t in b.thresholds]


@api.route("GET", RULES + "/{ruleId}", op_id="getNotificationRule", tag=TAG,
           summary="Get a notification rule (a deleted one too, with deletedAt)", response=RuleOut)
async def get_rule(c: Call) -> RuleOut:
    found = await svc.get_rule(c.rt, c.path["ruleId"])
    if found is None:
        raise NotFound(f"notification rule {c.path['ruleId']!r} not found")
    return (await rules_out(c.rt, [found]))[0]


@api.route("PUT", RULES + "/{ruleId}", op_id="updateNotificationRule", tag=TAG,
           summary="Replace a notification rule's fields", body=RuleIn, response=RuleOut)
async def update_rule(c: Call) -> RuleOut:
    b: RuleIn = c.body
    rule = await svc.update_rule(c.rt, c.path["ruleId"], b.name, _thresholds(b), b.channels, b.features, b.disabled)
    return (await rules_out(c.rt, [rule]))[0]


@api.route("DELETE", RULES + "/{ruleId}", op_id="deleteNotificationRule", tag=TAG,
           summary="Delete a notification rule", status=204)
async def delete_rule(c: Call) -> None:
    await svc.delete_rule(c.rt, c.path["ruleId"])


@api.route("POST", RULES + "/{ruleId}/test", op_id="testNotificationRule", tag=TAG,
           summary="Send a sample event of the rule to its channels now (annotations.test = true)", status=201,
           response=EventOut)
async def test_rule(c: Call) -> EventOut:
    event = await svc.test_rule(c.rt, c.path["ruleId"])
    return (await events_out(c.rt, [event]))[0]


# ---- events ---------------------------------------------------------------------------------------------

@api.route("GET", EVENTS, op_id="listNotificationEvents", tag=TAG, summary="List notification events, newest first",
           query=EventListQuery, response=EventsOut)
async def list_events(c: Call) -> EventsOut:
    q: EventListQuery = c.query
    limit, offset = _page(q)
    page = await svc.list_events(c.rt, subjects=q.subject, features=q.feature, rules=q.rule, channels=q.channel,
                                 from_=q.from_, to=q.to, limit=limit, offset=offset)
    return EventsOut(total_count=page.total, page=q.page, page_size=q.page_size,
                     items=await events_out(c.rt, page.items))


@api.route("GET", EVENTS + "/{eventId}", op_id="getNotificationEvent", tag=TAG, summary="Get a notification event",
           response=EventOut)
async def get_event(c: Call) -> EventOut:
    found = await svc.get_event(c.rt, c.path["eventId"])
    if found is None:
        raise NotFound(f"notification event {c.path['eventId']!r} not found")
    return (await events_out(c.rt, [found]))[0]
