"""End-to-end scenarios over GraphQL (docs/semantics.md §3-§6, §8): each with hand-worked numbers."""

from __future__ import annotations

from typing import Any

from tests.conftest import GQL, Clock
from tests.ent_helpers import CHECK, CREATE_ENT, ENT_FIELDS, events, feature, grant, meter, metered, value

ENT = "query($id: ID!) { entitlement(id: $id) { " + ENT_FIELDS + " } }"
VOID = "mutation($id: ID!) { voidGrant(id: $id) { id voidedAt } }"
RESET = """mutation($s: String!, $id: ID!, $input: ResetEntitlementInput) {
  resetEntitlement(subjectKey: $s, entitlementId: $id, input: $input) {
    lastReset currentUsagePeriod { from to } usagePeriod { interval anchor } } }"""
BURNDOWN = """query($id: ID!, $from: DateTime, $to: DateTime) { entitlement(id: $id) { ... on MeteredEntitlement {
  history(windowSize: HOUR, from: $from, to: $to) { burndownHistory { period { from to } usage overage
    balanceAtStart balanceAtEnd grantBalancesAtEnd { grantId balance } grantUsages { grantId usage } } } } } }"""


async def bal(gql: GQL, subject: str, ref: str, at: str | None = None) -> tuple[float, float, float]:
    """(balance, usage, overage) at an instant."""
    v = await value(gql, subject, ref, at)
    return v["balance"], v["usage"], v["overage"]


async def period(gql: GQL, ent_id: str) -> tuple[str, dict[str, str]]:
    e = (await gql.ok(ENT, id=ent_id))["entitlement"]
    return e["lastReset"], e["currentUsagePeriod"]


def nonzero(rows: list[dict[str, Any]], key: str) -> dict[str, float]:
    return {r["grantId"]: r[key] for r in rows if r[key] != 0}


