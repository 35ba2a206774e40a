"""Races: duplicate creates, and reads racing ingest (read-your-writes through the cache)."""

from __future__ import annotations

import asyncio

from creditgate.services.runtime import Runtime
from tests.conftest import GQL
from tests.ent_helpers import CREATE_ENT, events, feature, grant, meter, metered, value


async def test_racing_duplicate_creates(gql: GQL, rt: Runtime) -> None:
    await meter(gql)
    await feature(gql, "ai")
    inp = {"type": "METERED", "featureKey": "ai", "usagePeriod": {"interval": "MONTH"}, "issueAfterReset": 5}
    for subject in ("r1", "r2", "r3"):
        bodies = await asyncio.gather(*[gql(CREATE_ENT, s=subject, input=inp) for _ in range(4)])
        wins = [b for b in bodies if not b.get("errors")]
        losses = [b["errors"][0] for b in bodies if b.get("errors")]
        assert len(wins) == 1, bodies
        winner = wins[0]["data"]["createEntitlement"]["id"]
        assert [e["extensions"]["code"] for e in losses] == ["CONFLICT"] * 3
        assert all(e["extensions"]["conflictingEntityId"] == winner for e in losses)
    listed = await gql.ok("{ entitlements { id } grants { id } }")
    assert len(listed["entitlements"]) == 3 and len(listed["grants"]) == 3


async def test_reads_racing_ingest_never_go_back(gql: GQL, rt: Runtime) -> None:
    await meter(gql)
    await feature(gql, "ai")
    await metered(gql, "c", "ai", interval="MONTH")
    await grant(gql, "c", "ai", 1000, "2024-01-15T12:00:00Z")
    acked = [0]
    stale: list[tuple[int, float]] = []

    async def writer() -> None:
        for _ in range(15):
            await events(gql, "c", ("2024-01-15T12:00:05Z", 1))
            acked[0] += 1
            await asyncio.sleep(0)

    async def reader() -> None:
        for _ in range(25):
            before = acked[0]
            got = await value(gql, "c", "ai")
            if got["usage"] < before:
                stale.append((before, got["usage"]))
            await asyncio.sleep(0)

    await asyncio.gather(writer(), reader(), reader(), reader())
    assert stale == []
    assert (await value(gql, "c", "ai"))["usage"] == 15.0
