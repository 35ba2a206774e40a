"""Grants over GraphQL (docs/semantics.md §5, §6): fields, priorities, expiry, recurrence, rollover, voids."""

from __future__ import annotations

import pytest

from tests.conftest import GQL, Clock
from tests.ent_helpers import CREATE_ENT, CREATE_GRANT, events, feature, grant, meter, metered, value

VOID = "mutation($id: ID!) { voidGrant(id: $id) { id voidedAt } }"


@pytest.fixture
async def ent(gql: GQL) -> dict[str, object]:
    await meter(gql)
    await feature(gql, "ai")
    await feature(gql, "sso", meter_slug=None)
    return await metered(gql, "c", "ai", interval="MONTH", anchor="2024-01-01T00:00:00Z",
                         measureUsageFrom="2024-01-01T00:00:00Z")


async def test_grant_fields_and_checks(gql: GQL, ent: dict[str, object]) -> None:
    g = await grant(gql, "c", "ai", 100, "2024-01-15T12:00:40Z", duration="DAY", count=2, priority=5,
                    recurrence={"interval": "DAY"}, metadata={"k": "v"})
    assert g["effectiveAt"] == "2024-01-15T12:00:00Z" and g["expiresAt"] == "2024-01-17T12:00:00Z"
    assert g["recurrence"] == {"interval": "DAY", "anchor": "2024-01-15T12:00:00Z"}
    assert g["nextRecurrence"] == "2024-01-16T12:00:00Z" and g["priority"] == 5
    assert g["entitlementId"] == ent["id"] and g["voidedAt"] is None and g["metadata"] == {"k": "v"}
    base = {"amount": 1, "effectiveAt": "2024-01-15T12:00:00Z", "expiration": {"duration": "DAY", "count": 1}}
    for bad in [{"amount": 0}, {"amount": -1}, {"priority": 256}, {"priority": -1},
                {"expiration": {"duration": "DAY", "count": 0}}, {"minRolloverAmount": -1},
                {"minRolloverAmount": 5, "maxRolloverAmount": 2}, {"effectiveAt": "2023-12-31T00:00:00Z"},
                {"metadata": [1]}]:
        await gql.error(CREATE_GRANT, "BAD_USER_INPUT", s="c", e="ai", input={**base, **bad})
    await gql.error(CREATE_GRANT, "NOT_FOUND", s="c", e="nope", input=base)
    await gql.error(CREATE_GRANT, "NOT_FOUND", s="other", e="ai", input=base)
    await gql.ok(CREATE_ENT, s="c", input={"type": "BOOLEAN", "featureKey": "sso"})
    await gql.error(CREATE_GRANT, "BAD_USER_INPUT", s="c", e="sso", input=base)
    # a grant by entitlement id works too
    assert (await grant(gql, "c", str(ent["id"]), 1, "2024-01-15T12:00:00Z"))["amount"] == 1.0


async def test_priority_expiry_and_exact_decimals(gql: GQL, ent: dict[str, object], clock: Clock) -> None:
    await grant(gql, "c", "ai", 1, "2024-01-15T12:00:00Z", priority=1)
    late = await grant(gql, "c", "ai", 5, "2024-01-15T12:00:00Z", priority=2, duration="HOUR", count=1)
    await events(gql, "c", *[(f"2024-01-15T12:00:{i:02d}Z", 0.1) for i in range(10)])
    v = await value(gql, "c", "ai")
    assert v == {"hasAccess": True, "balance": 5.0, "usage": 1.0, "overage": 0.0, "config": None}
    await events(gql, "c", ("2024-01-15T12:00:50Z", 2))
    assert (await value(gql, "c", "ai"))["balance"] == 3.0
    clock.set("2024-01-15T13:00:00+00:00")  # the second grant expired, the first is empty
    v = await value(gql, "c", "ai")
    assert v["balance"] == 0.0 and v["hasAccess"] is False and v["usage"] == 3.0
    await events(gql, "c", ("2024-01-15T13:00:10Z", 4))
    clock.set("2024-01-15T13:00:30+00:00")
    assert (await value(gql, "c", "ai"))["overage"] == 4.0
    # a later grant in the same period pays the carried overage first
    clock.set("2024-01-15T14:00:00+00:00")
    await grant(gql, "c", "ai", 10, "2024-01-15T14:00:00Z")
    v = await value(gql, "c", "ai")
    assert v["balance"] == 6.0 and v["overage"] == 0.0
    listed = await gql.ok("{ grants(subjectKey: \"c\") { id } }")
    assert late["id"] in [g["id"] for g in listed["grants"]]