# 1. "10,000 AI tokens a month, unused roll over up to 2,000"
async def test_monthly_allowance_with_rollover(gql: GQL, clock: Clock) -> None:
    await meter(gql)
    await feature(gql, "ai")
    clock.set("2024-01-31T00:00:00+00:00")
    # periods anchored Jan 31: Feb 29 (clamped, leap year), Mar 31, Apr 30
    ent = await metered(gql, "acme", "ai", interval="MONTH", anchor="2024-01-31T00:00:00Z")
    assert ent["measureUsageFrom"] == "2024-01-31T00:00:00Z"
    assert ent["currentUsagePeriod"] == {"from": "2024-01-31T00:00:00Z", "to": "2024-02-29T00:00:00Z"}
    # one 10,000 grant per month, each living two periods; at a reset it keeps at most 2,000
    roll = {"minRolloverAmount": 0, "maxRolloverAmount": 2000}
    g1 = await grant(gql, "acme", "ai", 10000, "2024-01-31T00:00:00Z", duration="MONTH", count=2, **roll)
    g2 = await grant(gql, "acme", "ai", 10000, "2024-02-29T00:00:00Z", duration="DAY", count=61, **roll)
    g3 = await grant(gql, "acme", "ai", 10000, "2024-03-31T00:00:00Z", duration="MONTH", count=2, **roll)
    assert [g1["expiresAt"], g2["expiresAt"], g3["expiresAt"]] == [
        "2024-03-31T00:00:00Z", "2024-04-30T00:00:00Z", "2024-05-31T00:00:00Z"]
    # a second customer on the plain "10,000 every period" (issueAfterReset: refilled to 10,000)
    plain = await metered(gql, "beta", "ai", interval="MONTH", anchor="2024-01-31T00:00:00Z", issueAfterReset=10000)

    # period 1 [Jan 31, Feb 29): 3,000 + 4,000 (the last in the last minute)
    clock.set("2024-02-10T00:01:00+00:00")
    await events(gql, "acme", ("2024-02-10T00:00:00Z", 3000))
    await events(gql, "beta", ("2024-02-10T00:00:00Z", 12000))
    assert await bal(gql, "acme", "ai") == (7000.0, 3000.0, 0.0)
    clock.set("2024-02-28T23:59:10+00:00")
    await events(gql, "acme", ("2024-02-28T23:59:00Z", 4000))
    # read at 23:59:00: the 23:59 minute is not finished yet
    assert await bal(gql, "acme", "ai", "2024-02-28T23:59:00Z") == (7000.0, 3000.0, 0.0)
    # now (23:59:10) reads at ceil = Feb 29 00:00: the reset there belongs to the next period (no clamp
    # yet), but g2, effective at that very instant, counts at once: 3,000 + 10,000
    assert await bal(gql, "acme", "ai") == (13000.0, 7000.0, 0.0)
    assert await bal(gql, "beta", "ai") == (0.0, 12000.0, 2000.0)
    assert await period(gql, ent["id"]) == ("2024-01-31T00:00:00Z",
                                            {"from": "2024-01-31T00:00:00Z", "to": "2024-02-29T00:00:00Z"})

    # reset Feb 29: g1 keeps min(2000, 3000) = 2000, g2 starts with 10,000
    clock.set("2024-02-29T00:00:00+00:00")
    assert await bal(gql, "acme", "ai") == (12000.0, 0.0, 0.0)
    assert await bal(gql, "beta", "ai") == (10000.0, 0.0, 0.0)  # overage forgiven, refilled
    assert await period(gql, ent["id"]) == ("2024-02-29T00:00:00Z",
                                            {"from": "2024-02-29T00:00:00Z", "to": "2024-03-31T00:00:00Z"})
    assert await bal(gql, "acme", "ai", "2024-02-29T00:01:00Z") == (12000.0, 0.0, 0.0)

    # period 2 [Feb 29, Mar 31): 2,500 (g1 2,000 first: it expires first, then g2 500), then 9,000 from g2
    clock.set("2024-03-20T12:00:00+00:00")
    await events(gql, "acme", ("2024-03-05T00:00:00Z", 2500), ("2024-03-20T00:00:00Z", 9000))
    assert await bal(gql, "acme", "ai") == (500.0, 11500.0, 0.0)
    clock.set("2024-03-31T00:01:00+00:00")
    assert await bal(gql, "acme", "ai", "2024-03-30T23:59:00Z") == (500.0, 11500.0, 0.0)
    # reset Mar 31: g1 expired (dropped), g2 keeps 500, g3 starts with 10,000
    assert await bal(gql, "acme", "ai", "2024-03-31T00:00:00Z") == (10500.0, 0.0, 0.0)
    assert await bal(gql, "acme", "ai") == (10500.0, 0.0, 0.0)

    # period 3 [Mar 31, Apr 30): 12,000 burns g2's 500, g3's 10,000, leaves 1,500 overage
    clock.set("2024-04-10T00:01:00+00:00")
    await events(gql, "acme", ("2024-04-10T00:00:00Z", 12000))
    assert await bal(gql, "acme", "ai") == (0.0, 12000.0, 1500.0)
    assert (await value(gql, "acme", "ai"))["hasAccess"] is False
    clock.set("2024-04-29T23:59:00+00:00")
    assert await period(gql, ent["id"]) == ("2024-03-31T00:00:00Z",
                                            {"from": "2024-03-31T00:00:00Z", "to": "2024-04-30T00:00:00Z"})
    # reset Apr 30: g2 expired, g3 empty, overage forgiven
    clock.set("2024-04-30T00:00:00+00:00")
    assert await bal(gql, "acme", "ai") == (0.0, 0.0, 0.0)
    assert await period(gql, ent["id"]) == ("2024-04-30T00:00:00Z",
                                            {"from": "2024-04-30T00:00:00Z", "to": "2024-05-31T00:00:00Z"})

    # audit: past instants after all the later usage
    assert await bal(gql, "acme", "ai", "2024-02-15T00:00:00Z") == (7000.0, 3000.0, 0.0)
    assert await bal(gql, "acme", "ai", "2024-03-10T00:00:00Z") == (9500.0, 2500.0, 0.0)
    assert await bal(gql, "acme", "ai", "2024-04-10T00:00:00Z") == (10500.0, 0.0, 0.0)
    assert await bal(gql, "acme", "ai", "2024-04-10T00:01:00Z") == (0.0, 12000.0, 1500.0)
    assert await bal(gql, "beta", "ai", "2024-03-31T00:00:00Z") == (10000.0, 0.0, 0.0)
    assert plain["issueAfterReset"] == 10000.0


