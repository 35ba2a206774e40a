"""History (docs/semantics.md §7): burn-down segments and windows in a time zone; argument checks."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import GQL, Clock
from tests.ent_helpers import events, feature, grant, meter, metered

HISTORY = """query($id: ID!, $w: WindowSize!, $from: DateTime, $to: DateTime, $tz: String) {
  entitlement(id: $id) { ... on MeteredEntitlement { history(windowSize: $w, from: $from, to: $to,
    windowTimeZone: $tz) {
      windowedHistory { period { from to } usage balanceAtStart }
      burndownHistory { period { from to } usage overage balanceAtStart balanceAtEnd
        grantBalancesAtStart { grantId balance } grantBalancesAtEnd { grantId balance } grantUsages { grantId usage } }
  } } } }"""


@pytest.fixture
async def ent(gql: GQL, clock: Clock) -> dict[str, Any]:
    await meter(gql)
    await feature(gql, "ai")
    e = await metered(gql, "c", "ai", interval="DAY", anchor="2024-01-15T00:00:00Z",
                      measureUsageFrom="2024-01-15T00:00:00Z")
    g1 = await grant(gql, "c", "ai", 10, "2024-01-15T00:00:00Z", duration="MONTH")
    g2 = await grant(gql, "c", "ai", 5, "2024-01-15T06:00:00Z", priority=0, duration="MONTH")
    await events(gql, "c", ("2024-01-15T02:00:00Z", 3), ("2024-01-15T07:00:00Z", 4), ("2024-01-15T23:30:00Z", 2),
                 ("2024-01-16T01:00:00Z", 1))
    clock.set("2024-01-16T03:00:00+00:00")
    return {"id": e["id"], "g1": g1["id"], "g2": g2["id"]}


async def test_burndown_and_windows(gql: GQL, ent: dict[str, Any]) -> None:
    h = (await gql.ok(HISTORY, id=ent["id"], w="HOUR", **{"from": "2024-01-15T00:00:00Z",
                                                          "to": "2024-01-16T00:00:00Z"}))
    hist = h["entitlement"]["history"]
    segs = hist["burndownHistory"]
    assert [s["period"] for s in segs] == [
        {"from": "2024-01-15T00:00:00Z", "to": "2024-01-15T06:00:00Z"},
        {"from": "2024-01-15T06:00:00Z", "to": "2024-01-16T00:00:00Z"}]
    assert segs[0]["usage"] == 3.0 and segs[0]["balanceAtStart"] == 10.0 and segs[0]["balanceAtEnd"] == 7.0
    # the priority-0 grant burns first
    second = segs[1]
    assert second["balanceAtStart"] == 12.0 and second["usage"] == 6.0 and second["balanceAtEnd"] == 6.0
    usages = {u["grantId"]: u["usage"] for u in second["grantUsages"]}
    assert usages == {ent["g1"]: 1.0, ent["g2"]: 5.0}
    windows = hist["windowedHistory"]
    assert [(w["period"]["from"], w["usage"], w["balanceAtStart"]) for w in windows] == [
        ("2024-01-15T02:00:00Z", 3.0, 10.0), ("2024-01-15T07:00:00Z", 4.0, 12.0), ("2024-01-15T23:00:00Z", 2.0, 8.0)]


async def test_windows_in_a_time_zone_and_defaults(gql: GQL, ent: dict[str, Any]) -> None:
    h = await gql.ok(HISTORY, id=ent["id"], w="DAY", tz="Asia/Kolkata", **{"from": "2024-01-15T00:00:00Z"})
    windows = h["entitlement"]["history"]["windowedHistory"]
    # local days start at 18:30 UTC; the automatic reset at 2024-01-16 00:00 splits nothing in windows
    assert [(w["period"]["from"], w["period"]["to"], w["usage"]) for w in windows] == [
        ("2024-01-15T00:00:00Z", "2024-01-15T18:30:00Z", 7.0),
        ("2024-01-15T18:30:00Z", "2024-01-16T03:00:00Z", 3.0)]
    d = await gql.ok(HISTORY, id=ent["id"], w="MINUTE")  # from = last reset (2024-01-16), to = now
    segs = d["entitlement"]["history"]["burndownHistory"]
    assert segs[0]["period"]["from"] == "2024-01-16T00:00:00Z" and segs[-1]["period"]["to"] == "2024-01-16T03:00:00Z"
    assert sum(s["usage"] for s in segs) == 1.0


async def test_history_arguments(gql: GQL, ent: dict[str, Any]) -> None:
    await gql.error(HISTORY, "BAD_USER_INPUT", id=ent["id"], w="HOUR", **{"from": "2024-01-14T00:00:00Z"})
    await gql.error(HISTORY, "BAD_USER_INPUT", id=ent["id"], w="HOUR", **{"from": "2024-01-15T05:00:00Z",
                                                                          "to": "2024-01-15T05:00:00Z"})
    await gql.error(HISTORY, "BAD_USER_INPUT", id=ent["id"], w="HOUR", tz="Mars/Base")
    await gql.error(HISTORY, "BAD_USER_INPUT", id=ent["id"], w="WEEK")
