"""The one change signal (services/changes.py): once per write, after the commit, with its cause; the value
cache is dropped before any other listener runs; between processes through a bus, with gaps."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from creditgate.records import ValueChangeCause as C
from creditgate.services import values
from creditgate.services.changes import GAP, Change, Changes
from creditgate.services.runtime import Runtime
from tests.conftest import GQL, Clock
from tests.ent_helpers import CREATE_ENT, events, feature, grant, meter, metered

INGEST = "mutation($ev: [CloudEventInput!]!) { ingestEvents(events: $ev) { accepted } }"


async def test_one_signal_per_write_after_the_commit(rt: Runtime, gql: GQL, clock: Clock) -> None:
    seen: list[tuple[list[str], C, bool]] = []
    usage_seen: list[Any] = []

    async def record(change: Change) -> None:
        assert change.subjects is not None and change.at == clock()
        seen.append((sorted(change.subjects), change.cause, change.local))
        if change.cause == C.INGEST:  # a read from a listener already sees the write (cache dropped first)
            usage_seen.append((await values.entitlement_value(rt, "a", "ai")).value)

    async def broken(change: Change) -> None:
        raise RuntimeError("a failing listener does not stop the others")

    rt.changes.listen(broken)
    stop = rt.changes.listen(record)
    await meter(gql)
    await feature(gql, "ai")
    await feature(gql, "sso", meter_slug=None)
    assert seen == []  # no value can change yet
    a = await metered(gql, "a", "ai", anchor="2024-01-01T00:00:00Z", measureUsageFrom="2024-01-01T00:00:00Z")
    b = await gql.ok(CREATE_ENT, s="b", input={"type": "BOOLEAN", "featureKey": "sso"})
    before = (await values.entitlement_value(rt, "a", "ai")).value  # now cached
    g = await grant(gql, "a", "ai", 10, "2024-01-15T12:00:00Z")
    batch = [{"id": f"x{i}", "source": "t", "type": "prompt", "subject": s, "time": "2024-01-15T12:00:00Z",
              "data": {"tokens": 1}} for i, s in enumerate(["a", "b", "c", "a"])]
    await gql.ok(INGEST, ev=batch)
    await gql.ok("mutation($id: ID!) { voidGrant(id: $id) { id } }", id=g["id"])
    await gql.ok("mutation($s: String!, $e: ID!) { resetEntitlement(subjectKey: $s, entitlementId: $e) { id } }",
                 s="a", e=a["id"])
    await gql.ok("mutation($s: String!, $e: ID!) { deleteEntitlement(subjectKey: $s, entitlementId: $e) }",
                 s="b", e=b["createEntitlement"]["id"])
    await gql.ok('mutation { archiveFeature(id: "ai") { id } }')
    assert seen == [(["a"], C.ENTITLEMENT, True), (["b"], C.ENTITLEMENT, True), (["a"], C.GRANT, True),
                    (["a", "b", "c"], C.INGEST, True), (["a"], C.VOID, True), (["a"], C.RESET, True),
                    (["b"], C.ENTITLEMENT, True), (["a"], C.ENTITLEMENT, True)]
    assert before is not None and usage_seen[0] is not None and usage_seen[0].usage == before.usage + 2
    stop()
    await events(gql, "a", ("2024-01-15T12:00:00Z", 1))
    assert len(seen) == 8  # unregistered


class FakeBus:
    """A bus between Changes objects of one test: what one publishes, every started one receives."""

    def __init__(self) -> None:
        self.receivers: list[Callable[[bytes], Awaitable[None]]] = []
        self.gaps: list[Callable[[], Awaitable[None]]] = []

    def start(self, deliver: Callable[[bytes], Awaitable[None]], gap: Callable[[], Awaitable[None]]) -> None:
        self.receivers.append(deliver)
        self.gaps.append(gap)

    async def publish(self, message: bytes) -> None:
        for deliver in self.receivers:
            await deliver(message)

    async def close(self) -> None:
        pass


async def test_changes_between_processes_and_gaps() -> None:
    bus = FakeBus()
    here, there = Changes(), Changes()
    here.attach(bus)
    there.attach(bus)
    got_here: list[Change] = []
    got_there: list[Change] = []
    local_only: list[Change] = []

    async def on_here(c: Change) -> None:
        got_here.append(c)

    async def on_there(c: Change) -> None:
        got_there.append(c)

    async def on_local(c: Change) -> None:
        local_only.append(c)

    here.listen(on_here)
    there.listen(on_there)
    there.listen(on_local, remote=False)
    await here.emit(["s1", "s2"], C.GRANT)
    assert [(c.subjects, c.cause, c.local) for c in got_here] == [(frozenset({"s1", "s2"}), C.GRANT, True)]
    assert [(c.subjects, c.cause, c.local) for c in got_there] == [(frozenset({"s1", "s2"}), C.GRANT, False)]
    assert got_there[0].at == got_here[0].at
    assert local_only == []  # another process's write: not for local-only listeners (the cache)
    await here.emit([], C.INGEST)  # nothing changed: no signal
    await bus.publish(GAP)  # a process could not publish: everybody resyncs
    assert [(c.subjects, c.cause) for c in got_there[1:]] == [(None, C.RESYNC)]
    assert [(c.subjects, c.cause) for c in got_here[1:]] == [(None, C.RESYNC)]
    await bus.publish(b"not json")  # ignored, logged
    await bus.publish(orjson.dumps({"o": "x", "s": ["s3"], "c": "NOPE", "t": "2024-01-01T00:00:00+00:00"}))
    assert len(got_there) == 2 and local_only == []