# 2. Priorities, expiry, back-dated grants, grants effective at the read instant, hard vs soft limits
async def test_priorities_and_expiry(gql: GQL, clock: Clock) -> None:
    await meter(gql)
    await feature(gql, "ai")
    await feature(gql, "ai-soft")
    ent = await metered(gql, "c", "ai", interval="MONTH", anchor="2024-01-01T00:00:00Z",
                        measureUsageFrom="2024-01-01T00:00:00Z")
    await metered(gql, "c", "ai-soft", interval="MONTH", anchor="2024-01-01T00:00:00Z", isSoftLimit=True)
    eff = "2024-01-15T12:00:00Z"
    a = await grant(gql, "c", "ai", 10, eff, priority=2, duration="DAY", count=2)  # expires Jan 17 12:00
    b = await grant(gql, "c", "ai", 5, eff, priority=1)  # lowest priority number: burns first
    c = await grant(gql, "c", "ai", 10, eff, priority=2, duration="DAY", count=1)  # expires first among priority 2
    clock.set("2024-01-15T12:00:31+00:00")
    d = await grant(gql, "c", "ai", 10, eff, priority=2, duration="DAY", count=2)  # same expiry as a, created later
    # burn order: b, c, a, d
    clock.set("2024-01-15T13:01:00+00:00")
    await events(gql, "c", ("2024-01-15T13:00:00Z", 7))  # b 5 -> 0, c 10 -> 8
    assert await bal(gql, "c", "ai") == (28.0, 7.0, 0.0)
    clock.set("2024-01-16T12:30:00+00:00")
    await events(gql, "c", ("2024-01-16T11:00:00Z", 3))  # c 8 -> 5
    assert await bal(gql, "c", "ai", "2024-01-16T11:59:00Z") == (25.0, 10.0, 0.0)
    # c expires at Jan 16 12:00 holding 5: lost
    assert await bal(gql, "c", "ai", "2024-01-16T12:00:00Z") == (20.0, 10.0, 0.0)
    clock.set("2024-01-16T13:01:00+00:00")
    await events(gql, "c", ("2024-01-16T13:00:00Z", 12))  # a 10 -> 0, d 10 -> 8
    assert await bal(gql, "c", "ai") == (8.0, 22.0, 0.0)
    # a and d expire at Jan 17 12:00; 4 more is overage
    clock.set("2024-01-17T14:00:20+00:00")
    await events(gql, "c", ("2024-01-17T13:00:00Z", 4))
    assert await bal(gql, "c", "ai") == (0.0, 26.0, 4.0)
    checks = [{"subjectKey": "c", "featureKey": "ai"}, {"subjectKey": "c", "featureKey": "ai-soft"}]
    got = (await gql.ok(CHECK, checks=checks))["checkAccess"]
    assert [(r["reason"], r["hasAccess"], r["balance"], r["overage"]) for r in got] == [
        ("NO_BALANCE", False, 0.0, 4.0), ("SOFT_LIMIT", True, 0.0, 26.0)]  # same meter, no grants
    # a back-dated grant (13:30, in the past, inside the current period) pays the carried overage first
    e = await grant(gql, "c", "ai", 20, "2024-01-17T13:30:00Z", duration="DAY")
    assert await bal(gql, "c", "ai") == (16.0, 26.0, 0.0)
    assert await bal(gql, "c", "ai", "2024-01-17T13:29:00Z") == (0.0, 26.0, 4.0)
    assert await bal(gql, "c", "ai", "2024-01-17T13:30:00Z") == (16.0, 26.0, 0.0)
    # a grant effective exactly at the read instant counts at once: now = 14:00:20 reads at 14:01
    f = await grant(gql, "c", "ai", 1, "2024-01-17T14:01:00Z", priority=0, duration="DAY")
    assert await bal(gql, "c", "ai") == (17.0, 26.0, 0.0)
    assert await bal(gql, "c", "ai", "2024-01-17T14:00:00Z") == (16.0, 26.0, 0.0)
    assert await bal(gql, "c", "ai", "2024-01-17T14:01:00Z") == (17.0, 26.0, 0.0)
    got = (await gql.ok(CHECK, checks=checks[:1]))["checkAccess"]
    assert got[0]["reason"] == "GRANTED" and got[0]["balance"] == 17.0
    # the order, grant by grant (segments split at c's and a/d's expiry and e's start)
    h = await gql.ok(BURNDOWN, id=ent["id"], **{"from": "2024-01-15T12:00:00Z", "to": "2024-01-17T14:00:00Z"})
    segs = h["entitlement"]["history"]["burndownHistory"]
    assert [(s["period"]["from"], s["usage"], s["balanceAtStart"], s["balanceAtEnd"], s["overage"])
            for s in segs] == [
        ("2024-01-15T12:00:00Z", 10.0, 35.0, 25.0, 0.0),
        ("2024-01-16T12:00:00Z", 12.0, 20.0, 8.0, 0.0),
        ("2024-01-17T12:00:00Z", 4.0, 0.0, 0.0, 4.0),
        ("2024-01-17T13:30:00Z", 0.0, 20.0, 16.0, 0.0)]  # balanceAtStart before e pays the overage
    assert nonzero(segs[0]["grantUsages"], "usage") == {b["id"]: 5.0, c["id"]: 5.0}
    assert nonzero(segs[1]["grantUsages"], "usage") == {a["id"]: 10.0, d["id"]: 2.0}
    assert nonzero(segs[3]["grantUsages"], "usage") == {e["id"]: 4.0}
    assert nonzero(segs[1]["grantBalancesAtEnd"], "balance") == {d["id"]: 8.0}
    assert f["effectiveAt"] == "2024-01-17T14:01:00Z"


