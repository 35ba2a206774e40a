"""Snapshots never change an answer (docs/semantics.md §6.4): the same reads with snapshots off and on."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from creditgate.services.runtime import Runtime
from tests.conftest import GQL, Clock
from tests.ent_helpers import events, feature, grant, meter, metered, value
from tests.test_history import HISTORY

INSTANTS = ["2024-01-15T12:30:00Z", "2024-01-16T00:00:00Z", "2024-01-16T05:00:30Z", "2024-01-17T01:00:00Z",
            "2024-01-18T10:00:00Z", None]


async def snapshot_count(rt: Runtime) -> int:
    async with rt.db.read() as s:
        return int((await (await s.connection()).execute(text("SELECT count(*) FROM snapshots"))).scalar_one())


async def answers(gql: GQL, rt: Runtime, ent_id: str, snapshots: bool) -> list[Any]:
    cache, rt.cache = rt.cache, None
    rt.settings.snapshots = snapshots
    try:
        out: list[Any] = []
        for at in INSTANTS:
            out.append(await value(gql, "c", "ai", at=at))
        out.append(await gql.ok(HISTORY, id=ent_id, w="HOUR", **{"from": "2024-01-15T12:00:00Z"}))
        out.append(await gql.ok(HISTORY, id=ent_id, w="MINUTE", **{"from": "2024-01-16T05:00:00Z",
                                                                  "to": "2024-01-16T06:00:00Z"}))
        return out
    finally:
        rt.cache = cache
        rt.settings.snapshots = True


async def same(gql: GQL, rt: Runtime, ent_id: str) -> None:
    off = await answers(gql, rt, ent_id, False)
    on = await answers(gql, rt, ent_id, True)
    on_again = await answers(gql, rt, ent_id, True)  # now starting from the stored snapshots
    assert on == off
    assert on_again == off


@pytest.mark.parametrize("rollover", [False, True])
async def test_snapshots_do_not_change_answers(gql: GQL, rt: Runtime, clock: Clock, rollover: bool) -> None:
    await meter(gql)
    await feature(gql, "ai")
    e = await metered(gql, "c", "ai", interval="DAY", anchor="2024-01-15T00:00:00Z",
                      measureUsageFrom="2024-01-15T00:00:00Z")
    ro = {"minRolloverAmount": 2, "maxRolloverAmount": 7} if rollover else {}
    g = await grant(gql, "c", "ai", 20, "2024-01-15T00:00:00Z", duration="MONTH", **ro)
    await grant(gql, "c", "ai", 3, "2024-01-15T00:00:00Z", priority=0, recurrence={"interval": "DAY"},
                duration="MONTH")
    await events(gql, "c", ("2024-01-15T12:10:00Z", 4), ("2024-01-15T12:40:00Z", 9.5))
    clock.set("2024-01-16T06:00:00+00:00")
    await events(gql, "c", ("2024-01-16T05:00:00Z", 1.25), ("2024-01-16T05:30:00Z", 30))
    ent_id = str(e["id"])
    await same(gql, rt, ent_id)
    assert await snapshot_count(rt) > 0
    # a late event before existing snapshots
    await events(gql, "c", ("2024-01-15T23:59:00Z", 2), ("2024-01-16T00:00:00Z", 0.5))
    await same(gql, rt, ent_id)
    # a back-dated grant inside the current period
    await grant(gql, "c", "ai", 6, "2024-01-16T00:00:00Z", duration="DAY")
    await same(gql, rt, ent_id)
    clock.set("2024-01-18T12:00:00+00:00")
    await events(gql, "c", ("2024-01-17T00:30:00Z", 8))
    await gql.ok("mutation($id: ID!) { voidGrant(id: $id) { id } }", id=g["id"])
    await same(gql, rt, ent_id)
    await gql.ok("""mutation($id: ID!) { resetEntitlement(subjectKey: "c", entitlementId: $id,
      input: {effectiveAt: "2024-01-18T06:00:00Z"}) { id } }""", id=ent_id)
    await same(gql, rt, ent_id)
    await events(gql, "c", ("2024-01-18T05:00:00Z", 1), ("2024-01-18T07:00:00Z", 1))
    await same(gql, rt, ent_id)
