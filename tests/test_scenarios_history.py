"""History scenario (docs/semantics.md §7): burn-down across a reset, a grant start and a recurrence;
day windows in Europe/Berlin across the 2024-10-27 DST change; history from the middle of a period."""

from __future__ import annotations

from typing import Any

from tests.conftest import GQL, Clock
from tests.ent_helpers import events, feature, grant, meter, metered, value
from tests.test_history import HISTORY


def nonzero(rows: list[dict[str, Any]], key: str) -> dict[str, float]:
    return {r["grantId"]: r[key] for r in rows if r[key] != 0}


async def history(gql: GQL, ent_id: str, window: str, start: str, end: str, tz: str = "UTC") -> dict[str, Any]:
    got = await gql.ok(HISTORY, id=ent_id, w=window, tz=tz, **{"from": start, "to": end})
    return dict(got["entitlement"]["history"])


async def test_history_across_reset_grant_start_recurrence_and_dst(gql: GQL, clock: Clock) -> None:
    await meter(gql)
    await feature(gql, "ai")
    clock.set("2024-10-21T00:00:00+00:00")  # a Monday
    ent = await metered(gql, "c", "ai", interval="WEEK", anchor="2024-10-21T00:00:00Z")
    # g1 burns second and rolls over at most 50; g2 burns first and is set to 10 every Thursday 00:00 UTC;
    # g3 burns last, from Sat 12:00 for two days (rollover 0: it holds 0 after the Monday reset)
    g1 = (await grant(gql, "c", "ai", 100, "2024-10-21T00:00:00Z", maxRolloverAmount=50))["id"]
    g2 = (await grant(gql, "c", "ai", 10, "2024-10-21T00:00:00Z", priority=0, duration="MONTH",
                      recurrence={"interval": "WEEK", "anchor": "2024-10-24T00:00:00Z"}))["id"]
    g3 = (await grant(gql, "c", "ai", 20, "2024-10-26T12:00:00Z", priority=2, duration="DAY", count=2))["id"]
    await events(gql, "c", ("2024-10-22T10:00:00Z", 15), ("2024-10-24T06:00:00Z", 8),
                 ("2024-10-26T22:00:00Z", 5),  # Oct 27 00:00 in Berlin (CEST)
                 ("2024-10-27T12:00:00Z", 30), ("2024-10-28T01:00:00Z", 4))
    clock.set("2024-10-29T00:00:00+00:00")

    full = await history(gql, ent["id"], "DAY", "2024-10-21T00:00:00Z", "2024-10-29T00:00:00Z", "Europe/Berlin")
    segs = full["burndownHistory"]
    assert [(s["period"]["from"], s["period"]["to"], s["usage"], s["balanceAtStart"], s["balanceAtEnd"],
             s["overage"]) for s in segs] == [
        # g1 100 + g2 10; 15 used: g2 10, g1 5
        ("2024-10-21T00:00:00Z", "2024-10-24T00:00:00Z", 15.0, 110.0, 95.0, 0.0),
        # g2 recurs: set to 10 (95 + 10); 8 used from g2
        ("2024-10-24T00:00:00Z", "2024-10-26T12:00:00Z", 8.0, 105.0, 97.0, 0.0),
        # g3 starts: 97 + 20; 35 used: g2 2, g1 33
        ("2024-10-26T12:00:00Z", "2024-10-28T00:00:00Z", 35.0, 117.0, 82.0, 0.0),
        # weekly reset: g1 62 -> 50, g2 0, g3 20 -> 0 (no rollover allowance); 4 used from g1
        ("2024-10-28T00:00:00Z", "2024-10-28T12:00:00Z", 4.0, 50.0, 46.0, 0.0),
        # g3 expires (holding 0)
        ("2024-10-28T12:00:00Z", "2024-10-29T00:00:00Z", 0.0, 46.0, 46.0, 0.0)]
    assert [nonzero(s["grantUsages"], "usage") for s in segs] == [
        {g2: 10.0, g1: 5.0}, {g2: 8.0}, {g2: 2.0, g1: 33.0}, {g1: 4.0}, {}]
    assert nonzero(segs[1]["grantBalancesAtStart"], "balance") == {g1: 95.0, g2: 10.0}
    assert nonzero(segs[2]["grantBalancesAtStart"], "balance") == {g1: 95.0, g2: 2.0, g3: 20.0}
    assert nonzero(segs[2]["grantBalancesAtEnd"], "balance") == {g1: 62.0, g3: 20.0}
    assert nonzero(segs[3]["grantBalancesAtStart"], "balance") == {g1: 50.0}

    # Berlin days: midnight is 22:00 UTC until Oct 27, 23:00 UTC after; Oct 27 has 25 hours
    assert [(w["period"]["from"], w["period"]["to"], w["usage"], w["balanceAtStart"])
            for w in full["windowedHistory"]] == [
        ("2024-10-21T22:00:00Z", "2024-10-22T22:00:00Z", 15.0, 110.0),
        ("2024-10-23T22:00:00Z", "2024-10-24T22:00:00Z", 8.0, 95.0),  # before the Thursday recurrence
        ("2024-10-26T22:00:00Z", "2024-10-27T23:00:00Z", 35.0, 117.0),  # the 25-hour day
        ("2024-10-27T23:00:00Z", "2024-10-28T23:00:00Z", 4.0, 82.0)]  # spans the reset: 62 + 20 at its start
    for w in full["windowedHistory"]:
        assert (await value(gql, "c", "ai", w["period"]["from"]))["balance"] == w["balanceAtStart"]

    hours = await history(gql, ent["id"], "HOUR", "2024-10-26T20:00:00Z", "2024-10-28T02:00:00Z", "Europe/Berlin")
    assert [(w["period"]["from"], w["period"]["to"], w["usage"], w["balanceAtStart"])
            for w in hours["windowedHistory"]] == [
        ("2024-10-26T22:00:00Z", "2024-10-26T23:00:00Z", 5.0, 117.0),
        ("2024-10-27T12:00:00Z", "2024-10-27T13:00:00Z", 30.0, 112.0),
        ("2024-10-28T01:00:00Z", "2024-10-28T02:00:00Z", 4.0, 50.0)]
    # burn-down from a mid-segment instant starts from the replayed state there
    assert [(s["period"]["from"], s["balanceAtStart"], s["balanceAtEnd"]) for s in hours["burndownHistory"]] == [
        ("2024-10-26T20:00:00Z", 117.0, 82.0), ("2024-10-28T00:00:00Z", 50.0, 46.0)]

    # from the middle of the period (not on a window or phase boundary): the same rows as from its start
    mid = await history(gql, ent["id"], "DAY", "2024-10-24T12:37:00Z", "2024-10-29T00:00:00Z", "Europe/Berlin")
    first, *rest = mid["burndownHistory"]
    assert (first["period"], first["usage"], first["balanceAtStart"], first["balanceAtEnd"]) == (
        {"from": "2024-10-24T12:37:00Z", "to": "2024-10-26T12:00:00Z"}, 0.0, 97.0, 97.0)
    assert nonzero(first["grantBalancesAtStart"], "balance") == {g1: 95.0, g2: 2.0}
    assert rest == segs[2:]
    assert mid["windowedHistory"] == full["windowedHistory"][2:]

    # default range: from the last reset (Oct 28) to now
    dflt = await gql.ok(HISTORY, id=ent["id"], w="HOUR")
    assert [s["period"]["from"] for s in dflt["entitlement"]["history"]["burndownHistory"]] == [
        "2024-10-28T00:00:00Z", "2024-10-28T12:00:00Z"]