# 3. Voids
async def test_void_mid_period(gql: GQL, clock: Clock) -> None:
    await meter(gql)
    await feature(gql, "ai")
    ent = await metered(gql, "c", "ai", interval="MONTH", anchor="2024-01-01T00:00:00Z",
                        measureUsageFrom="2024-01-01T00:00:00Z")
    g = await grant(gql, "c", "ai", 10, "2024-01-15T12:00:00Z")
    h = await grant(gql, "c", "ai", 5, "2024-01-15T12:00:00Z", priority=2)
    await events(gql, "c", ("2024-01-15T12:10:00Z", 3))  # g 10 -> 7
    clock.set("2024-01-15T12:30:40+00:00")
    assert await bal(gql, "c", "ai") == (12.0, 3.0, 0.0)
    assert (await gql.ok(VOID, id=g["id"]))["voidGrant"]["voidedAt"] == "2024-01-15T12:30:00Z"
    await gql.error(VOID, "BAD_USER_INPUT", id=g["id"])
    assert await bal(gql, "c", "ai") == (5.0, 3.0, 0.0)  # g holds 0 from 12:30
    clock.set("2024-01-15T12:41:00+00:00")
    await events(gql, "c", ("2024-01-15T12:40:00Z", 4))  # h 5 -> 1; nothing from g
    assert await bal(gql, "c", "ai") == (1.0, 7.0, 0.0)
    # usage before the void stayed burnt from g: 7 left at 12:29, not 10
    assert await bal(gql, "c", "ai", "2024-01-15T12:29:00Z") == (12.0, 3.0, 0.0)
    assert await bal(gql, "c", "ai", "2024-01-15T12:30:00Z") == (5.0, 3.0, 0.0)
    listed = await gql.ok("""query($id: ID!) { entitlement(id: $id) { ... on MeteredEntitlement {
      all: grants { id voidedAt } live: grants(includeVoided: false) { id } } }
      entitlements(subjectKey: "c") { id } grants(subjectKey: "c") { id }
      withVoided: grants(subjectKey: "c", includeDeleted: true) { id } }""", id=ent["id"])
    assert {x["id"]: x["voidedAt"] for x in listed["entitlement"]["all"]} == {
        g["id"]: "2024-01-15T12:30:00Z", h["id"]: None}
    assert listed["entitlement"]["live"] == [{"id": h["id"]}]
    assert [x["id"] for x in listed["entitlements"]] == [ent["id"]]
    # voided grants stay listed (docs/semantics.md §5); includeDeleted is about deleted entitlements
    assert [x["id"] for x in listed["grants"]] == [g["id"], h["id"]]
    assert {x["id"] for x in listed["withVoided"]} == {g["id"], h["id"]}