async def test_void(gql: GQL, ent: dict[str, object], clock: Clock) -> None:
    g = await grant(gql, "c", "ai", 10, "2024-01-15T12:00:00Z")
    await events(gql, "c", ("2024-01-15T12:00:10Z", 3))
    clock.set("2024-01-15T12:30:40+00:00")
    voided = (await gql.ok(VOID, id=g["id"]))["voidGrant"]
    assert voided["voidedAt"] == "2024-01-15T12:30:00Z"
    await gql.error(VOID, "BAD_USER_INPUT", id=g["id"])
    await gql.error(VOID, "NOT_FOUND", id="nope")
    v = await value(gql, "c", "ai")
    assert v["balance"] == 0.0 and v["usage"] == 3.0
    assert (await value(gql, "c", "ai", at="2024-01-15T12:20:00Z"))["balance"] == 7.0
    listed = await gql.ok("query($id: ID!) { entitlement(id: $id) { ... on MeteredEntitlement { "
                          "all: grants { id } live: grants(includeVoided: false) { id } } } }", id=ent["id"])
    assert len(listed["entitlement"]["all"]) == 1 and listed["entitlement"]["live"] == []


async def test_recurrence_sets_amount_once(gql: GQL, ent: dict[str, object], clock: Clock) -> None:
    await grant(gql, "c", "ai", 10, "2024-01-15T00:00:00Z", recurrence={"interval": "DAY"}, duration="MONTH")
    await events(gql, "c", ("2024-01-15T10:00:00Z", 4))
    clock.set("2024-01-15T23:59:00+00:00")
    assert (await value(gql, "c", "ai"))["balance"] == 6.0
    clock.set("2024-01-16T00:00:00+00:00")
    assert (await value(gql, "c", "ai"))["balance"] == 10.0  # set, not added
    await events(gql, "c", ("2024-01-16T05:00:00Z", 25))
    clock.set("2024-01-16T06:00:00+00:00")
    v = await value(gql, "c", "ai")
    assert v["balance"] == 0.0 and v["overage"] == 15.0
    clock.set("2024-01-17T06:00:00+00:00")  # recurs, then pays the carried overage
    v = await value(gql, "c", "ai")
    assert v["balance"] == 0.0 and v["overage"] == 5.0


async def test_rollover_at_automatic_reset(gql: GQL, ent: dict[str, object], clock: Clock) -> None:
    await grant(gql, "c", "ai", 100, "2024-01-15T00:00:00Z", minRolloverAmount=10, maxRolloverAmount=50)
    await grant(gql, "c", "ai", 100, "2024-01-15T00:00:00Z", priority=2)
    await events(gql, "c", ("2024-01-20T00:00:00Z", 30))
    clock.set("2024-02-01T00:00:00+00:00")
    v = await value(gql, "c", "ai")
    # first grant: 70 left, clamped to 50; second grant: 100, no rollover allowance: 0
    assert v == {"hasAccess": True, "balance": 50.0, "usage": 0.0, "overage": 0.0, "config": None}
    assert (await value(gql, "c", "ai", at="2024-01-31T23:00:00Z"))["balance"] == 170.0


async def test_out_of_range_and_over_precise_amounts(gql: GQL, ent: dict[str, object]) -> None:
    base = {"effectiveAt": "2024-01-15T12:00:00Z", "expiration": {"duration": "DAY", "count": 1}}
    for amount in (1e300, 1e26):
        err = await gql.error(CREATE_GRANT, "BAD_USER_INPUT", s="c", e="ai", input={**base, "amount": amount})
        assert "out of range" in err["message"]
    # more than 12 decimal places: rounded the same way on both databases
    g = await grant(gql, "c", "ai", 0.1234567890123456, "2024-01-15T12:00:00Z")
    assert g["amount"] == 0.123456789012


async def test_listing_hides_grants_of_deleted_entitlements_only(gql: GQL, ent: dict[str, object]) -> None:
    g = await grant(gql, "c", "ai", 10, "2024-01-15T12:00:00Z")
    await gql.ok(VOID, id=g["id"])
    listing = 'query($d: Boolean) { grants(subjectKey: "c", includeDeleted: $d) { id voidedAt } }'
    assert [x["id"] for x in (await gql.ok(listing, d=False))["grants"]] == [g["id"]]  # voided, still listed
    await gql.ok('mutation($id: ID!) { deleteEntitlement(subjectKey: "c", entitlementId: $id) }', id=ent["id"])
    assert (await gql.ok(listing, d=False))["grants"] == []
    assert [x["id"] for x in (await gql.ok(listing, d=True))["grants"]] == [g["id"]]
