"""Entitlements over GraphQL (docs/semantics.md §3, §4): types, field checks, uniqueness, deletion, resets."""

from __future__ import annotations

import pytest

from tests.conftest import GQL, Clock
from tests.ent_helpers import CREATE_ENT, ENT_FIELDS, events, feature, grant, meter, metered, value


@pytest.fixture
async def setup(gql: GQL) -> None:
    await meter(gql)
    await feature(gql, "ai")
    await feature(gql, "sso", meter_slug=None)


async def test_three_types(gql: GQL, setup: None) -> None:
    b = (await gql.ok(CREATE_ENT, s="c1", input={"type": "BOOLEAN", "featureKey": "sso"}))["createEntitlement"]
    assert b["type"] == "BOOLEAN" and b["subjectKey"] == "c1" and b["deletedAt"] is None
    assert b["createdAt"] == "2024-01-15T12:00:30Z"
    s = (await gql.ok(CREATE_ENT, s="c2", input={"type": "STATIC", "featureKey": "sso",
                                                 "config": {"seats": 5}}))["createEntitlement"]
    assert s["config"] == {"seats": 5}
    m = await metered(gql, "c1", "ai")
    assert m["measureUsageFrom"] == "2024-01-15T12:00:00Z"
    assert m["usagePeriod"] == {"interval": "MONTH", "anchor": "2024-01-15T12:00:00Z"}
    assert m["currentUsagePeriod"] == {"from": "2024-01-15T12:00:00Z", "to": "2024-02-15T12:00:00Z"}
    assert m["lastReset"] == "2024-01-15T12:00:00Z" and m["isSoftLimit"] is False
    assert await value(gql, "c1", "sso") == {"hasAccess": True, "balance": None, "usage": None, "overage": None,
                                             "config": None}
    assert (await value(gql, "c2", "sso"))["config"] == {"seats": 5}
    assert await value(gql, "c1", "ai") == {"hasAccess": False, "balance": 0.0, "usage": 0.0, "overage": 0.0,
                                            "config": None}
    subj = await gql.ok("""{ subject(idOrKey: "c1") { entitlements { id type featureKey value { hasAccess } } } }""")
    assert sorted(e["featureKey"] for e in subj["subject"]["entitlements"]) == ["ai", "sso"]
    one = await gql.ok("query($id: ID!) { entitlement(id: $id) { " + ENT_FIELDS + " feature { key } } }", id=m["id"])
    assert one["entitlement"]["feature"]["key"] == "ai"


async def test_field_checks(gql: GQL, setup: None) -> None:
    bad = [
        {"type": "BOOLEAN", "featureKey": "sso", "config": {"a": 1}},
        {"type": "BOOLEAN", "featureKey": "sso", "usagePeriod": {"interval": "DAY"}},
        {"type": "BOOLEAN", "featureKey": "sso", "isSoftLimit": True},
        {"type": "STATIC", "featureKey": "sso"},
        {"type": "STATIC", "featureKey": "sso", "config": [1, 2]},
        {"type": "METERED", "featureKey": "sso", "usagePeriod": {"interval": "DAY"}},
        {"type": "METERED", "featureKey": "ai"},
        {"type": "METERED", "featureKey": "ai", "usagePeriod": {"interval": "DAY"}, "config": {}},
        {"type": "METERED", "featureKey": "ai", "usagePeriod": {"interval": "DAY"}, "issueAfterResetPriority": 2},
        {"type": "METERED", "featureKey": "ai", "usagePeriod": {"interval": "DAY"}, "issueAfterReset": 0},
        {"type": "METERED", "featureKey": "ai", "usagePeriod": {"interval": "DAY"}, "issueAfterReset": 5,
         "issueAfterResetPriority": 256},
        {"type": "BOOLEAN", "featureKey": "sso", "metadata": [1]},
    ]
    for inp in bad:
        await gql.error(CREATE_ENT, "BAD_USER_INPUT", s="c", input=inp)
    await gql.error(CREATE_ENT, "NOT_FOUND", s="c", input={"type": "BOOLEAN", "featureKey": "nope"})
    await gql.error(CREATE_ENT, "BAD_USER_INPUT", s=" ", input={"type": "BOOLEAN", "featureKey": "sso"})