# 4. Manual resets
async def test_manual_resets(gql: GQL, clock: Clock) -> None:
    await meter(gql)
    await feature(gql, "ai")
    ent = await metered(gql, "c", "ai", interval="MONTH", anchor="2024-01-01T00:00:00Z",
                        measureUsageFrom="2024-01-01T00:00:00Z")
    await grant(gql, "c", "ai", 100, "2024-01-01T00:00:00Z", minRolloverAmount=10, maxRolloverAmount=30)
    await events(gql, "c", ("2024-01-05T00:00:00Z", 40), ("2024-01-12T00:00:00Z", 50))
    # now Jan 15 12:00:30; period [Jan 1, Feb 1); 100 - 90 = 10
    assert await bal(gql, "c", "ai") == (10.0, 90.0, 0.0)
    for bad in ("2024-01-16T00:00:00Z", "2024-01-01T00:00:00Z", "2023-12-31T00:00:00Z"):
        await gql.error(RESET, "BAD_USER_INPUT", s="c", id=ent["id"], input={"effectiveAt": bad})
    # reset at Jan 10 06:00 (new anchor): 60 left then, clamped to max 30; usage from there: 50 -> overage 20
    got = (await gql.ok(RESET, s="c", id=ent["id"], input={"effectiveAt": "2024-01-10T06:00:00Z"}))
    assert got["resetEntitlement"] == {"lastReset": "2024-01-10T06:00:00Z",
                                       "currentUsagePeriod": {"from": "2024-01-10T06:00:00Z",
                                                              "to": "2024-02-10T06:00:00Z"},
                                       "usagePeriod": {"interval": "MONTH", "anchor": "2024-01-10T06:00:00Z"}}
    assert await bal(gql, "c", "ai") == (0.0, 50.0, 20.0)
    assert await bal(gql, "c", "ai", "2024-01-08T00:00:00Z") == (60.0, 40.0, 0.0)  # the past is kept
    assert await bal(gql, "c", "ai", "2024-01-10T06:00:00Z") == (30.0, 0.0, 0.0)
    # at or before the current period start now
    await gql.error(RESET, "BAD_USER_INPUT", s="c", id=ent["id"], input={"effectiveAt": "2024-01-10T06:00:00Z"})
    await gql.error(RESET, "BAD_USER_INPUT", s="c", id=ent["id"], input={"effectiveAt": "2024-01-09T00:00:00Z"})
    # reset now, keeping the anchor: 0 left, raised to min 10; the overage of 20 is forgiven
    got = await gql.ok(RESET, s="c", id=ent["id"], input={"retainAnchor": True})
    assert got["resetEntitlement"]["lastReset"] == "2024-01-15T12:00:00Z"
    assert got["resetEntitlement"]["currentUsagePeriod"] == {"from": "2024-01-15T12:00:00Z",
                                                             "to": "2024-02-10T06:00:00Z"}
    assert await bal(gql, "c", "ai") == (10.0, 0.0, 0.0)
    assert await bal(gql, "c", "ai", "2024-01-15T11:59:00Z") == (0.0, 50.0, 20.0)
    await events(gql, "c", ("2024-01-20T00:00:00Z", 3))
    # the old anchor (Feb 1) is no reset any more
    clock.set("2024-02-01T00:00:00+00:00")
    assert await bal(gql, "c", "ai") == (7.0, 3.0, 0.0)
    # the automatic reset follows the new anchor: Feb 10 06:00, 7 raised to min 10
    clock.set("2024-02-10T05:59:00+00:00")
    assert await bal(gql, "c", "ai") == (7.0, 3.0, 0.0)
    clock.set("2024-02-10T06:00:00+00:00")
    assert await bal(gql, "c", "ai") == (10.0, 0.0, 0.0)
    assert await period(gql, ent["id"]) == ("2024-02-10T06:00:00Z",
                                            {"from": "2024-02-10T06:00:00Z", "to": "2024-03-10T06:00:00Z"})
    # a manual reset with more than max left: clamped down to 30
    await grant(gql, "c", "ai", 50, "2024-02-10T06:00:00Z", maxRolloverAmount=30)
    clock.set("2024-02-11T00:00:30+00:00")
    await gql.ok(RESET, s="c", id=ent["id"], input={"effectiveAt": "2024-02-11T00:00:00Z", "retainAnchor": True})
    # first grant: 10 -> clamp(10, 10, 30) = 10; second: 50 -> 30
    assert await bal(gql, "c", "ai") == (40.0, 0.0, 0.0)
    assert (await gql.ok(ENT, id=ent["id"]))["entitlement"]["usagePeriod"]["anchor"] == "2024-01-10T06:00:00Z"


# 5. Late events: past and current values change; cached values are not served after the ingest
async def test_late_events(gql: GQL, clock: Clock) -> None:
    await meter(gql)
    await feature(gql, "ai")
    await metered(gql, "c", "ai", interval="DAY", anchor="2024-01-15T00:00:00Z",
                  measureUsageFrom="2024-01-15T00:00:00Z")
    await grant(gql, "c", "ai", 10, "2024-01-15T00:00:00Z", maxRolloverAmount=10)
    clock.set("2024-01-16T12:00:00+00:00")
    await events(gql, "c", ("2024-01-15T10:00:00Z", 3), ("2024-01-16T10:00:00Z", 2))
    check = [{"subjectKey": "c", "featureKey": "ai"}]
    for _ in range(2):  # the second round comes from the cache
        assert await bal(gql, "c", "ai", "2024-01-15T23:00:00Z") == (7.0, 3.0, 0.0)
        assert await bal(gql, "c", "ai", "2024-01-16T00:00:00Z") == (7.0, 0.0, 0.0)  # 7 rolled over
        assert await bal(gql, "c", "ai") == (5.0, 2.0, 0.0)
        assert (await gql.ok(CHECK, checks=check))["checkAccess"][0]["balance"] == 5.0
    # a late event in the previous period: 4 less there, so 4 less rolled over into this one
    await events(gql, "c", ("2024-01-15T22:00:00Z", 4))
    assert await bal(gql, "c", "ai", "2024-01-15T23:00:00Z") == (3.0, 7.0, 0.0)
    assert await bal(gql, "c", "ai", "2024-01-16T00:00:00Z") == (3.0, 0.0, 0.0)
    assert await bal(gql, "c", "ai") == (1.0, 2.0, 0.0)
    assert (await gql.ok(CHECK, checks=check))["checkAccess"][0]["balance"] == 1.0
    assert await bal(gql, "c", "ai", "2024-01-16T10:30:00Z") == (1.0, 2.0, 0.0)
    # a late event in this period, 1 hour ago
    await events(gql, "c", ("2024-01-16T11:00:00Z", 1))
    assert await bal(gql, "c", "ai", "2024-01-16T10:30:00Z") == (1.0, 2.0, 0.0)
    assert await bal(gql, "c", "ai") == (0.0, 3.0, 0.0)
    got = (await gql.ok(CHECK, checks=check))["checkAccess"][0]
    assert (got["reason"], got["hasAccess"]) == ("NO_BALANCE", False)
    sub = await gql.ok('{ subject(idOrKey: "c") { access(featureKey: "ai", at: "2024-01-16T10:30:00Z") { balance } } }')
    assert sub["subject"]["access"]["balance"] == 1.0


