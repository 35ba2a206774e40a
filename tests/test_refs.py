"""GraphQL: entitlements by id or feature key and features by id or key (docs/semantics.md §2, §3), as in REST."""

from __future__ import annotations

from tests.conftest import GQL
from tests.ent_helpers import events, feature, grant, meter, metered

GRANTS = 'query($e: ID, $s: String) { grants(subjectKey: $s, entitlementId: $e) { id entitlementId } }'
ARCHIVE = "mutation($id: ID!) { archiveFeature(id: $id) { id archivedAt } }"
RESET = """mutation($s: String!, $e: ID!) {
  resetEntitlement(subjectKey: $s, entitlementId: $e) { id lastReset } }"""


async def test_grants_and_reset_by_feature_key(gql: GQL) -> None:
    await meter(gql)
    await feature(gql, "ai")
    ent = await metered(gql, "c", "ai", interval="MONTH", anchor="2024-01-01T00:00:00Z",
                        measureUsageFrom="2024-01-01T00:00:00Z")
    g = await grant(gql, "c", "ai", 10, "2024-01-15T12:00:00Z")
    for ref in (ent["id"], "ai"):
        assert (await gql.ok(GRANTS, s="c", e=ref))["grants"] == [{"id": g["id"], "entitlementId": ent["id"]}]
    assert (await gql.ok(GRANTS, s="other", e="ai"))["grants"] == []
    assert (await gql.ok(GRANTS, s="c", e="nope"))["grants"] == []
    await events(gql, "c", ("2024-01-15T11:00:00Z", 3))
    reset = (await gql.ok(RESET, s="c", e="ai"))["resetEntitlement"]
    assert reset == {"id": ent["id"], "lastReset": "2024-01-15T12:00:00Z"}
    await gql.error(RESET, "NOT_FOUND", s="other", e="ai")


async def test_archive_feature_by_key_or_id(gql: GQL) -> None:
    a = await feature(gql, "sso", meter_slug=None)
    archived = (await gql.ok(ARCHIVE, id="sso"))["archiveFeature"]
    assert archived["id"] == a["id"] and archived["archivedAt"]
    await gql.error(ARCHIVE, "NOT_FOUND", id="sso")
    await gql.error(ARCHIVE, "NOT_FOUND", id=a["id"])
    b = await feature(gql, "sso", meter_slug=None)
    assert (await gql.ok(ARCHIVE, id=b["id"]))["archiveFeature"]["id"] == b["id"]
