"""Subjects and features over GraphQL (docs/semantics.md §2)."""

from __future__ import annotations

from tests.conftest import GQL

CREATE = """mutation($input: CreateFeatureInput!) { createFeature(input: $input) {
  id key name metadata meterSlug meterGroupByFilters archivedAt createdAt updatedAt } }"""


async def test_create_and_read_feature(gql: GQL) -> None:
    data = await gql.ok(CREATE, input={"key": "sso", "name": "Single sign-on", "metadata": {"tier": "pro"}})
    f = data["createFeature"]
    assert f["key"] == "sso" and f["metadata"] == {"tier": "pro"} and f["archivedAt"] is None
    assert f["createdAt"] == "2024-01-15T12:00:30Z"
    got = await gql.ok("query($k: String!) { feature(idOrKey: $k) { id key } }", k="sso")
    assert got["feature"]["id"] == f["id"]
    got = await gql.ok("query($k: String!) { feature(idOrKey: $k) { key } }", k=f["id"])
    assert got["feature"]["key"] == "sso"


async def test_duplicate_key_conflicts_until_archived(gql: GQL) -> None:
    first = (await gql.ok(CREATE, input={"key": "ai-tokens", "name": "AI"}))["createFeature"]
    err = await gql.error(CREATE, "CONFLICT", input={"key": "ai-tokens", "name": "again"})
    assert err["extensions"]["conflictingEntityId"] == first["id"]
    archived = await gql.ok("mutation($id: ID!) { archiveFeature(id: $id) { archivedAt } }", id=first["id"])
    assert archived["archiveFeature"]["archivedAt"] == "2024-01-15T12:00:30Z"
    await gql.error("mutation($id: ID!) { archiveFeature(id: $id) { id } }", "NOT_FOUND", id=first["id"])
    again = (await gql.ok(CREATE, input={"key": "ai-tokens", "name": "AI v2"}))["createFeature"]
    assert again["id"] != first["id"]
    got = await gql.ok("{ feature(idOrKey: \"ai-tokens\") { id } }")
    assert got["feature"]["id"] == again["id"]
    live = await gql.ok("{ features { key } }")
    assert [f["key"] for f in live["features"]] == ["ai-tokens"]
    everything = await gql.ok("{ features(includeArchived: true, orderBy: CREATED_AT) { id } }")
    assert [f["id"] for f in everything["features"]] == [first["id"], again["id"]]


async def test_feature_validation(gql: GQL) -> None:
    for bad in ["", "UPPER", "a--b", "-a", "a" * 65, "with space"]:
        await gql.error(CREATE, "BAD_USER_INPUT", input={"key": bad, "name": "x"})
    await gql.error(CREATE, "NOT_FOUND", input={"key": "x", "name": "x", "meterSlug": "nope"})
    await gql.error(CREATE, "BAD_USER_INPUT", input={"key": "x", "name": "x", "meterGroupByFilters": {"a": "b"}})
    await gql.error(CREATE, "BAD_USER_INPUT", input={"key": "x", "name": "x", "metadata": [1]})
    await gql.error("{ features(limit: 0) { id } }", "BAD_USER_INPUT")


async def test_subjects(gql: GQL) -> None:
    up = """mutation($input: UpsertSubjectInput!) { upsertSubject(input: $input) {
      id key displayName metadata createdAt updatedAt } }"""
    s = (await gql.ok(up, input={"key": "customer-1", "displayName": "ACME"}))["upsertSubject"]
    again = (await gql.ok(up, input={"key": "customer-1", "metadata": {"a": 1}}))["upsertSubject"]
    assert again["id"] == s["id"] and again["displayName"] is None and again["metadata"] == {"a": 1}
    listed = await gql.ok("{ subjects { key } }")
    assert listed["subjects"] == [{"key": "customer-1"}]
    assert (await gql.ok("{ subject(idOrKey: \"customer-1\") { id } }"))["subject"]["id"] == s["id"]
    assert (await gql.ok("{ subject(idOrKey: \"nobody\") { id } }"))["subject"] is None
    await gql.error(up, "BAD_USER_INPUT", input={"key": "  "})
    assert (await gql.ok("mutation { deleteSubject(idOrKey: \"customer-1\") }"))["deleteSubject"] is True
    await gql.error("mutation { deleteSubject(idOrKey: \"customer-1\") }", "NOT_FOUND")


async def test_every_error_has_a_code(gql: GQL) -> None:
    await gql.error("{ nope }", "BAD_USER_INPUT")
    await gql.error("{ features(", "BAD_USER_INPUT")
    await gql.error("query($t: DateTime) { features { id } }", "BAD_USER_INPUT", t="yesterday")