# 6. Deletion, audit reads, a successor entitlement, resolution by feature key at an instant
async def test_deletion_and_successor(gql: GQL, clock: Clock) -> None:
    await meter(gql)
    await feature(gql, "ai")
    backfill = {"interval": "MONTH", "anchor": "2024-01-01T00:00:00Z", "measureUsageFrom": "2024-01-01T00:00:00Z"}
    e1 = await metered(gql, "c", "ai", **backfill)  # created Jan 15 12:00:30
    await grant(gql, "c", "ai", 10, "2024-01-01T00:00:00Z")
    await events(gql, "c", ("2024-01-05T00:00:00Z", 4))
    clock.set("2024-01-20T00:00:00+00:00")
    delete = "mutation($id: ID!) { deleteEntitlement(subjectKey: \"c\", entitlementId: $id) }"
    assert (await gql.ok(delete, id=e1["id"]))["deleteEntitlement"] is True
    # before the deletion it is still there (audit); at or after it, it is not
    assert await bal(gql, "c", "ai", "2024-01-19T23:59:00Z") == (6.0, 4.0, 0.0)
    assert await bal(gql, "c", e1["id"], "2024-01-19T23:59:00Z") == (6.0, 4.0, 0.0)
    val = "query($e: String!, $at: DateTime) { entitlementValue(subjectKey: \"c\", entitlementIdOrFeatureKey: $e, " \
          "at: $at) { balance } }"
    for ref, at in [("ai", None), ("ai", "2024-01-20T00:00:00Z"), (e1["id"], "2024-01-21T00:00:00Z")]:
        await gql.error(val, "NOT_FOUND", e=ref, at=at)
    at_q = """query($at: DateTime) { checkAccess(checks: [{subjectKey: "c", featureKey: "ai"}], at: $at) {
      reason entitlementId balance } }"""
    assert (await gql.ok(at_q, at=None))["checkAccess"][0] == {"reason": "NO_ENTITLEMENT", "entitlementId": None,
                                                               "balance": None}
    assert (await gql.ok(at_q, at="2024-01-19T00:00:00Z"))["checkAccess"][0] == {
        "reason": "GRANTED", "entitlementId": e1["id"], "balance": 6.0}
    sub_q = """{ subject(idOrKey: "c") { now: access(featureKey: "ai") { reason }
      then: access(featureKey: "ai", at: "2024-01-19T00:00:00Z") { reason balance entitlementId }
      live: entitlements { id } all: entitlements(includeDeleted: true) { id deletedAt } } }"""
    sub = (await gql.ok(sub_q))["subject"]
    assert sub["now"] == {"reason": "NO_ENTITLEMENT"}
    assert sub["then"] == {"reason": "GRANTED", "balance": 6.0, "entitlementId": e1["id"]}
    assert sub["live"] == [] and sub["all"] == [{"id": e1["id"], "deletedAt": "2024-01-20T00:00:00Z"}]
    await gql.error(delete, "NOT_FOUND", id=e1["id"])

    # a successor, created Jan 25 with the same backfill: 20 - 4 = 16
    clock.set("2024-01-25T00:00:00+00:00")
    e2 = await metered(gql, "c", "ai", **backfill)
    await grant(gql, "c", "ai", 20, "2024-01-01T00:00:00Z")
    # Jan 10: both visible, none created by then (backfill) -> the first created;
    # Jan 19: both visible, only e1 created by then; from Jan 20: only e2 visible
    for at, ent_id, balance in [("2024-01-10T00:00:00Z", e1["id"], 6.0), ("2024-01-19T00:00:00Z", e1["id"], 6.0),
                                ("2024-01-20T00:00:00Z", e2["id"], 16.0), ("2024-01-22T00:00:00Z", e2["id"], 16.0),
                                (None, e2["id"], 16.0)]:
        got = (await gql.ok(at_q, at=at))["checkAccess"][0]
        assert (got["entitlementId"], got["balance"]) == (ent_id, balance), at
        assert (await bal(gql, "c", "ai", at))[0] == balance, at
    sub = (await gql.ok(sub_q))["subject"]
    assert sub["now"] == {"reason": "GRANTED"} and sub["then"]["entitlementId"] == e1["id"]
    assert sub["live"] == [{"id": e2["id"]}] and {e["id"] for e in sub["all"]} == {e1["id"], e2["id"]}


