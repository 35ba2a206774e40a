"""Live updates of entitlement values (docs/semantics.md §10): what a subscription sends, and when.

`watch` yields a subscription's updates: first the value of each requested feature (cause CURRENT; every
entitlement of the subject when `feature_keys` is None), then an update for each value that changed:
- after a write: the change signal (services/changes.py) wakes the watches of the changed subjects (the
  `Hub`, one per runtime); the watch then reads its values once, through the value cache, after the
  commit; a burst of writes while it reads is coalesced into the next read (the newest value, the last
  cause), never dropped;
- with no write (TIME): each value comes with the instant it stops being true (the engine's next change),
  and the watch reads again then;
- after a gap (signals may have been lost): every value is re-sent as it stands (RESYNC).
Only values that differ from the last one sent are sent again, except for CURRENT and RESYNC. Each read
goes through the subject-read guard, so an invalidated token ends the subscription.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from datetime import datetime

from creditgate import metrics
from creditgate.domain.errors import BadInput
from creditgate.records import ValueChangeCause
from creditgate.services import tokens, validation
from creditgate.services.auth import Principal
from creditgate.services.changes import Change
from creditgate.services.entitlements import entitlements_of_subjects
from creditgate.services.runtime import Runtime
from creditgate.services.values import Access, EntValue, access_now_until

MAX_FEATURES = 25  # per subscription (docs/semantics.md §10)
MAX_SUBSCRIPTIONS = 50  # per connection (enforced by the transport adapter)
C = ValueChangeCause
# causes after which a subscription to every entitlement looks for entitlements that came or went
_RELIST = frozenset({C.CURRENT, C.ENTITLEMENT, C.RESYNC})
_ALWAYS = frozenset({C.CURRENT, C.RESYNC})  # causes that send every value, changed or not
_EARLY = 0.001  # seconds of slack for timers (a value read before its instant is simply read again)


@dataclass(frozen=True, slots=True)
class ValueUpdate:
    subject_key: str
    feature_key: str
    entitlement_id: str | None  # None: no entitlement to the feature (value None: no access)
    value: EntValue | None
    as_of: datetime
    cause: ValueChangeCause


class Watch:
    """One subscription's wake-up state: the causes seen since its last read, coalesced."""

    __slots__ = ("event", "pending", "subject_key")

    def __init__(self, subject_key: str) -> None:
        self.subject_key = subject_key
        self.pending: ValueChangeCause | None = None
        self.event = asyncio.Event()

    def poke(self, cause: ValueChangeCause) -> None:
        if self.pending is not C.RESYNC:  # a resync re-sends everything: it absorbs later causes
            self.pending = cause
        self.event.set()

    def take(self) -> ValueChangeCause | None:
        cause, self.pending = self.pending, None
        self.event.clear()
        return cause


class Hub:
    """The watches of one process, woken by the change signal."""

    def __init__(self, rt: Runtime) -> None:
        self._by_subject: dict[str, set[Watch]] = {}
        self._count = 0
        rt.changes.listen(self._on_change)

    def add(self, w: Watch) -> None:
        self._by_subject.setdefault(w.subject_key, set()).add(w)
        self._count += 1
        metrics.subscriptions.inc()

    def remove(self, w: Watch) -> None:
        watches = self._by_subject.get(w.subject_key)
        if watches is not None and w in watches:
            watches.discard(w)
            if not watches:
                del self._by_subject[w.subject_key]
            self._count -= 1
            metrics.subscriptions.dec()

    def __len__(self) -> int:
        return self._count

    async def _on_change(self, change: Change) -> None:
        metrics.count_signal("gap" if change.subjects is None else "local" if change.local else "remote")
        if change.subjects is None:
            for watches in self._by_subject.values():
                for w in watches:
                    w.poke(C.RESYNC)
            return
        for subject in change.subjects:
            for w in self._by_subject.get(subject, ()):
                w.poke(change.cause)

    def clock_moved(self) -> None:
        """Wake every watch to look at its timers again (a settable clock in tests, or a clock jump)."""
        for watches in self._by_subject.values():
            for w in watches:
                w.event.set()


def hub(rt: Runtime) -> Hub:
    """The runtime's hub, created (and registered on the change signal) at first use."""
    found = rt.extras.get("live_hub")
    if found is None:
        found = rt.extras["live_hub"] = Hub(rt)
    assert isinstance(found, Hub)
    return found


async def check_request(rt: Runtime, principal: Principal, subject_key: str,
                        feature_keys: Sequence[str] | None) -> list[str] | None:
    """The subscription's arguments, checked (BAD_USER_INPUT, FORBIDDEN): the features, once each."""
    validation.lookup(subject_key, "subject key")
    features = None
    if feature_keys is not None:
        validation.lookups(feature_keys, "feature key")
        features = list(dict.fromkeys(feature_keys))
        if len(features) > MAX_FEATURES:
            raise BadInput(f"a subscription may watch at most {MAX_FEATURES} features")
    await tokens.authorize_subject_read(rt, principal, subject_key)
    return features


async def watch(rt: Runtime, principal: Principal, subject_key: str,
                features: list[str] | None) -> AsyncGenerator[ValueUpdate]:
    """The updates of one subscription (arguments from `check_request`), until the caller stops."""
    w = Watch(subject_key)
    h = hub(rt)
    h.add(w)  # before the first read: a write committed meanwhile wakes it again
    sent: dict[str, tuple[str | None, EntValue | None]] = {}
    loop = asyncio.get_running_loop()
    try:
        cause: ValueChangeCause = C.CURRENT
        while True:
            await tokens.authorize_subject_read(rt, principal, subject_key)
            keys = features
            if keys is None:
                if cause in _RELIST:
                    listed = (await entitlements_of_subjects(rt, [subject_key], False))[subject_key]
                    keys = sorted({e.feature_key for e in listed} | set(sent))
                else:
                    keys = sorted(sent)
            as_of, answers = await access_now_until(rt, [(subject_key, k) for k in keys]) if keys else (rt.now(), [])
            until: datetime | None = None
            for access, expires in answers:
                update = _update(access, as_of, cause, sent)
                if update is not None:
                    metrics.count_update(cause.value)
                    yield update
                if features is None and access.entitlement_id is None:
                    sent.pop(access.feature_key, None)  # gone: said once, then no longer watched
                if expires is not None and (until is None or expires < until):
                    until = expires
            cause = await _next(rt, w, until, loop)
    finally:
        h.remove(w)


def _update(access: Access, as_of: datetime, cause: ValueChangeCause,
            sent: dict[str, tuple[str | None, EntValue | None]]) -> ValueUpdate | None:
    state = (access.entitlement_id, access.value)
    if cause not in _ALWAYS and sent.get(access.feature_key) == state:
        return None
    sent[access.feature_key] = state
    return ValueUpdate(access.subject_key, access.feature_key, access.entitlement_id, access.value, as_of, cause)


async def _next(rt: Runtime, w: Watch, until: datetime | None, loop: asyncio.AbstractEventLoop) -> ValueChangeCause:
    """Waits for a change signal, or for `until` (TIME); returns the cause of the next read."""
    while True:
        if until is not None and rt.now() >= until:
            return w.take() or C.TIME
        timer = None
        if until is not None:
            timer = loop.call_later((until - rt.now()).total_seconds() + _EARLY, w.event.set)
        try:
            await w.event.wait()
        finally:
            if timer is not None:
                timer.cancel()
        cause = w.take()
        if cause is not None:
            return cause
