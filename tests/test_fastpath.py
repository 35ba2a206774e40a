"""The GraphQL fast path (adapters/graphql/fastpath.py) answers byte for byte as Strawberry does.

Every request below is sent twice, with the fast path on and off; the status, content type and
body must be equal, and the fast path must have answered exactly the requests it qualifies for.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest

from creditgate.adapters.graphql import fastpath
from creditgate.services import tokens as token_svc
from creditgate.services.runtime import Runtime
from tests.conftest import GQL
from tests.ent_helpers import CHECK, CREATE_ENT, VALUE, events, feature, grant, meter, metered

Compare = Callable[..., Awaitable[None]]


@pytest.fixture
async def world(gql: GQL) -> dict[str, Any]:
    await meter(gql)
    await feature(gql, "ai")
    await feature(gql, "sso", meter_slug=None)
    ent = await metered(gql, "a", "ai", interval="MONTH")
    await grant(gql, "a", "ai", 0.3, "2024-01-15T12:00:00Z")
    await events(gql, "a", ("2024-01-15T12:00:10Z", 0.1))
    await metered(gql, "b", "ai", interval="MONTH")
    await gql.ok(CREATE_ENT, s="a", input={"type": "STATIC", "featureKey": "sso", "config": {"x": [1, "y"]}})
    await gql.ok(CREATE_ENT, s="b", input={"type": "BOOLEAN", "featureKey": "sso"})
    return ent


@pytest.fixture
def compare(http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> Compare:
    real = fastpath.answer
    served: list[bool] = []

    async def counting(rt: Runtime, principal: Any, body: bytes) -> bytes | None:
        out = await real(rt, principal, body)
        served.append(out is not None)
        return out

    async def off(rt: Runtime, principal: Any, body: bytes) -> bytes | None:
        return None

    async def check(body: Any, fast: bool | None, token: str | None = None,
                    content_type: str = "application/json") -> None:
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        headers = {"content-type": content_type, **({"authorization": f"Bearer {token}"} if token else {})}
        served.clear()
        monkeypatch.setattr(fastpath, "answer", counting)
        got = await http.post("/graphql", content=raw, headers=headers)
        assert served == ([] if fast is None else [fast]), (served, got.text)
        monkeypatch.setattr(fastpath, "answer", off)
        want = await http.post("/graphql", content=raw, headers=headers)
        monkeypatch.setattr(fastpath, "answer", real)
        assert (got.status_code, got.headers.get("content-type"), got.content) == \
            (want.status_code, want.headers.get("content-type"), want.content)

    return check


async def test_values_match(compare: Compare, world: dict[str, Any]) -> None:
    for s, e in [("a", "ai"), ("a", world["id"]), ("b", "ai"), ("a", "sso"), ("b", "sso")]:
        await compare({"query": VALUE, "variables": {"s": s, "e": e}}, True)
        await compare({"query": VALUE, "variables": {"s": s, "e": e, "at": None}}, True)
    aliased = """query Q($s: String!) { v: entitlementValue(subjectKey: $s, entitlementIdOrFeatureKey: "ai") {
      __typename b: balance hasAccess balance u: usage } }"""
    await compare({"query": aliased, "variables": {"s": "a"}, "operationName": "Q"}, True)
    literal = '{ entitlementValue(subjectKey: "a", entitlementIdOrFeatureKey: "sso", at: null) { config } }'
    await compare({"query": literal}, True)


async def test_checks_match(compare: Compare, world: dict[str, Any]) -> None:
    pairs = [("a", "ai"), ("b", "ai"), ("a", "sso"), ("b", "sso"), ("nobody", "ai"), ("a", "nope"),
             ("a", world["id"]), ("a", "ai")]
    checks = [{"subjectKey": s, "featureKey": f} for s, f in pairs]
    await compare({"query": CHECK, "variables": {"checks": checks}}, True)
    await compare({"query": CHECK, "variables": {"checks": []}}, True)
    await compare({"query": CHECK, "variables": {"checks": [{"featureKey": "ai", "subjectKey": "a"}] * 1000}}, True)
    few = "query($c: [AccessCheckInput!]!) { r: checkAccess(checks: $c) { __typename reason reason type } }"
    await compare({"query": few, "variables": {"c": checks}}, True)


async def test_everything_else_falls_back(compare: Compare, world: dict[str, Any], gql: GQL) -> None:
    v = {"s": "a", "e": "ai"}
    # answers that carry errors
    await compare({"query": VALUE, "variables": {"s": "a", "e": "nope"}}, False)  # NOT_FOUND
    # variables the full path coerces or refuses
    await compare({"query": VALUE, "variables": {**v, "at": "2024-01-15T12:00:00Z"}}, False)
    await compare({"query": VALUE, "variables": {**v, "at": "yesterday"}}, False)
    await compare({"query": VALUE, "variables": {"s": "a", "e": 5}}, False)
    await compare({"query": VALUE, "variables": {"s": "a"}}, False)
    await compare({"query": VALUE, "variables": {**v, "extra": list(range(1001))}}, False)
    await compare({"query": CHECK, "variables": {"checks": {"subjectKey": "a", "featureKey": "ai"}}}, False)
    await compare({"query": CHECK, "variables": {"checks": [{"subjectKey": "a"}]}}, False)
    await compare({"query": CHECK, "variables": {"checks": [{"subjectKey": "a", "featureKey": "ai", "x": 1}]}},
                  False)
    await compare({"query": CHECK, "variables": {"checks": [{"subjectKey": "a", "featureKey": "ai"}] * 1001}},
                  False)
    # other documents, operation names, bodies
    await compare({"query": VALUE, "variables": v, "operationName": "Other"}, False)
    await compare({"query": VALUE + " query Other { __typename }", "variables": v, "operationName": "Other"}, False)
    await compare({"query": "{ entitlementValue(subjectKey: 1) { balance } }"}, False)
    await compare({"query": "{ entitlementValue(subjectKey: \"a\" { balance } }"}, False)
    await compare({"query": '{ entitlementValue(subjectKey: "a", entitlementIdOrFeatureKey: "ai") { ...F } } '
                            "fragment F on EntitlementValue { balance }"}, False)
    await compare({"query": '{ entitlementValue(subjectKey: "a", entitlementIdOrFeatureKey: "ai") '
                            "{ balance @include(if: true) } }"}, False)
    await compare({"query": "query($s: String! = \"a\") { entitlementValue(subjectKey: $s, "
                            'entitlementIdOrFeatureKey: "ai") { balance } }'}, False)
    await compare({"query": VALUE, "variables": v, "extensions": {}}, False)
    await compare({"query": None}, False)
    await compare(b"[1, 2]", False)
    await compare(b"{not json", False)
    await compare(orjson.dumps({"query": VALUE, "variables": v}), None, content_type="text/plain")


async def test_tokens_match(compare: Compare, world: dict[str, Any], gql: GQL, rt: Runtime) -> None:
    made = await gql.ok('mutation { createSubjectToken(subjectKey: "a") { token } }')
    token = made["createSubjectToken"]["token"]
    await compare({"query": VALUE, "variables": {"s": "a", "e": "ai"}}, True, token=token)
    await compare({"query": VALUE, "variables": {"s": "b", "e": "ai"}}, False, token=token)  # FORBIDDEN
    mixed = [{"subjectKey": "a", "featureKey": "ai"}, {"subjectKey": "b", "featureKey": "ai"}]
    await compare({"query": CHECK, "variables": {"checks": mixed[:1]}}, True, token=token)
    await compare({"query": CHECK, "variables": {"checks": mixed}}, False, token=token)
    assert await token_svc.invalidate_tokens(rt, subject_key="a") == 1
    # refused (401) before either path
    await compare({"query": VALUE, "variables": {"s": "a", "e": "ai"}}, None, token=token)