# 7. Many entitlements: the three types on one subject; 20 subjects x 3 features in one checkAccess
async def test_many_entitlements(gql: GQL) -> None:
    await meter(gql)
    await feature(gql, "ai")
    await feature(gql, "sso", meter_slug=None)
    await feature(gql, "plan", meter_slug=None)
    day = {"interval": "DAY", "anchor": "2024-01-15T00:00:00Z", "measureUsageFrom": "2024-01-15T00:00:00Z"}
    cfg = {"seats": 5, "tier": "pro", "limits": {"rpm": 60, "models": ["a", "b"]}, "ratio": 0.1}
    await gql.ok(CREATE_ENT, s="big", input={"type": "BOOLEAN", "featureKey": "sso"})
    await gql.ok(CREATE_ENT, s="big", input={"type": "STATIC", "featureKey": "plan", "config": cfg})
    await metered(gql, "big", "ai", **day)
    await grant(gql, "big", "ai", 100, "2024-01-15T00:00:00Z")
    await events(gql, "big", ("2024-01-15T11:00:00Z", 30))
    listed = (await gql.ok("""{ subject(idOrKey: "big") { entitlements { featureKey type
      value { hasAccess balance usage config } } } }"""))["subject"]["entitlements"]
    assert {e["featureKey"]: (e["type"], e["value"]) for e in listed} == {
        "sso": ("BOOLEAN", {"hasAccess": True, "balance": None, "usage": None, "config": None}),
        "plan": ("STATIC", {"hasAccess": True, "balance": None, "usage": None, "config": cfg}),
        "ai": ("METERED", {"hasAccess": True, "balance": 70.0, "usage": 30.0, "config": None})}

    # subject i: sso if i even; plan if i % 3 == 0 (config {"seats": i}); ai unless i % 4 == 3,
    # with a grant of i + 1 unless i % 4 == 2; every subject uses 1 token
    expected: dict[tuple[str, str], tuple[str, float | None, Any]] = {}
    for i in range(20):
        s = f"s{i:02d}"
        if i % 2 == 0:
            await gql.ok(CREATE_ENT, s=s, input={"type": "BOOLEAN", "featureKey": "sso"})
            expected[s, "sso"] = ("GRANTED", None, None)
        if i % 3 == 0:
            await gql.ok(CREATE_ENT, s=s, input={"type": "STATIC", "featureKey": "plan", "config": {"seats": i}})
            expected[s, "plan"] = ("GRANTED", None, {"seats": i})
        if i % 4 != 3:
            await metered(gql, s, "ai", **day)
            left = 0.0
            if i % 4 != 2:
                await grant(gql, s, "ai", i + 1, "2024-01-15T00:00:00Z")
                left = float(i)  # i + 1 - 1
            expected[s, "ai"] = ("GRANTED" if left > 0 else "NO_BALANCE", left, None)
        await events(gql, s, ("2024-01-15T11:00:00Z", 1))
    feats = ["ai", "sso", "plan"]
    checks = [{"subjectKey": f"s{i:02d}", "featureKey": f} for i in range(20) for f in feats[i % 3:] + feats[:i % 3]]
    checks.insert(7, {"subjectKey": "ghost", "featureKey": "ai"})
    checks.append({"subjectKey": "s00", "featureKey": "nofeature"})
    got = (await gql.ok(CHECK, checks=checks))["checkAccess"]
    assert [(r["subjectKey"], r["featureKey"]) for r in got] == [(c["subjectKey"], c["featureKey"]) for c in checks]
    for r in got:
        reason, balance, config = expected.get((r["subjectKey"], r["featureKey"]), ("NO_ENTITLEMENT", None, None))
        assert (r["reason"], r["balance"], r["config"]) == (reason, balance, config), r
        assert r["hasAccess"] is (reason == "GRANTED")
    # s07, s11, s19 have no entitlement at all: no subject record either
    assert [r["reason"] for r in got if r["subjectKey"] == "s07"] == ["NO_ENTITLEMENT"] * 3


