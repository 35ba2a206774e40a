"""Balance-threshold notifications (docs/semantics.md §11) through the services, on both backends, with a real
HTTP receiver: evaluation after writes and TIME, one event per threshold per period, delivery with Standard
Webhooks signatures (checked by the `standardwebhooks` package), retries, 410, disabled rules and channels."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio

from creditgate import metrics
from creditgate.adapters.webhooks import HttpSender
from creditgate.domain.errors import BadInput, Conflict, NotFound
from creditgate.records import DeliveryState, NotificationChannel, NotificationEvent, ThresholdType
from creditgate.services import notifications as svc
from creditgate.services import thresholds, webhooks
from creditgate.services.entitlements import reset_entitlement
from creditgate.services.grants import void_grant
from creditgate.services.runtime import Runtime
from tests.conftest import GQL, Clock
from tests.ent_helpers import events, feature, grant, meter, metered
from tests.notify_helpers import Receiver

pytestmark = pytest.mark.asyncio(loop_scope="session")
SCHEDULE = webhooks.Schedule((timedelta(seconds=5), timedelta(minutes=1), timedelta(minutes=5)),
                             timedelta(hours=24), 5.0)
T0 = "2024-01-15T12:00:00Z"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.start()
    try:
        yield r
    finally:
        r.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def sender() -> AsyncIterator[HttpSender]:
    s = HttpSender(SCHEDULE.timeout)
    yield s
    await s.close()


async def evaluate(rt: Runtime) -> None:
    """Run every due evaluation (what the worker does when woken)."""
    while await thresholds.evaluate_due(rt):
        pass


async def deliver(rt: Runtime, sender: HttpSender) -> int:
    return await webhooks.deliver_due(rt, sender, SCHEDULE)


async def seed(gql: GQL, *, soft: bool = False, interval: str = "MONTH", amount: float | None = 100) -> str:
    await meter(gql)
    await feature(gql, "ai")
    ent = await metered(gql, "acme", "ai", interval=interval, isSoftLimit=soft)
    if amount is not None:
        await grant(gql, "acme", "ai", amount, T0)
    return str(ent["id"])


async def channel(rt: Runtime, receiver: Receiver, **kw: Any) -> NotificationChannel:
    return await svc.create_channel(rt, "hook", receiver.url, kw.pop("custom_headers", {"x-team": "billing"}), **kw)


async def rule(rt: Runtime, channels: list[NotificationChannel], *levels: tuple[str, float], **kw: Any) -> str:
    r = await svc.create_rule(rt, "limits", [svc.ThresholdInput(v, t) for t, v in levels],
                              [c.id for c in channels], **kw)
    return r.id


async def all_events(rt: Runtime) -> list[NotificationEvent]:
    return (await svc.list_events(rt, subjects=["acme"])).items


def level(ev: NotificationEvent) -> tuple[str, Decimal]:
    return (ev.threshold.type.value, ev.threshold.value)


async def test_number_and_percent_thresholds_are_delivered_signed(gql: GQL, rt: Runtime, receiver: Receiver,
                                                                  sender: HttpSender) -> None:
    await seed(gql)
    ch = await channel(rt, receiver)
    await rule(rt, [ch], ("NUMBER", 50), ("PERCENT", 80))
    await events(gql, "acme", (T0, 30))
    await evaluate(rt)
    assert await all_events(rt) == []
    await events(gql, "acme", (T0, 25))  # 55: NUMBER 50
    await evaluate(rt)
    [first] = await all_events(rt)
    assert level(first) == ("NUMBER", Decimal(50))
    assert first.value.usage == 55 and first.value.balance == 45
    assert await deliver(rt, sender) == 1
    [got] = receiver.wait_for(1)
    assert got.verify(ch.signing_secret) == first.payload  # standardwebhooks checks the signature
    assert got.headers["webhook-id"] == first.id and got.headers["x-team"] == "billing"
    body = got.json
    assert body["id"] == first.id and body["type"] == "entitlements.balance.threshold"
    data = body["data"]
    assert data["threshold"] == {"value": 50, "type": "NUMBER"}
    assert data["value"]["usage"] == 55 and data["value"]["hasAccess"] is True
    assert data["subject"]["key"] == "acme" and data["feature"]["key"] == "ai"
    assert data["entitlement"]["id"] == first.entitlement_id and data["entitlement"]["type"] == "metered"
    stored = await svc.get_event(rt, first.id)
    assert stored is not None
    [status] = stored.deliveries
    assert (status.state, status.attempts, status.channel_id) == (DeliveryState.SUCCESS, 1, ch.id)

    await events(gql, "acme", (T0, 30))  # 85%: PERCENT 80
    await evaluate(rt)
    await events(gql, "acme", (T0, 1))  # nothing new
    await evaluate(rt)
    newest, _ = await all_events(rt)
    assert level(newest) == ("PERCENT", Decimal(80))
    assert await deliver(rt, sender) == 1
    assert await deliver(rt, sender) == 0
    assert [r.headers["webhook-id"] for r in receiver.wait_for(2)] == [first.id, newest.id]


async def test_several_thresholds_at_once_make_one_event_with_the_highest(gql: GQL, rt: Runtime,
                                                                          receiver: Receiver) -> None:
    await seed(gql)
    ch = await channel(rt, receiver)
    await rule(rt, [ch], ("NUMBER", 10), ("PERCENT", 50), ("PERCENT", 90), ("NUMBER", 95))
    await events(gql, "acme", (T0, 92))
    await evaluate(rt)
    [ev] = await all_events(rt)
    assert level(ev) == ("PERCENT", Decimal(90))  # needs 90: more than 50 or 10
    await events(gql, "acme", (T0, 2))  # 94: the passed ones stay passed
    await evaluate(rt)
    assert len(await all_events(rt)) == 1
    await events(gql, "acme", (T0, 1))  # 95
    await evaluate(rt)
    assert [level(e) for e in await all_events(rt)] == [("NUMBER", Decimal(95)), ("PERCENT", Decimal(90))]


async def test_manual_reset_rearms(gql: GQL, rt: Runtime, clock: Clock, receiver: Receiver) -> None:
    await seed(gql)
    ch = await channel(rt, receiver)
    await rule(rt, [ch], ("NUMBER", 50))
    await events(gql, "acme", (T0, 60))
    await evaluate(rt)
    clock.set("2024-01-15T13:00:30+00:00")
    await reset_entitlement(rt, "acme", "ai", None, False)
    await evaluate(rt)
    assert len(await all_events(rt)) == 1  # usage is 0 after the reset
    await events(gql, "acme", ("2024-01-15T13:00:00Z", 55))
    await evaluate(rt)
    second, first = await all_events(rt)
    assert level(second) == level(first) == ("NUMBER", Decimal(50))
    assert second.period_start == datetime(2024, 1, 15, 13, 0, tzinfo=UTC) > first.period_start


async def test_automatic_reset_rearms_and_time_wakes_evaluation(gql: GQL, rt: Runtime, clock: Clock,
                                                                receiver: Receiver) -> None:
    await seed(gql, interval="DAY", amount=None)
    ch = await channel(rt, receiver)
    await rule(rt, [ch], ("NUMBER", 5))
    await events(gql, "acme", (T0, 6))
    await evaluate(rt)
    assert len(await all_events(rt)) == 1
    assert await thresholds.next_due(rt) == datetime(2024, 1, 16, 12, 0, tzinfo=UTC)  # the next period's start
    clock.set("2024-01-16T12:00:30+00:00")
    await evaluate(rt)
    assert len(await all_events(rt)) == 1
    await events(gql, "acme", ("2024-01-16T12:00:00Z", 7))
    await evaluate(rt)
    second, first = await all_events(rt)
    assert second.period_start == datetime(2024, 1, 16, 12, 0, tzinfo=UTC) and second.value.usage == 7
    assert first.period_start == datetime(2024, 1, 15, 12, 0, tzinfo=UTC)


async def test_a_grant_lowering_the_percentage_does_not_resend(gql: GQL, rt: Runtime, receiver: Receiver) -> None:
    await seed(gql)
    ch = await channel(rt, receiver)
    await rule(rt, [ch], ("PERCENT", 50))
    await events(gql, "acme", (T0, 60))
    await evaluate(rt)
    await grant(gql, "acme", "ai", 100, T0)  # total 200: 30%
    await evaluate(rt)
    await events(gql, "acme", (T0, 45))  # 105 of 200: above 50% again, same period
    await evaluate(rt)
    [ev] = await all_events(rt)
    assert ev.value.usage == 60


async def test_soft_limit_overage_past_100_percent(gql: GQL, rt: Runtime, receiver: Receiver) -> None:
    await seed(gql, soft=True)
    ch = await channel(rt, receiver)
    await rule(rt, [ch], ("PERCENT", 100), ("PERCENT", 150))
    await events(gql, "acme", (T0, 120))
    await evaluate(rt)
    await events(gql, "acme", (T0, 40))
    await evaluate(rt)
    top, hundred = await all_events(rt)
    assert level(hundred) == ("PERCENT", Decimal(100)) and hundred.value.overage == 20
    assert level(top) == ("PERCENT", Decimal(150)) and top.value.overage == 60 and top.value.has_access


async def test_late_events_cross_a_threshold(gql: GQL, rt: Runtime, clock: Clock, receiver: Receiver) -> None:
    await seed(gql)
    ch = await channel(rt, receiver)
    await rule(rt, [ch], ("NUMBER", 50))
    clock.set("2024-01-15T18:00:30+00:00")
    await events(gql, "acme", ("2024-01-15T18:00:00Z", 20))
    await evaluate(rt)
    await events(gql, "acme", ("2024-01-15T12:30:00Z", 40))  # hours late
    await evaluate(rt)
    [ev] = await all_events(rt)
    assert ev.value.usage == 60


async def test_a_grant_expiring_makes_the_percentage_jump(gql: GQL, rt: Runtime, clock: Clock,
                                                          receiver: Receiver) -> None:
    await seed(gql, amount=None)
    await grant(gql, "acme", "ai", 100, T0, priority=1)  # burnt first, kept a year
    await grant(gql, "acme", "ai", 100, T0, duration="HOUR", count=1, priority=5)  # unused, expires at 13:00
    ch = await channel(rt, receiver)
    await rule(rt, [ch], ("PERCENT", 80))
    await events(gql, "acme", (T0, 100))  # 50% of 200
    await evaluate(rt)
    assert await all_events(rt) == []
    due = await thresholds.next_due(rt)
    assert due is not None and datetime(2024, 1, 15, 12, 59, tzinfo=UTC) < due <= datetime(2024, 1, 15, 13, 0,
                                                                                             tzinfo=UTC)
    clock.set("2024-01-15T13:00:10+00:00")  # no write: the expiry alone makes it 100% of 100
    await evaluate(rt)
    [ev] = await all_events(rt)
    assert level(ev) == ("PERCENT", Decimal(80)) and ev.value.balance == 0 and ev.value.usage == 100


async def test_void_crossing(gql: GQL, rt: Runtime, receiver: Receiver) -> None:
    await seed(gql)
    extra = await grant(gql, "acme", "ai", 100, T0)
    ch = await channel(rt, receiver)
    await rule(rt, [ch], ("PERCENT", 50))
    await events(gql, "acme", (T0, 60))  # 30% of 200
    await evaluate(rt)
    assert await all_events(rt) == []
    await void_grant(rt, extra["id"])
    await evaluate(rt)
    [ev] = await all_events(rt)
    assert ev.threshold.type is ThresholdType.PERCENT


async def test_disabled_rules_and_channels_create_and_send_nothing(gql: GQL, rt: Runtime, receiver: Receiver,
                                                                   sender: HttpSender) -> None:
    await seed(gql)
    on = await channel(rt, receiver)
    off = await channel(rt, receiver, disabled=True)
    await rule(rt, [on], ("NUMBER", 10), disabled=True)
    only_off = await rule(rt, [off], ("NUMBER", 20))
    both = await rule(rt, [on, off], ("NUMBER", 30))
    await events(gql, "acme", (T0, 40))
    await evaluate(rt)
    [ev] = await all_events(rt)
    assert ev.rule_id == both and [d.channel_id for d in ev.deliveries] == [on.id]
    assert await deliver(rt, sender) == 1
    receiver.wait_for(1)
    # the channel is enabled again: the rule that only had it now fires for what is reached
    await svc.update_channel(rt, off.id, "hook", receiver.url, disabled=False)
    await events(gql, "acme", (T0, 1))
    await evaluate(rt)
    newest = (await all_events(rt))[0]
    assert newest.rule_id == only_off
    # a channel disabled after the event was created: its delivery fails without a request
    await svc.update_channel(rt, off.id, "hook", receiver.url, disabled=True)
    assert await deliver(rt, sender) == 1
    stored = await svc.get_event(rt, newest.id)
    assert stored is not None and stored.deliveries[0].state is DeliveryState.FAILED
    assert len(receiver.received) == 1


async def test_receiver_down_then_up_retries_with_the_same_id(gql: GQL, rt: Runtime, clock: Clock,
                                                              receiver: Receiver, sender: HttpSender) -> None:
    attempts = {o: metrics.webhook_attempts.labels(o) for o in ("success", "retry", "failed")}
    before = {o: c._value.get() for o, c in attempts.items()}
    created = metrics.notification_events._value.get()
    await seed(gql)
    ch = await channel(rt, receiver)
    await rule(rt, [ch], ("NUMBER", 10))
    await events(gql, "acme", (T0, 20))
    await evaluate(rt)
    [ev] = await all_events(rt)
    assert metrics.notification_events._value.get() == created + 1
    receiver.stop()  # connection refused
    assert await deliver(rt, sender) == 1
    down = await svc.get_event(rt, ev.id)
    assert down is not None
    [status] = down.deliveries
    assert status.state is DeliveryState.PENDING and status.attempts == 1 and status.last_error
    assert status.next_attempt_at == clock.value + timedelta(seconds=5)
    assert await deliver(rt, sender) == 0  # not due yet
    receiver.start()
    receiver.statuses.extend([503])
    clock.set(clock.value + timedelta(seconds=6))
    assert await deliver(rt, sender) == 1
    middle = await svc.get_event(rt, ev.id)
    assert middle is not None and middle.deliveries[0].last_error == "HTTP 503"
    assert middle.deliveries[0].next_attempt_at == clock.value + timedelta(minutes=1)
    clock.set(clock.value + timedelta(minutes=1))
    assert await deliver(rt, sender) == 1
    got = receiver.wait_for(2)
    assert [r.headers["webhook-id"] for r in got] == [ev.id, ev.id]
    for r in got:
        assert r.verify(ch.signing_secret) == ev.payload
    done = await svc.get_event(rt, ev.id)
    assert done is not None
    assert (done.deliveries[0].state, done.deliveries[0].attempts) == (DeliveryState.SUCCESS, 3)
    assert {o: c._value.get() - before[o] for o, c in attempts.items()} == {"success": 1, "retry": 2, "failed": 0}


async def test_gone_fails_at_once_and_retries_end_after_a_day(gql: GQL, rt: Runtime, clock: Clock,
                                                              receiver: Receiver, sender: HttpSender) -> None:
    await seed(gql)
    gone = await channel(rt, receiver)
    await rule(rt, [gone], ("NUMBER", 10))
    receiver.statuses.extend([410])
    await events(gql, "acme", (T0, 20))
    await evaluate(rt)
    assert await deliver(rt, sender) == 1
    [ev] = await all_events(rt)
    assert (ev.deliveries[0].state, ev.deliveries[0].attempts, ev.deliveries[0].last_error) == (
        DeliveryState.FAILED, 1, "HTTP 410")
    clock.set(clock.value + timedelta(hours=1))
    assert await deliver(rt, sender) == 0

    await rule(rt, [gone], ("NUMBER", 30))
    receiver.statuses.extend([500] * 1000)
    await events(gql, "acme", (T0, 20))
    await evaluate(rt)
    attempts = 0
    for _ in range(400):
        attempts += await deliver(rt, sender)
        newest = (await all_events(rt))[0]
        if newest.deliveries[0].state is DeliveryState.FAILED:
            break
        nxt = newest.deliveries[0].next_attempt_at
        assert nxt is not None
        clock.set(nxt)
    newest = (await all_events(rt))[0]
    d = newest.deliveries[0]
    assert d.state is DeliveryState.FAILED and d.next_attempt_at is None and d.first_attempt_at is not None
    # 5 s, 1 min, then every 5 min until a day after the first attempt
    assert attempts == d.attempts == 2 + 1 + int((timedelta(hours=24) - timedelta(seconds=65)) / timedelta(minutes=5))


async def test_rule_test_event(gql: GQL, rt: Runtime, receiver: Receiver, sender: HttpSender) -> None:
    await seed(gql)
    ch = await channel(rt, receiver)
    rid = await rule(rt, [ch], ("NUMBER", 500), ("PERCENT", 90))
    ev = await svc.test_rule(rt, rid)
    assert ev.annotations == {"test": True} and level(ev) == ("NUMBER", Decimal(500))
    assert await deliver(rt, sender) == 1
    [got] = receiver.wait_for(1)
    assert got.verify(ch.signing_secret)["id"] == ev.id
    await events(gql, "acme", (T0, 600))  # a test marks nothing: the real crossing still fires
    await evaluate(rt)
    assert [e.annotations for e in await all_events(rt)] == [{}, {"test": True}]


async def test_worker_delivers_after_an_acknowledged_write(gql: GQL, rt: Runtime, receiver: Receiver) -> None:
    """The worker a `serve` process runs: woken by the change signal, it evaluates and delivers on its own."""
    await seed(gql)
    ch = await channel(rt, receiver)
    await rule(rt, [ch], ("NUMBER", 50))
    worker = webhooks.Worker(rt, HttpSender(5.0))
    worker.start()
    try:
        await events(gql, "acme", (T0, 60))
        for _ in range(500):
            if receiver.received:
                break
            await asyncio.sleep(0.02)
        [got] = receiver.received
        assert got.verify(ch.signing_secret)["data"]["value"]["usage"] == 60
    finally:
        await worker.stop()


async def test_bad_input(gql: GQL, rt: Runtime, receiver: Receiver) -> None:
    await seed(gql)
    await feature(gql, "seats", meter_slug=None)
    for url in ("ftp://x.example/hook", "not a url", "http://", "javascript:alert(1)"):
        with pytest.raises(BadInput):
            await svc.create_channel(rt, "c", url)
    for secret in ("abc", "whsec_not base64!", "whsec_" + "QUJD", "whsec_"):
        with pytest.raises(BadInput):
            await svc.create_channel(rt, "c", receiver.url, signing_secret=secret)
    with pytest.raises(BadInput):
        await svc.create_channel(rt, "c", receiver.url, {"bad header": "x"})
    given = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # 24 bytes
    ch = await svc.create_channel(rt, "c", receiver.url, signing_secret=given)
    assert ch.signing_secret == given
    generated = await svc.create_channel(rt, "c", receiver.url)
    assert generated.signing_secret.startswith("whsec_") and len(svc.secret_key(generated.signing_secret)) >= 24
    for levels in ([], [("NUMBER", 0)], [("PERCENT", -5)], [("NUMBER", 5), ("NUMBER", 5.0)],
                   [("NUMBER", i + 1) for i in range(11)], [("RATIO", 5)]):
        with pytest.raises(BadInput):
            await svc.create_rule(rt, "r", [svc.ThresholdInput(v, t) for t, v in levels], [ch.id])
    with pytest.raises(BadInput):
        await svc.create_rule(rt, "r", [svc.ThresholdInput(5, "NUMBER")], [])
    with pytest.raises(NotFound):
        await svc.create_rule(rt, "r", [svc.ThresholdInput(5, "NUMBER")], ["01NOSUCHCHANNEL"])
    with pytest.raises(NotFound):
        await svc.create_rule(rt, "r", [svc.ThresholdInput(5, "NUMBER")], [ch.id], features=["nope"])
    with pytest.raises(BadInput):  # not metered
        await svc.create_rule(rt, "r", [svc.ThresholdInput(5, "NUMBER")], [ch.id], features=["seats"])
    ok = await svc.create_rule(rt, "r", [svc.ThresholdInput(5, "number"), svc.ThresholdInput(5, "PERCENT")],
                               [ch.id], features=["ai"])
    assert ok.feature_ids is not None and len(ok.feature_ids) == 1
    with pytest.raises(Conflict) as exc:
        await svc.delete_channel(rt, ch.id)
    assert exc.value.conflicting_entity_id == ok.id
    await svc.update_rule(rt, ok.id, "r", [svc.ThresholdInput(5, "NUMBER")], [ch.id], disabled=True)
    await svc.delete_channel(rt, ch.id)  # only a disabled rule uses it
    with pytest.raises(NotFound):
        await svc.delete_channel(rt, ch.id)
    gone = await svc.get_channel(rt, ch.id)
    assert gone is not None and gone.deleted_at is not None
    assert ch.id not in [c.id for c in (await svc.list_channels(rt)).items]
    assert ch.id in [c.id for c in (await svc.list_channels(rt, include_deleted=True)).items]
    listed = await svc.list_rules(rt, features=["ai"], limit=1)
    assert listed.total == 1 and [r.id for r in listed.items] == [ok.id]
