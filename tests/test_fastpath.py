"""The GraphQL fast path (adapters/graphql/fastpath.py) answers byte for byte as Strawberry does.

Every request below is sent twice, with the fast path on and off; the status, content type and
body must be equal, and the fast path must have answered exactly the requests it qualifies for.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import text
from sqlmodel import delete, select

from creditgate.adapters.graphql import fastpath
from creditgate.adapters.sql.tables import EventRow, MeterMinuteRow, MeterMinuteValueRow
from creditgate.app import create_app
from creditgate.services import tokens as token_svc
from creditgate.services.runtime import Runtime
from tests.conftest import GQL, Backend, make_settings
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


def spy(served: list[bool]) -> Callable[..., Awaitable[bytes | None]]:
    """The fast path, noting in `served` whether it answered each request."""
    real = fastpath.answer

    async def counting(rt: Runtime, principal: Any, body: bytes, state: Any = None) -> bytes | None:
        out = await real(rt, principal, body, state)
        served.append(out is not None)
        return out

    return counting


async def off(rt: Runtime, principal: Any, body: bytes, state: Any = None) -> bytes | None:
    """The fast path switched off: every request goes through Strawberry."""
    return None


@pytest.fixture
def compare(http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> Compare:
    real, served = fastpath.answer, []
    counting = spy(served)

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
    await compare({"query": CHECK, "variables": {"checks": [{"subjectKey": "a", "x": "ai"}]}}, False)  # 2 keys
    await compare({"query": CHECK, "variables": {"checks": [{"subjectKey": "a", "featureKey": "ai"}, {}]}}, False)
    await compare({"query": CHECK, "variables": {"checks": [{"subjectKey": "a", "featureKey": None}]}}, False)
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


# --- ingestEvents: each sequence is played twice into an empty event store, fast path on and off ---

INGEST = "mutation($e: [CloudEventInput!]!) { ingestEvents(events: $e) { accepted duplicates } }"
Step = tuple[Any, bool | None, str | None]  # body, answered by the fast path?, bearer token


def ev(i: int | str, subject: str = "a", **extra: Any) -> dict[str, Any]:
    return {"id": str(i), "source": "app", "type": "prompt", "subject": subject, **extra}


def ingest(events: Any, fast: bool | None, token: str | None = None) -> Step:
    return {"query": INGEST, "variables": {"e": events}}, fast, token


async def _ingest_state(rt: Runtime) -> list[list[dict[str, Any]]]:
    out = []
    async with rt.db.read() as s:
        tables: list[Any] = [EventRow, MeterMinuteRow, MeterMinuteValueRow]
        for table in tables:  # events in insertion order (seq)
            rows = (await s.exec(select(table).order_by(*table.__table__.primary_key))).all()
            out.append([r.model_dump(exclude={"seq"}) for r in rows])
    return out


async def _empty_event_store(rt: Runtime) -> None:
    async with rt.db.transaction() as s:
        for table in (EventRow, MeterMinuteRow, MeterMinuteValueRow):
            await s.exec(delete(table))
        if rt.db.dialect == "postgresql":  # the dedupe keys live apart there (migration 0007)
            await s.exec(text("DELETE FROM event_keys"))  # type: ignore[call-overload]


async def replay(rt: Runtime, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, steps: list[Step]) -> None:
    """Plays the steps with the fast path on, then again (from the same empty event store) with it
    off: every response and the stored events and aggregates must be equal."""
    real, served = fastpath.answer, []
    counting = spy(served)

    runs = []
    for answer in (counting, off):
        await _empty_event_store(rt)
        monkeypatch.setattr(fastpath, "answer", answer)
        responses = []
        for body, fast, token in steps:
            served.clear()
            headers = {"content-type": "application/json", **({"authorization": f"Bearer {token}"} if token else {})}
            got = await http.post("/graphql", content=json.dumps(body).encode(), headers=headers)
            if answer is counting:
                assert served == ([] if fast is None else [fast]), (body, served, got.text)
            responses.append((got.status_code, got.headers.get("content-type"), got.content))
        runs.append((responses, await _ingest_state(rt)))
    monkeypatch.setattr(fastpath, "answer", real)
    (fast_responses, fast_state), (full_responses, full_state) = runs
    for step, a, b in zip(steps, fast_responses, full_responses, strict=True):
        assert a == b, step
    assert fast_state == full_state
    assert fast_state[0], "the sequence stored events"


@pytest.fixture
async def meters(gql: GQL) -> None:
    await meter(gql, group_by={"model": "$.model"})
    await meter(gql, "calls", aggregation="COUNT")
    await meter(gql, "uniq", aggregation="UNIQUE_COUNT")
    await feature(gql, "ai")
    await metered(gql, "a", "ai", interval="MONTH")


async def test_ingest_matches(rt: Runtime, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch,
                              meters: None) -> None:
    valid = [ev(1, data={"tokens": 5, "model": "gpt"}), ev(2, "b", time="2024-01-15T11:59:00Z", data={"tokens": 0.1}),
             ev(3, time="2024-01-15T13:00:00+02:00", specversion="1.0", data={"tokens": "2.5", "model": None}),
             ev(4, time="2024-01-15t12:00:10.5z", specversion=None, data=None),
             ev(5, time=None, data={"tokens": "many", "x": [1, {"y": "é ☃"}]}),  # a value error: stored, flagged
             {"data": {"tokens": 1e-7}, "subject": "c", "type": "other", "source": "src", "id": "6"}]
    steps = [
        ingest(valid, True),
        ingest(valid, True),  # all duplicates
        ingest([ev(7, data={"tokens": 1}), ev(7, data={"tokens": 2}), valid[0]], True),  # within and across batches
        ingest([], True),
        ingest([ev(f"k{i}", f"s{i % 7}", data={"tokens": i % 5}) for i in range(1000)], True),
        # structural errors: the service refuses the batch, Strawberry answers
        *[ingest([ev(8), {**ev(9), **bad}], False) for bad in [  # type: ignore[dict-item]
            {"id": ""}, {"source": " "}, {"type": ""}, {"subject": ""}, {"specversion": "0.3"},
            {"data": [1, 2]}, {"data": "text"}, {"data": 3}, {"id": "a\x00b"}, {"data": {"k": "\x00"}}]],
        # what GraphQL's coercion refuses or changes
        *[ingest([ev(10), {**ev(11), **bad}], False) for bad in [  # type: ignore[dict-item]
            {"extra": 1}, {"id": 5}, {"subject": True}, {"source": None}, {"type": ["x"]}, {"specversion": 1},
            {"time": "yesterday"}, {"time": "2024-01-15T10:00:00"}, {"time": "2024-13-01T00:00:00Z"},
            {"time": 1705320000}, {"time": "9999-12-31T23:59:59-01:00"},
            {"data": {"n": 123456789012345678901234567890}}]],  # (orjson would read a float)
        ingest([ev(12), {"id": "13", "source": "app", "type": "prompt"}], False),  # subject missing
        ingest([ev(14), None], False),
        ingest([ev(15), "x"], False),
        ingest(None, False),
        ingest(ev(16, data={"tokens": 3}), False),  # one object: GraphQL reads a list of one
        ingest([ev(f"m{i}") for i in range(1001)], True),  # events: the ingest service's bound, not MAX_LIST
        ingest([ev(f"n{i}") for i in range(10_001)], False),  # over it: refused (BAD_USER_INPUT) by the full path
        ({"query": INGEST}, False, None),
        ({"query": INGEST, "variables": {"e": [ev(17)], "other": 1}}, False, None),
        ({"query": INGEST, "variables": {"e": [ev(18)]}, "operationName": "X"}, False, None),
        # other documents
        ({"query": 'mutation M { r: ingestEvents(events: [{id: "19", source: "app", type: "prompt", subject: "a", '
                    'time: "2024-01-15T12:00:00+01:00", data: {tokens: 2, model: "gpt"}}]) '
                    "{ __typename d: duplicates accepted } }", "operationName": "M"}, True, None),
        ({"query": 'mutation { ingestEvents(events: {id: "20", source: "app", type: "prompt", subject: "a"}) '
                    "{ accepted } }"}, True, None),
        ({"query": "mutation($s: String!) { ingestEvents(events: [{id: \"21\", source: \"app\", type: \"prompt\", "
                    "subject: $s}]) { accepted } }", "variables": {"s": "a"}}, False, None),
        ({"query": 'mutation { ingestEvents(events: [{id: "22", source: "app", type: "prompt", subject: "a", '
                    'time: "noon"}]) { accepted } }'}, False, None),
        ({"query": "mutation($e: [CloudEventInput!]) { ingestEvents(events: $e) { accepted } }",
          "variables": {"e": [ev(23)]}}, False, None),
        ({"query": "mutation($e: [CloudEventInput!]!) { ingestEvents(events: $e) { accepted } "
                    "__typename }", "variables": {"e": [ev(24)]}},
         False, None),
        ({"query": "query($e: [CloudEventInput!]!) { ingestEvents(events: $e) { accepted } }",
          "variables": {"e": [ev(25)]}}, False, None),
    ]
    await replay(rt, http, monkeypatch, steps)


async def test_ingest_auth_matches(rt: Runtime, monkeypatch: pytest.MonkeyPatch, meters: None,
                                   backend: Backend) -> None:
    rt.settings = make_settings(backend, api_keys="k1")  # (model_copy would keep the cached api_key_set)
    app = create_app(runtime=rt)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        made = await GQL(http).ok('mutation { createSubjectToken(subjectKey: "a") { token } }', "k1")
        token = made["createSubjectToken"]["token"]
        steps = [
            ingest([ev(1, data={"tokens": 1})], True, "k1"),
            ingest([ev(2)], None),  # 401 before either path
            ingest([ev(2)], None, "k2"),
            ingest([ev(2)], False, token),  # FORBIDDEN: a subject token may not ingest
            ingest([ev(2, "b")], False, token),
            ingest([{**ev(2), "x": 1}], False, token),  # the variables are refused before auth
            ingest([ev(2), ev(1)], True, "k1"),
        ]
        await replay(rt, http, monkeypatch, steps)