# 9. Exactness: decimal amounts, no drift
async def test_exact_amounts(gql: GQL) -> None:
    await meter(gql)
    await feature(gql, "ai")
    day = {"interval": "DAY", "anchor": "2024-01-15T00:00:00Z", "measureUsageFrom": "2024-01-15T00:00:00Z"}
    eff = "2024-01-15T00:00:00Z"
    for s in ("tenth", "third", "nano", "nanos", "big"):
        await metered(gql, s, "ai", **day)
    await grant(gql, "tenth", "ai", 1, eff)
    await events(gql, "tenth", *[(f"2024-01-15T11:00:{i:02d}Z", 0.1) for i in range(10)])
    assert await value(gql, "tenth", "ai") == {"hasAccess": False, "balance": 0.0, "usage": 1.0, "overage": 0.0,
                                               "config": None}
    await grant(gql, "third", "ai", 0.3, eff)
    await events(gql, "third", ("2024-01-15T11:00:00Z", 0.1), ("2024-01-15T11:01:00Z", 0.2))  # 0.1 + 0.2 == 0.3
    assert await value(gql, "third", "ai") == {"hasAccess": False, "balance": 0.0, "usage": 0.3, "overage": 0.0,
                                               "config": None}
    await grant(gql, "nano", "ai", 1e-9, eff)
    assert (await value(gql, "nano", "ai"))["balance"] == 1e-9
    assert (await value(gql, "nano", "ai"))["hasAccess"] is True  # tiny but strictly positive
    await events(gql, "nano", ("2024-01-15T11:00:00Z", 1e-9))
    assert (await value(gql, "nano", "ai"))["hasAccess"] is False
    await grant(gql, "nanos", "ai", 3e-9, eff)
    await events(gql, "nanos", *[(f"2024-01-15T11:0{i}:00Z", 1e-9) for i in range(3)])
    assert await bal(gql, "nanos", "ai") == (0.0, 3e-9, 0.0)
    g = await grant(gql, "big", "ai", 123456789.123456789, eff)
    assert g["amount"] == 123456789.123456789
    await events(gql, "big", ("2024-01-15T11:00:00Z", 0.123456789))
    assert await bal(gql, "big", "ai") == (123456789.0, 0.123456789, 0.0)
    # the amount crossed the API as the double 123456789.12345679 (JSON float): exactly 1e-9 is left
    await events(gql, "big", ("2024-01-15T11:00:00Z", 123456789))
    v = await value(gql, "big", "ai")
    assert (v["balance"], v["overage"], v["hasAccess"]) == (1e-9, 0.0, True)
    await events(gql, "big", ("2024-01-15T11:00:00Z", 1e-9))
    v = await value(gql, "big", "ai")
    assert (v["balance"], v["overage"], v["hasAccess"]) == (0.0, 0.0, False)


# 1b. A recurring monthly grant anchored Jan 31: recurrence is set (not added), after the rollover clamp
async def test_recurring_grant_at_month_end(gql: GQL, clock: Clock) -> None:
    await meter(gql)
    await feature(gql, "ai")
    clock.set("2024-01-31T00:00:00+00:00")
    await metered(gql, "c", "ai", interval="MONTH", anchor="2024-01-31T00:00:00Z")
    r = await grant(gql, "c", "ai", 1000, "2024-01-31T00:00:00Z", recurrence={"interval": "MONTH"},
                    maxRolloverAmount=200)
    assert r["nextRecurrence"] == "2024-01-31T00:00:00Z"
    clock.set("2024-02-10T00:01:00+00:00")
    await events(gql, "c", ("2024-02-10T00:00:00Z", 300))
    assert await bal(gql, "c", "ai") == (700.0, 300.0, 0.0)
    nxt = "query($id: ID!) { entitlement(id: $id) { ... on MeteredEntitlement { grants { nextRecurrence } } } }"
    ent_id = r["entitlementId"]
    assert (await gql.ok(nxt, id=ent_id))["entitlement"]["grants"] == [{"nextRecurrence": "2024-02-29T00:00:00Z"}]
    # Feb 29: the reset clamps 700 to 200, then the recurrence sets 1,000 (not 1,200)
    clock.set("2024-02-29T00:00:00+00:00")
    assert await bal(gql, "c", "ai") == (1000.0, 0.0, 0.0)
    clock.set("2024-02-29T00:00:01+00:00")
    assert (await gql.ok(nxt, id=ent_id))["entitlement"]["grants"] == [{"nextRecurrence": "2024-03-31T00:00:00Z"}]
    await events(gql, "c", ("2024-03-30T23:58:00Z", 1100))
    assert await bal(gql, "c", "ai", "2024-03-30T23:59:00Z") == (0.0, 1100.0, 100.0)
    # read at 23:59:59 = at ceil Mar 31 00:00: the recurrence there counts at once and pays the 100
    # (the reset there belongs to the next period, so the overage is not forgiven yet)
    assert await bal(gql, "c", "ai", "2024-03-30T23:59:59Z") == (900.0, 1100.0, 0.0)
    # Mar 31 (not Mar 29): reset forgives the overage, the grant is set to 1,000 again
    assert await bal(gql, "c", "ai", "2024-03-29T00:00:00Z") == (1000.0, 0.0, 0.0)
    clock.set("2024-03-31T00:00:00+00:00")
    assert await bal(gql, "c", "ai") == (1000.0, 0.0, 0.0)
