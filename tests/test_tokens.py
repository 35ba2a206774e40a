"""Subject tokens: what a token may and may not do (docs/semantics.md §8, contract SubjectToken)."""

from __future__ import annotations

import pytest

from creditgate.services import tokens as token_svc
from creditgate.services.runtime import Runtime
from tests.conftest import GQL, Clock
from tests.ent_helpers import CHECK, CREATE_ENT, feature, grant, meter, metered

MINT = """mutation($s: String!, $ttl: Int) {
  createSubjectToken(subjectKey: $s, ttlSeconds: $ttl) { token subjectKey expiresAt } }"""


@pytest.fixture
async def world(gql: GQL) -> dict[str, str]:
    await meter(gql)
    await feature(gql, "ai")
    await feature(gql, "sso", meter_slug=None)
    mine = await metered(gql, "me", "ai", interval="MONTH")
    await grant(gql, "me", "ai", 10, "2024-01-15T12:00:00Z")
    theirs = await metered(gql, "you", "ai", interval="MONTH")
    token = (await gql.ok(MINT, s="me", ttl=600))["createSubjectToken"]
    assert token["subjectKey"] == "me" and token["expiresAt"] == "2024-01-15T12:10:30Z"
    return {"token": token["token"], "mine": str(mine["id"]), "theirs": str(theirs["id"])}


async def test_token_reads_its_own_subject(gql: GQL, world: dict[str, str]) -> None:
    t = world["token"]
    got = await gql.ok("""{ entitlementValue(subjectKey: "me", entitlementIdOrFeatureKey: "ai") { balance }
      checkAccess(checks: [{subjectKey: "me", featureKey: "ai"}]) { reason }
      entitlements(subjectKey: "me") { id value { balance } ... on MeteredEntitlement { grants { amount }
        history(windowSize: DAY) { windowedHistory { usage } burndownHistory { balanceAtStart } } } }
      grants(subjectKey: "me") { amount }
      subject(idOrKey: "me") { entitlements { id } access(featureKey: "ai") { balance } } }""", t)
    assert got["entitlementValue"]["balance"] == 10.0 and got["checkAccess"][0]["reason"] == "GRANTED"
    assert got["entitlements"][0]["grants"] == [{"amount": 10.0}]
    one = await gql.ok("query($id: ID!) { entitlement(id: $id) { id } }", t, id=world["mine"])
    assert one["entitlement"]["id"] == world["mine"]


@pytest.mark.parametrize("query", [
    '{ entitlementValue(subjectKey: "you", entitlementIdOrFeatureKey: "ai") { balance } }',
    '{ checkAccess(checks: [{subjectKey: "me", featureKey: "ai"}, {subjectKey: "you", featureKey: "ai"}]) { reason } }',
    '{ entitlements { id } }',
    '{ entitlements(subjectKey: "you") { id } }',
    '{ grants { id } }',
    '{ grants(subjectKey: "you") { id } }',
    '{ features { id } }',
    '{ meters { id } }',
    '{ subjects { key } }',
    '{ subject(idOrKey: "you") { key } }',
    'mutation { createSubjectToken(subjectKey: "me") { token } }',
    'mutation { createEntitlement(subjectKey: "me", input: {type: BOOLEAN, featureKey: "sso"}) { id } }',
    'mutation { createFeature(input: {key: "x", name: "x"}) { id } }',
    'mutation { voidGrant(id: "x") { id } }',
])
async def test_token_forbidden(gql: GQL, world: dict[str, str], query: str) -> None:
    await gql.error(query, "FORBIDDEN", world["token"])


async def test_token_forbidden_by_id(gql: GQL, world: dict[str, str]) -> None:
    await gql.error("query($id: ID!) { entitlement(id: $id) { id } }", "FORBIDDEN", world["token"], id=world["theirs"])
    await gql.error("""mutation($id: ID!) { resetEntitlement(subjectKey: "me", entitlementId: $id) { id } }""",
                    "FORBIDDEN", world["token"], id=world["mine"])


async def test_expired_tampered_invalidated(gql: GQL, world: dict[str, str], clock: Clock, rt: Runtime) -> None:
    t = world["token"]
    q = '{ checkAccess(checks: [{subjectKey: "me", featureKey: "ai"}]) { reason } }'
    body, mac = t.rsplit(".", 1)
    await gql.error(q, "UNAUTHENTICATED", body + "." + ("A" if mac[0] != "A" else "B") + mac[1:])
    await gql.error(q, "UNAUTHENTICATED", "cgt_garbage")
    other = (await gql.ok(MINT, s="me", ttl=3600))["createSubjectToken"]["token"]
    clock.set("2024-01-15T12:10:30+00:00")
    await gql.error(q, "UNAUTHENTICATED", t)
    await gql.ok(q, other)
    listed = await token_svc.list_tokens(rt, "me")
    assert len(listed) == 2
    assert await token_svc.invalidate_tokens(rt, subject_key="me") == 2
    await gql.error(q, "UNAUTHENTICATED", other)
    # another process learns it from the database
    rt.extras.clear()
    await token_svc.refresh_invalidated(rt, force=True)
    await gql.error(q, "UNAUTHENTICATED", other)


async def test_ttl_bounds(gql: GQL, world: dict[str, str]) -> None:
    for ttl in (0, -5, 30 * 24 * 3600 + 1):
        await gql.error(MINT, "BAD_USER_INPUT", s="me", ttl=ttl)
    assert (await gql.ok(MINT, s="me", ttl=30 * 24 * 3600))["createSubjectToken"]["token"].startswith("cgt_")
    await gql.ok(CREATE_ENT, s="me", input={"type": "BOOLEAN", "featureKey": "sso"})
    got = await gql.ok(CHECK, checks=[{"subjectKey": "me", "featureKey": "sso"}])
    assert got["checkAccess"][0]["reason"] == "GRANTED"
