"""The text rule (services/validation.py) through both APIs, on both backends: text PostgreSQL cannot store
(NUL, lone surrogates) or too long is BAD_USER_INPUT / 400 wherever it arrives, lookups included, and
nothing is stored."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.conftest import GQL

NUL = "a\x00b"
SURROGATE = "a\ud800b"

F = "mutation($i: CreateFeatureInput!) { createFeature(input: $i) { id } }"
SUBJ = "mutation($i: UpsertSubjectInput!) { upsertSubject(input: $i) { id } }"
METER = "mutation($i: CreateMeterInput!) { createMeter(input: $i) { id } }"
ENT = "mutation($s: String!, $i: CreateEntitlementInput!) { createEntitlement(subjectKey: $s, input: $i) { id } }"
GRANT = """mutation($s: String!, $r: String!, $i: CreateGrantInput!) {
  createGrant(subjectKey: $s, entitlementIdOrFeatureKey: $r, input: $i) { id } }"""
INGEST = "mutation($e: [CloudEventInput!]!) { ingestEvents(events: $e) { accepted } }"
CHECK = "query($c: [AccessCheckInput!]!) { checkAccess(checks: $c) { hasAccess } }"
VALUE = """query($s: String!, $r: String!) {
  entitlementValue(subjectKey: $s, entitlementIdOrFeatureKey: $r) { hasAccess } }"""
GRANT_IN = {"amount": 10, "effectiveAt": "2024-01-15T00:00:00Z", "expiration": {"duration": "DAY", "count": 1}}


def feature(**kw: Any) -> dict[str, Any]:
    return {"key": "f1", "name": "Feature", **kw}


def meter(**kw: Any) -> dict[str, Any]:
    return {"slug": "m1", "eventType": "e", "aggregation": "COUNT", **kw}


def event(**kw: Any) -> dict[str, Any]:
    return {"id": "1", "source": "s", "type": "t", "subject": "c", **kw}


def q(text: str) -> str:
    """Text as a URL path segment or query value."""
    return text.replace("\x00", "%00")


# (case, GraphQL document, its variables, REST method, REST path, REST body)
Case = tuple[str, str, dict[str, Any], str, str, Any]


def cases(bad: str) -> list[Case]:
    return [
        ("feature name", F, {"i": feature(name=bad)}, "POST", "/features", feature(name=bad)),
        ("feature metadata value", F, {"i": feature(metadata={"a": [{"b": bad}]})},
         "POST", "/features", feature(metadata={"a": [{"b": bad}]})),
        ("feature metadata key", F, {"i": feature(metadata={bad: 1})}, "POST", "/features", feature(metadata={bad: 1})),
        ("feature meterSlug", F, {"i": feature(meterSlug=bad)}, "POST", "/features", feature(meterSlug=bad)),
        ("feature group filter", F, {"i": feature(meterSlug="m1", meterGroupByFilters={"g": bad})},
         "POST", "/features", feature(meterSlug="m1", meterGroupByFilters={"g": bad})),
        ("subject key", SUBJ, {"i": {"key": bad}}, "POST", "/subjects", [{"key": bad}]),
        ("subject display name", SUBJ, {"i": {"key": "c", "displayName": bad}},
         "POST", "/subjects", [{"key": "c", "displayName": bad}]),
        ("subject metadata", SUBJ, {"i": {"key": "c", "metadata": {"k": bad}}},
         "POST", "/subjects", [{"key": "c", "metadata": {"k": bad}}]),
        ("meter description", METER, {"i": meter(description=bad)}, "POST", "/meters", meter(description=bad)),
        ("meter event type", METER, {"i": meter(eventType=bad)}, "POST", "/meters", meter(eventType=bad)),
        ("meter group path", METER, {"i": meter(groupBy={"g": f"$.{bad}"})},
         "POST", "/meters", meter(groupBy={"g": f"$.{bad}"})),
        ("meter value property", METER, {"i": meter(aggregation="SUM", valueProperty=f"$['{bad}']")},
         "POST", "/meters", meter(aggregation="SUM", valueProperty=f"$['{bad}']")),
        ("deleteMeter", "mutation($x: String!) { deleteMeter(idOrSlug: $x) }", {"x": bad},
         "DELETE", f"/meters/{q(bad)}", None),
        ("meter lookup", "query($x: String!) { meter(idOrSlug: $x) { id } }", {"x": bad},
         "GET", f"/meters/{q(bad)}", None),
        ("meter query subject",
         "query($x: String!) { meterQuery(idOrSlug: \"m1\", input: {subjects: [$x]}) { value } }", {"x": bad},
         "GET", f"/meters/m1/query?subject={q(bad)}", None),
        ("deleteSubject", "mutation($x: String!) { deleteSubject(idOrKey: $x) }", {"x": bad},
         "DELETE", f"/subjects/{q(bad)}", None),
        ("subject lookup", "query($x: String!) { subject(idOrKey: $x) { id } }", {"x": bad},
         "GET", f"/subjects/{q(bad)}", None),
        ("feature lookup", "query($x: String!) { feature(idOrKey: $x) { id } }", {"x": bad},
         "GET", f"/features/{q(bad)}", None),
        ("archiveFeature", "mutation($x: ID!) { archiveFeature(id: $x) { id } }", {"x": bad},
         "DELETE", f"/features/{q(bad)}", None),
        ("checkAccess subject", CHECK, {"c": [{"subjectKey": bad, "featureKey": "f1"}]},
         "GET", f"/subjects/{q(bad)}/entitlements/f1/value", None),
        ("checkAccess feature", CHECK, {"c": [{"subjectKey": "c", "featureKey": bad}]},
         "GET", f"/subjects/c/entitlements/{q(bad)}/value", None),
        ("entitlementValue ref", VALUE, {"s": "c", "r": bad},
         "GET", f"/subjects/c/entitlements/{q(bad)}/value", None),
        ("entitlement feature key", ENT, {"s": "c", "i": {"type": "BOOLEAN", "featureKey": bad}},
         "POST", "/subjects/c/entitlements", {"type": "boolean", "featureKey": bad}),
        ("entitlement subject key", ENT, {"s": bad, "i": {"type": "BOOLEAN", "featureKey": "f1"}},
         "POST", f"/subjects/{q(bad)}/entitlements", {"type": "boolean", "featureKey": "f1"}),
        ("entitlement metadata", ENT, {"s": "c", "i": {"type": "BOOLEAN", "featureKey": "f1", "metadata": {"k": bad}}},
         "POST", "/subjects/c/entitlements", {"type": "boolean", "featureKey": "f1", "metadata": {"k": bad}}),
        ("static config", ENT, {"s": "c", "i": {"type": "STATIC", "featureKey": "f1", "config": {"k": bad}}},
         "POST", "/subjects/c/entitlements", {"type": "static", "featureKey": "f1", "config": {"k": bad}}),
        ("entitlement lookup", "query($x: ID!) { entitlement(id: $x) { id } }", {"x": bad},
         "GET", f"/subjects/c/entitlements/{q(bad)}", None),
        ("entitlements of subject", "query($x: String!) { entitlements(subjectKey: $x) { id } }", {"x": bad},
         "GET", f"/subjects/{q(bad)}/entitlements", None),
        ("deleteEntitlement", "mutation($x: ID!) { deleteEntitlement(subjectKey: \"c\", entitlementId: $x) }",
         {"x": bad}, "DELETE", f"/subjects/c/entitlements/{q(bad)}", None),
        ("resetEntitlement", "mutation($x: ID!) { resetEntitlement(subjectKey: \"c\", entitlementId: $x) { id } }",
         {"x": bad}, "POST", f"/subjects/c/entitlements/{q(bad)}/reset", {}),
        ("grant ref", GRANT, {"s": "c", "r": bad, "i": GRANT_IN},
         "POST", f"/subjects/c/entitlements/{q(bad)}/grants", GRANT_IN),
        ("grant metadata", GRANT, {"s": "c", "r": "f1", "i": {**GRANT_IN, "metadata": {"k": bad}}},
         "POST", "/subjects/c/entitlements/f1/grants", {**GRANT_IN, "metadata": {"k": bad}}),
        ("grants of subject", "query($x: String!) { grants(subjectKey: $x) { id } }",
         {"x": bad}, "GET", f"/subjects/{q(bad)}/entitlements/f1/grants", None),
        ("voidGrant", "mutation($x: ID!) { voidGrant(id: $x) { id } }", {"x": bad},
         "DELETE", f"/grants/{q(bad)}", None),
        ("subject token", "mutation($x: String!) { createSubjectToken(subjectKey: $x) { token } }", {"x": bad},
         "POST", "/portal/tokens", {"subject": bad}),
        ("event id", INGEST, {"e": [event(id=bad)]}, "POST", "/events", [event(id=bad)]),
        ("event source", INGEST, {"e": [event(source=bad)]}, "POST", "/events", [event(source=bad)]),
        ("event type", INGEST, {"e": [event(type=bad)]}, "POST", "/events", [event(type=bad)]),
        ("event subject", INGEST, {"e": [event(subject=bad)]}, "POST", "/events", [event(subject=bad)]),
        ("event data", INGEST, {"e": [event(data={"k": {"n": [bad]}})]},
         "POST", "/events", [event(data={"k": {"n": [bad]}})]),
        ("event data key", INGEST, {"e": [event(data={bad: 1})]}, "POST", "/events", [event(data={bad: 1})]),
    ]


NOTHING = "{ features(includeArchived: true) { id } subjects { id } meters { id } entitlements { id } grants { id } }"


async def assert_refused(gql: GQL, http: httpx.AsyncClient, case: Case) -> None:
    name, doc, variables, method, path, body = case
    # JSON with \\u escapes, so that lone surrogates travel as JSON allows
    raw = json.dumps({"query": doc, "variables": variables}).encode()
    resp = await http.post("/graphql", content=raw, headers={"content-type": "application/json"})
    got = resp.json()
    codes = [e["extensions"]["code"] for e in got.get("errors") or []]
    assert codes == ["BAD_USER_INPUT"], (name, got)
    if SURROGATE in path:
        return  # a URL cannot carry a lone surrogate (percent-encoded UTF-8 decodes to valid text)
    content = None if body is None else json.dumps(body).encode()
    resp = await http.request(method, "/api/v1" + path, content=content,
                              headers={"content-type": "application/json"} if content else {})
    assert resp.status_code == 400, (name, resp.status_code, resp.text)
    assert resp.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("bad", [NUL, SURROGATE], ids=["nul", "surrogate"])
async def test_unstorable_text_is_bad_input_everywhere(gql: GQL, http: httpx.AsyncClient, bad: str) -> None:
    for case in cases(bad):
        await assert_refused(gql, http, case)
    assert await gql.ok(NOTHING) == {"features": [], "subjects": [], "meters": [], "entitlements": [], "grants": []}
    events = await http.get("/api/v1/events")
    assert events.status_code == 200 and events.json() == []


async def test_unstorable_text_with_existing_objects(gql: GQL, http: httpx.AsyncClient) -> None:
    """The same inputs refused where the lookup would find something (a meter, a feature, an entitlement)."""
    await gql.ok(METER, i={"slug": "m1", "eventType": "e", "aggregation": "SUM", "valueProperty": "$.n",
                           "groupBy": {"g": "$.g"}})
    await gql.ok(F, i=feature(meterSlug="m1"))
    await gql.ok(ENT, s="c", i={"type": "METERED", "featureKey": "f1", "usagePeriod": {"interval": "MONTH"}})
    for case in cases(NUL):
        await assert_refused(gql, http, case)
    got = await gql.ok("{ subjects { key displayName metadata } features { key name metadata } }")
    assert got == {"subjects": [{"key": "c", "displayName": None, "metadata": {}}],
                   "features": [{"key": "f1", "name": "Feature", "metadata": {}}]}


async def test_text_length_bounds(gql: GQL, http: httpx.AsyncClient) -> None:
    long = "x" * 4097
    err = (await gql(F, i=feature(name=long)))["errors"][0]
    assert err["extensions"]["code"] == "BAD_USER_INPUT" and "at most 4096" in err["message"]
    resp = await http.post("/api/v1/subjects", json=[{"key": "c", "displayName": long}])
    assert resp.status_code == 400 and "at most 4096" in resp.json()["detail"]
    resp = await http.post("/api/v1/events", json=[event(subject=long)])
    assert resp.status_code == 400 and "event 0: subject must be at most 4096" in resp.json()["detail"]
    got = await gql("query($x: String!) { feature(idOrKey: $x) { id } }", x=long)
    assert got["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    # at the bound, text is accepted; a lookup of a well-formed key that names nothing is not an error
    assert (await gql.ok(F, i=feature(name="x" * 4096)))["createFeature"]["id"]
    assert await gql.ok("query($x: String!) { feature(idOrKey: $x) { id } }", x="x" * 4096) == {"feature": None}
    assert (await http.get("/api/v1/features/nope")).status_code == 404
