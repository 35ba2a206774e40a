"""The one change signal (docs/semantics.md §8, §10): "the now-value of these subjects' entitlements may have
changed, because of <cause>, as of <instant>".

Services emit it once per write, after the commit (`await rt.changes.emit(subjects, cause)`, through
services/invalidation.py). Everything that must follow values hangs off it:
- the value cache: the runtime's first listener (services/runtime.py) drops the subjects' cached values,
  awaited before the write returns (read-your-writes). Local changes only: Redis is shared, and the
  in-process cache only ever serves one process;
- live updates: the subscription hub (services/live.py) wakes the subscriptions of those subjects;
- notifications (docs/semantics.md §11) can register the same way.

Registering a listener (an async callable taking a Change; keep it short: mark work, do not compute):

    async def on_change(change: Change) -> None:
        if change.subjects is None:   # a gap: signals may have been lost, every subject may have changed
            ...
        else:
            ...                       # change.cause, change.at, change.local
    stop = rt.changes.listen(on_change)             # every change: this process's and other processes'
    stop = rt.changes.listen(on_change, remote=False)  # this process's writes only
    stop()                                          # unregister

Listeners run in registration order; one that raises is logged and the others still run. Across processes
the signal rides a SignalBus (Redis pub/sub, adapters/cache/redis_signals.py, wired by app.py): best effort,
so when the bus may have lost messages (a connection loss, a failed publish) every listener that takes remote
changes receives a gap (`subjects` None, cause RESYNC) once the bus works again. Without a bus (embedded, one
process) changes stay in the process.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import orjson

from creditgate.records import ValueChangeCause

log = logging.getLogger("creditgate.changes")
GAP = b""  # a bus message meaning "signals may have been lost": every process resyncs


@dataclass(frozen=True, slots=True)
class Change:
    subjects: frozenset[str] | None  # None: a gap, any subject may have changed (cause RESYNC)
    cause: ValueChangeCause
    at: datetime  # the values may differ from this instant on (after the write's commit)
    local: bool = True  # written by this process (False: another process's, or a gap)


Listener = Callable[[Change], Awaitable[None]]


class SignalBus(Protocol):
    """Carries changes between processes (adapters implement it)."""

    def start(self, deliver: Callable[[bytes], Awaitable[None]], gap: Callable[[], Awaitable[None]]) -> None:
        """Start listening: `deliver` each message published by any process (this one too), `gap` when
        messages may have been lost (after a reconnect, or once a failed publish can be made up for)."""
        ...

    async def publish(self, message: bytes) -> None:
        """Send to every process; never raises. After a failure, once it can, the bus sends GAP first."""
        ...

    async def close(self) -> None: ...


class Changes:
    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.clock = clock
        self.origin = secrets.token_hex(8)  # this process's messages come back from the bus: skip them
        self.bus: SignalBus | None = None
        self._listeners: list[tuple[Listener, bool]] = []

    def listen(self, listener: Listener, *, remote: bool = True) -> Callable[[], None]:
        """Call `listener` on every change (only this process's writes when `remote` is False); returns
        the function that unregisters it."""
        entry = (listener, remote)
        self._listeners.append(entry)

        def stop() -> None:
            if entry in self._listeners:
                self._listeners.remove(entry)
        return stop

    async def emit(self, subjects: Iterable[str], cause: ValueChangeCause, at: datetime | None = None) -> None:
        """After a commit: these subjects' now-values may have changed (once per write)."""
        keys = frozenset(subjects)
        if not keys:
            return
        change = Change(keys, cause, at or self.clock())
        await self._deliver(change)  # the cache first, before the write returns
        if self.bus is not None:
            await self.bus.publish(orjson.dumps(
                {"o": self.origin, "s": sorted(keys), "c": cause.value, "t": change.at.isoformat()}))

    async def gap(self) -> None:
        """Signals may have been lost: every subject may have changed."""
        await self._deliver(Change(None, ValueChangeCause.RESYNC, self.clock(), local=False))

    def attach(self, bus: SignalBus) -> None:
        """Exchange changes with other processes through `bus` (app.py, once the event loop runs)."""
        self.bus = bus
        bus.start(self._received, self.gap)

    async def _received(self, message: bytes) -> None:
        if message == GAP:  # another process could not publish: everything may have changed
            await self.gap()
            return
        try:
            data = orjson.loads(message)
            if data.get("o") == self.origin:
                return
            subjects = data.get("s")
            change = Change(None if subjects is None else frozenset(map(str, subjects)),
                            ValueChangeCause(data["c"]), datetime.fromisoformat(data["t"]), local=False)
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("ignoring a malformed change signal: %.200r", message)
            return
        await self._deliver(change)

    async def _deliver(self, change: Change) -> None:
        for listener, remote in tuple(self._listeners):
            if change.local or remote:
                try:
                    await listener(change)
                except Exception:
                    log.exception("a change listener failed")