async def test_one_active_per_subject_feature(gql: GQL, setup: None, clock: Clock) -> None:
    first = (await gql.ok(CREATE_ENT, s="c", input={"type": "BOOLEAN", "featureKey": "sso"}))["createEntitlement"]
    err = await gql.error(CREATE_ENT, "CONFLICT", s="c", input={"type": "BOOLEAN", "featureKey": "sso"})
    assert err["extensions"]["conflictingEntityId"] == first["id"]
    delete = "mutation($s: String!, $id: ID!) { deleteEntitlement(subjectKey: $s, entitlementId: $id) }"
    await gql.error(delete, "NOT_FOUND", s="other", id=first["id"])
    clock.set("2024-01-15T13:00:00+00:00")
    assert (await gql.ok(delete, s="c", id=first["id"]))["deleteEntitlement"] is True
    await gql.error(delete, "NOT_FOUND", s="c", id=first["id"])
    # visibility: before the deletion it is still there (audit); at or after, not
    assert (await value(gql, "c", "sso", at="2024-01-15T12:30:00Z"))["hasAccess"] is True
    await gql.error("{ entitlementValue(subjectKey: \"c\", entitlementIdOrFeatureKey: \"sso\") { hasAccess } }",
                    "NOT_FOUND")
    clock.set("2024-01-15T14:00:00+00:00")
    second = (await gql.ok(CREATE_ENT, s="c", input={"type": "STATIC", "featureKey": "sso",
                                                     "config": {}}))["createEntitlement"]
    # at 12:30 both are visible (the second was deleted never, the first after 12:30): none created
    # by 12:30 except the first -> the first; at 14:30 the second
    got = await gql.ok("""{ a: checkAccess(checks: [{subjectKey: "c", featureKey: "sso"}], at: "2024-01-15T12:30:00Z") {
      entitlementId } b: checkAccess(checks: [{subjectKey: "c", featureKey: "sso"}]) { entitlementId type } }""")
    assert got["a"][0]["entitlementId"] == first["id"]
    assert got["b"][0] == {"entitlementId": second["id"], "type": "STATIC"}
    # before either existed (a backfill read): the first created
    got = await gql.ok("""{ checkAccess(checks: [{subjectKey: "c", featureKey: "sso"}], at: "2024-01-01T00:00:00Z") {
      entitlementId } }""")
    assert got["checkAccess"][0]["entitlementId"] == first["id"]
    listed = await gql.ok("{ entitlements { id } all: entitlements(includeDeleted: true) { id } }")
    assert [e["id"] for e in listed["entitlements"]] == [second["id"]]
    assert len(listed["all"]) == 2
    subj = await gql.ok("""{ subject(idOrKey: "c") { entitlements(includeDeleted: true) { id deletedAt } } }""")
    assert len(subj["subject"]["entitlements"]) == 2


async def test_issue_after_reset(gql: GQL, setup: None, clock: Clock) -> None:
    ent = await metered(gql, "c", "ai", interval="DAY", issueAfterReset=10, issueAfterResetPriority=3)
    assert ent["issueAfterReset"] == 10.0 and ent["issueAfterResetPriority"] == 3
    grants = await gql.ok("query($id: ID!) { entitlement(id: $id) { ... on MeteredEntitlement { grants { "
                          "amount priority effectiveAt expiresAt minRolloverAmount maxRolloverAmount metadata } } } }",
                          id=ent["id"])
    assert grants["entitlement"]["grants"] == [{
        "amount": 10.0, "priority": 3, "effectiveAt": "2024-01-15T12:00:00Z", "expiresAt": "2124-01-15T12:00:00Z",
        "minRolloverAmount": 10.0, "maxRolloverAmount": 10.0, "metadata": {"issueAfterReset": "true"}}]
    await events(gql, "c", ("2024-01-15T12:00:40Z", 4))
    assert (await value(gql, "c", "ai"))["balance"] == 6.0
    clock.set("2024-01-16T12:00:00+00:00")
    v = await value(gql, "c", "ai")
    assert v["balance"] == 10.0 and v["usage"] == 0.0


async def test_manual_reset(gql: GQL, setup: None, clock: Clock) -> None:
    ent = await metered(gql, "c", "ai", interval="MONTH")
    await grant(gql, "c", "ai", 100, "2024-01-15T12:00:00Z", minRolloverAmount=0, maxRolloverAmount=30)
    await events(gql, "c", ("2024-01-15T12:05:00Z", 40))
    reset = """mutation($id: ID!, $input: ResetEntitlementInput) { resetEntitlement(subjectKey: "c", entitlementId: $id,
      input: $input) { id lastReset currentUsagePeriod { from to } usagePeriod { anchor } } }"""
    await gql.error(reset, "BAD_USER_INPUT", id=ent["id"], input={"effectiveAt": "2024-01-15T12:00:00Z"})
    clock.set("2024-01-20T00:00:00+00:00")
    await gql.error(reset, "BAD_USER_INPUT", id=ent["id"], input={"effectiveAt": "2024-01-21T00:00:00Z"})
    await gql.error(reset, "NOT_FOUND", id="nope", input=None)
    got = (await gql.ok(reset, id=ent["id"], input={"effectiveAt": "2024-01-19T10:30:45Z"}))["resetEntitlement"]
    assert got["lastReset"] == "2024-01-19T10:30:00Z"
    assert got["usagePeriod"]["anchor"] == "2024-01-19T10:30:00Z"
    assert got["currentUsagePeriod"] == {"from": "2024-01-19T10:30:00Z", "to": "2024-02-19T10:30:00Z"}
    v = await value(gql, "c", "ai")
    assert v == {"hasAccess": True, "balance": 30.0, "usage": 0.0, "overage": 0.0, "config": None}
    # the past is not rewritten
    assert (await value(gql, "c", "ai", at="2024-01-18T00:00:00Z"))["balance"] == 60.0
    await gql.error(reset, "BAD_USER_INPUT", id=ent["id"], input={"effectiveAt": "2024-01-19T10:00:00Z"})
    got = (await gql.ok(reset, id=ent["id"], input={"retainAnchor": True}))["resetEntitlement"]
    assert got["lastReset"] == "2024-01-20T00:00:00Z"
    assert got["currentUsagePeriod"]["to"] == "2024-02-19T10:30:00Z"
    sso = (await gql.ok(CREATE_ENT, s="c", input={"type": "BOOLEAN", "featureKey": "sso"}))["createEntitlement"]
    await gql.error(reset, "BAD_USER_INPUT", id=sso["id"], input=None)
