"""Delivering notification events (docs/semantics.md §11.5) and the worker every `serve` process runs.

The queue is `notification_deliveries` (one row per event and channel). `deliver_due` claims due rows in a
short transaction (PostgreSQL `FOR UPDATE SKIP LOCKED`; each claim is one attempt: state SENDING, attempts + 1,
a lease), commits, POSTs, then records the outcome only if its claim still holds. So two processes never make
the same attempt, and a process that dies mid-attempt leaves a lease that ends: the next attempt (same
webhook-id) is made by whoever claims it then.

`Worker` runs two loops in one process: evaluation (services/thresholds.py) and delivery. Each wakes on a
signal (a change signal, a new event) or after the poll interval; neither sleeps inside the rules.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import orjson

from creditgate import metrics
from creditgate.adapters.sql import notifications as repo
from creditgate.domain import thresholds as th
from creditgate.records import DeliveryState, DeliveryStatus, NotificationChannel, NotificationEvent
from creditgate.services import thresholds
from creditgate.services.changes import Change
from creditgate.services.notifications import secret_key
from creditgate.services.runtime import Runtime, system_clock

log = logging.getLogger("creditgate.notifications")


def lease_of(timeout: float) -> timedelta:
    """How long a claimed attempt is its worker's: longer than the attempt can take (the timeout), so that
    only a worker that died mid-attempt loses it."""
    return timedelta(seconds=timeout * 1.5 + 1)


@dataclass(frozen=True, slots=True)
class Attempt:
    """What a receiver answered: a status code, or an error (no answer: timeout, connection refused...)."""

    status: int | None
    error: str | None


class Sender(Protocol):
    """POSTs a body within the settings' timeout (adapters/webhooks implements it)."""

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> Attempt: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Schedule:
    """The retry policy (from the settings; tests shorten it)."""

    delays: tuple[timedelta, ...]
    give_up_after: timedelta
    timeout: float

    @classmethod
    def of(cls, rt: Runtime) -> Schedule:
        st = rt.settings
        return cls(th.parse_delays(st.notifications_retry_delays), timedelta(seconds=st.notifications_give_up_after),
                   st.notifications_timeout)


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks: "v1," + base64 HMAC-SHA256 of "<id>.<timestamp>.<body>" keyed by the secret's bytes."""
    mac = hmac.new(secret_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def request_of(event: NotificationEvent, channel: NotificationChannel, now: datetime) -> tuple[dict[str, str], bytes]:
    """The headers and body of one attempt: the channel's custom headers, then the Standard Webhooks ones."""
    body = orjson.dumps(event.payload)
    ts = int(now.timestamp())
    headers = {k: v for k, v in channel.custom_headers.items()
               if k.lower() not in {"webhook-id", "webhook-timestamp", "webhook-signature", "content-type"}}
    headers.update({"content-type": "application/json", "webhook-id": event.id, "webhook-timestamp": str(ts),
                    "webhook-signature": signature(channel.signing_secret, event.id, ts, body)})
    return headers, body


def outcome(claimed: DeliveryStatus, answer: Attempt, now: datetime,
            schedule: Schedule) -> tuple[DeliveryState, str | None, datetime | None]:
    """(state, last error, next attempt) after an attempt (pure)."""
    if answer.status is not None and 200 <= answer.status < 300:
        return DeliveryState.SUCCESS, None, None
    error = answer.error if answer.status is None else f"HTTP {answer.status}"
    if answer.status == 410:
        return DeliveryState.FAILED, error, None
    first = claimed.first_attempt_at or now
    nxt = th.next_attempt(first, claimed.attempts, now, schedule.delays, schedule.give_up_after)
    if nxt is None:
        return DeliveryState.FAILED, error, None
    return DeliveryState.PENDING, error, nxt


async def deliver_due(rt: Runtime, sender: Sender, schedule: Schedule, limit: int = 50) -> int:
    """Claim the deliveries due now (at most `limit`), make their attempts, record the outcomes; returns how
    many attempts were made."""
    claimed = await claim(rt, schedule, limit)
    if claimed:
        await asyncio.gather(*(attempt(rt, sender, schedule, c, e, ch) for c, e, ch in claimed))
    return len(claimed)


async def claim(rt: Runtime, schedule: Schedule, limit: int
                ) -> list[tuple[DeliveryStatus, NotificationEvent | None, NotificationChannel | None]]:
    now = rt.now()
    lease = now + lease_of(schedule.timeout)
    async with rt.db.transaction() as s:
        claimed = await repo.claim_deliveries(s, now, lease, limit)
    if not claimed:
        return []
    async with rt.db.read() as s:
        events = await repo.event_rows(s, {c.event_id for c in claimed})
        channels = await repo.channels_by_ids(s, {c.channel_id for c in claimed})
    return [(c, events.get(c.event_id), channels.get(c.channel_id)) for c in claimed]


async def attempt(rt: Runtime, sender: Sender, schedule: Schedule, claimed: DeliveryStatus,
                  event: NotificationEvent | None, channel: NotificationChannel | None) -> None:
    """One claimed attempt, and its outcome recorded (unless the claim was lost meanwhile)."""
    error: str | None
    if event is None or channel is None or channel.deleted_at is not None or channel.disabled:
        state, error, nxt = DeliveryState.FAILED, "the channel was disabled or deleted", None
    else:
        # the signature's timestamp is the wall clock's: receivers compare it with theirs (Standard Webhooks)
        headers, body = request_of(event, channel, system_clock())
        answer = await sender.post(channel.url, headers, body)
        state, error, nxt = outcome(claimed, answer, rt.now(), schedule)
    async with rt.db.transaction() as s:
        kept = await repo.finish_attempt(s, claimed, state, error, nxt, rt.now())
    if kept:
        metrics.count_attempt("success" if state == DeliveryState.SUCCESS
                              else "retry" if state == DeliveryState.PENDING else "failed")
    else:
        log.warning("delivery of event %s to channel %s: the claim ended before the attempt did",
                    claimed.event_id, claimed.channel_id)


async def next_delivery_due(rt: Runtime) -> datetime | None:
    async with rt.db.read() as s:
        return await repo.next_delivery_due(s)


class Worker:
    """Evaluation and delivery for one process (started by app.py's lifespan, stopped on shutdown)."""

    def __init__(self, rt: Runtime, sender: Sender) -> None:
        self.rt = rt
        self.sender = sender
        self.schedule = Schedule.of(rt)
        self.poll = rt.settings.notifications_poll_interval
        self.concurrency = rt.settings.notifications_concurrency
        self._evaluate = asyncio.Event()
        self._deliver = asyncio.Event()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._inflight: set[asyncio.Task[None]] = set()
        self._unlisten = rt.changes.listen(self._on_change)

    async def _on_change(self, change: Change) -> None:
        self._evaluate.set()

    def wake(self) -> None:
        """Look for work now (a rule or channel changed, an event was created)."""
        self._evaluate.set()
        self._deliver.set()

    def start(self) -> None:
        self.rt.extras["notifications_wake"] = self.wake
        gap = self.rt.settings.notifications_evaluation_gap
        self._tasks = [asyncio.create_task(self._run(self._evaluate_once, self._evaluate, thresholds.next_due, gap)),
                       asyncio.create_task(self._run(self._deliver_once, self._deliver, next_delivery_due))]

    async def stop(self) -> None:
        """Stop looking for work; attempts in flight finish (each within the timeout) and are recorded."""
        self._stopping = True
        self._unlisten()
        if self.rt.extras.get("notifications_wake") == self.wake:
            del self.rt.extras["notifications_wake"]
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        if self._inflight:
            await asyncio.wait(self._inflight)
        await self.sender.close()

    async def _evaluate_once(self) -> bool:
        n = await thresholds.evaluate_due(self.rt)
        if n:
            self._deliver.set()
        return n >= thresholds.BATCH  # a full batch: more are waiting

    async def _deliver_once(self) -> bool:
        free = self.concurrency - len(self._inflight)
        if free <= 0:
            return False
        claimed = await claim(self.rt, self.schedule, free)
        for c, e, ch in claimed:
            task = asyncio.create_task(attempt(self.rt, self.sender, self.schedule, c, e, ch))
            self._inflight.add(task)
            task.add_done_callback(self._done)
        return len(claimed) == free  # a full batch: look again at once

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a webhook attempt failed unexpectedly", exc_info=task.exception())
        self._deliver.set()  # a slot is free

    async def _run(self, once: _Once, wake: asyncio.Event, due: _Due, gap: float = 0.0) -> None:
        """Runs `once` whenever woken, at the due instant, or every poll interval. Passes start at least
        `gap` seconds apart: a lone write is looked at at once, a burst of writes gathers into one pass
        (a subject written 20 times a second is evaluated about once a second, not 20 times)."""
        loop = asyncio.get_running_loop()
        started, more = -gap, False
        while not self._stopping:
            if gap and not more:  # a backlog (a full batch last time) goes on at once
                await asyncio.sleep(max(0.0, started + gap - loop.time()))
            started = loop.time()
            wake.clear()
            more = False
            try:
                more = await once()
                if more:
                    continue
                at = await due(self.rt)
            except Exception:
                log.exception("notification worker step failed; retrying")
                at = None
            wait = self.poll
            if at is not None:
                wait = max(0.01, min(wait, (at - self.rt.now()).total_seconds()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), wait)


class _Once(Protocol):
    async def __call__(self) -> bool: ...


class _Due(Protocol):
    async def __call__(self, rt: Runtime) -> datetime | None: ...


__all__: Sequence[str] = ["Attempt", "Schedule", "Sender", "Worker", "deliver_due", "outcome", "request_of",
                          "signature"]
