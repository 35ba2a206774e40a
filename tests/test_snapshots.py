"""Snapshots never change an answer (docs/semantics.md §6.4): the same reads with snapshots off and on."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from sqlalchemy import text

from creditgate.adapters.sql import snapshots as snap_repo
from creditgate.services import snapshots
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
        rt.settings.snapshots = True


async def same(gql: GQL, rt: Runtime, ent_id: str) -> None:
    """The answers with snapshots off, on (storing them) and on again (reading them) agree; the "on" pass
    really stored snapshots and no snapshot write failed (failures are only logged and counted)."""
    stored, failed = snapshots.counts.stored, snapshots.counts.failed
    off = await answers(gql, rt, ent_id, False)
    assert snapshots.counts.stored == stored  # off means off
    on = await answers(gql, rt, ent_id, True)
    assert snapshots.counts.stored > stored, "the snapshots-on pass stored none: the comparison proves nothing"
    on_again = await answers(gql, rt, ent_id, True)  # now starting from the stored snapshots
    assert snapshots.counts.failed == failed
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


async def test_a_failed_snapshot_write_is_counted_and_logged_but_never_fails_a_read(
        gql: GQL, rt: Runtime, clock: Clock, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    await meter(gql)
    await feature(gql, "ai")
    await metered(gql, "c", "ai", interval="DAY", anchor="2024-01-15T00:00:00Z",
                  measureUsageFrom="2024-01-15T00:00:00Z")
    await grant(gql, "c", "ai", 20, "2024-01-15T00:00:00Z", duration="MONTH")
    await events(gql, "c", ("2024-01-15T12:10:00Z", 4))
    clock.set("2024-01-17T06:00:00+00:00")
    cache, rt.cache = rt.cache, None
    try:
        async def broken(*_: Any) -> None:
            raise RuntimeError("disk full")

        rt.settings.snapshots = False
        expected = await value(gql, "c", "ai")
        rt.settings.snapshots = True
        monkeypatch.setattr(snap_repo, "save", broken)
        stored, failed = snapshots.counts.stored, snapshots.counts.failed
        with caplog.at_level(logging.WARNING, logger="creditgate.snapshots"):
            got = await value(gql, "c", "ai")
        assert got == expected and got["hasAccess"] is False  # the period reset on the 16th: 20 did not roll over
        assert (snapshots.counts.stored, snapshots.counts.failed) == (stored, failed + 1)
        assert "snapshot not stored" in caplog.text and "disk full" in caplog.text
        assert await snapshot_count(rt) == 0
        monkeypatch.undo()
        assert await value(gql, "c", "ai") == expected
        assert snapshots.counts.stored > stored and snapshots.counts.failed == failed + 1
        assert await snapshot_count(rt) > 0
    finally:
        rt.cache = cache
        rt.settings.snapshots = True
