"""Meters over GraphQL (docs/semantics.md §1): create, list, read, delete and their rules."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from creditgate.services.auth import sign_token
from creditgate.services.runtime import Runtime
from tests.conftest import GQL, Clock

FIELDS = "id slug description eventType aggregation valueProperty groupBy windowSize"
CREATE = f"mutation($input: CreateMeterInput!) {{ createMeter(input: $input) {{ {FIELDS} }} }}"
DELETE = "mutation($m: String!) { deleteMeter(idOrSlug: $m) }"
GET = f"query($m: String!) {{ meter(idOrSlug: $m) {{ {FIELDS} }} }}"


def meter(slug: str = "tokens", **extra: Any) -> dict[str, Any]:
    return {"slug": slug, "eventType": "prompt", "aggregation": "SUM", "valueProperty": "$.tokens", **extra}


async def test_create_read_list(gql: GQL) -> None:
    created = (await gql.ok(CREATE, input=meter(description="LLM tokens",
                                                groupBy={"model": "$.model", "region": "$['geo'].region"})))
    m = created["createMeter"]
    assert m["slug"] == "tokens" and m["eventType"] == "prompt" and m["aggregation"] == "SUM"
    assert m["valueProperty"] == "$.tokens" and m["windowSize"] == "MINUTE" and m["description"] == "LLM tokens"
    assert m["groupBy"] == {"model": "$.model", "region": "$['geo'].region"}
    assert (await gql.ok(GET, m="tokens"))["meter"] == m
    assert (await gql.ok(GET, m=m["id"]))["meter"] == m
    assert (await gql.ok(GET, m="nope"))["meter"] is None
    count = (await gql.ok(CREATE, input={"slug": "calls", "eventType": "api", "aggregation": "COUNT",
                                         "windowSize": "HOUR"}))["createMeter"]
    assert count["valueProperty"] is None and count["groupBy"] == {} and count["windowSize"] == "HOUR"
    listed = (await gql.ok("{ meters { slug } }"))["meters"]
    assert [x["slug"] for x in listed] == ["calls", "tokens"]


async def test_every_aggregation(gql: GQL) -> None:
    for agg in ["SUM", "AVG", "MIN", "MAX", "UNIQUE_COUNT"]:
        got = (await gql.ok(CREATE, input=meter(agg.lower(), aggregation=agg, valueProperty="$.v[0]")))
        assert got["createMeter"]["aggregation"] == agg
        await gql.error(CREATE, "BAD_USER_INPUT", input=meter(agg.lower() + "_x", aggregation=agg,
                                                              valueProperty=None))
    await gql.error(CREATE, "BAD_USER_INPUT", input=meter("x", aggregation="NOPE"))


async def test_slug_rules(gql: GQL) -> None:
    for bad in ["", "Upper", "a-b", "_a", "a_", "a__b", "with space", "a" * 64]:
        await gql.error(CREATE, "BAD_USER_INPUT", input=meter(bad))
    assert (await gql.ok(CREATE, input=meter("a" * 63)))["createMeter"]["slug"] == "a" * 63
    assert (await gql.ok(CREATE, input=meter("a1_b2_c3")))["createMeter"]


async def test_field_rules(gql: GQL) -> None:
    await gql.error(CREATE, "BAD_USER_INPUT", input=meter(eventType=""))
    await gql.error(CREATE, "BAD_USER_INPUT", input=meter(eventType="  "))
    for path in ["tokens", ".tokens", "$.", "$..x", "$[*]", "$.a[", "$['a'"]:
        await gql.error(CREATE, "BAD_USER_INPUT", input=meter(valueProperty=path))
    for groups in [{"1abc": "$.a"}, {"a-b": "$.a"}, {"a": "a"}, {"a": 1}, ["$.a"], {"subject": "$.s"}]:
        await gql.error(CREATE, "BAD_USER_INPUT", input=meter(groupBy=groups))
    await gql.error(CREATE, "BAD_USER_INPUT", input=meter(windowSize="WEEK"))
    ok = await gql.ok(CREATE, input=meter(valueProperty='$["a b"][2].c', groupBy={"_A9": "$"}))
    assert ok["createMeter"]["groupBy"] == {"_A9": "$"}


async def test_duplicate_slug_conflicts_until_deleted(gql: GQL) -> None:
    first = (await gql.ok(CREATE, input=meter()))["createMeter"]
    err = await gql.error(CREATE, "CONFLICT", input=meter(eventType="other"))
    assert err["extensions"]["conflictingEntityId"] == first["id"]
    assert (await gql.ok(DELETE, m="tokens"))["deleteMeter"] is True
    assert (await gql.ok(GET, m="tokens"))["meter"] is None
    assert (await gql.ok(GET, m=first["id"]))["meter"] is None
    await gql.error(DELETE, "NOT_FOUND", m="tokens")
    await gql.error(DELETE, "NOT_FOUND", m=first["id"])
    again = (await gql.ok(CREATE, input=meter()))["createMeter"]
    assert again["id"] != first["id"]
    assert (await gql.ok("{ meters { id } }"))["meters"] == [{"id": again["id"]}]


async def test_delete_refused_while_a_live_feature_uses_it(gql: GQL, clock: Clock) -> None:
    await gql.ok(CREATE, input=meter())
    f = (await gql.ok("""mutation { createFeature(input: {key: "ai", name: "AI", meterSlug: "tokens"}) { id } }"""))
    fid = f["createFeature"]["id"]
    err = await gql.error(DELETE, "CONFLICT", m="tokens")
    assert err["extensions"]["conflictingEntityId"] == fid
    await gql.ok("mutation($id: ID!) { archiveFeature(id: $id) { id } }", id=fid)
    assert (await gql.ok(DELETE, m="tokens"))["deleteMeter"] is True


async def test_meters_are_admin_only(gql: GQL, rt: Runtime, clock: Clock) -> None:
    token = sign_token(rt, "tok1", "customer-1", clock() + timedelta(hours=1))
    await gql.error("{ meters { id } }", "FORBIDDEN", token=token)
    await gql.error(GET, "FORBIDDEN", token=token, m="x")
    await gql.error(CREATE, "FORBIDDEN", token=token, input=meter())
    await gql.error(DELETE, "FORBIDDEN", token=token, m="x")
    await gql.error("""mutation { ingestEvents(events: []) { accepted } }""", "FORBIDDEN", token=token)
    await gql.error("""{ meterQuery(idOrSlug: "x") { value } }""", "FORBIDDEN", token=token)
