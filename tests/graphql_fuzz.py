"""GraphQL fuzzing with schemathesis: generated documents for every query and mutation of the schema,
sent to a live server with an admin key. A failure is a 5xx, a body that is not a JSON object, or an error
whose `extensions.code` is INTERNAL (or absent). Used by tests/test_graphql_fuzz.py (bounded, fixed seed)
and scripts/fuzz_graphql.py (longer runs)."""

from __future__ import annotations

import json
import string
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import graphql
import httpx
import orjson
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.graphql import nodes

SEED = 20241115
REMOVING = {"archiveFeature", "deleteSubject", "deleteMeter", "deleteEntitlement", "voidGrant"}
TIMEOUT = 60  # seconds: a document the server cannot answer in this time is a failure (work without bound)
JSON_MEDIA = ("application/json", "application/graphql-response+json")
# Data for generated lookups to find. Hypothesis often draws the same string for every argument of a
# document, so "cust" names a subject, a meter, its event type and a feature with a metered entitlement.
SETUP = """mutation {
  createMeter(input: {slug: "tokens", eventType: "prompt", aggregation: SUM, valueProperty: "$.tokens",
                      groupBy: {model: "$.model"}}) { id }
  cm: createMeter(input: {slug: "cust", eventType: "cust", aggregation: COUNT}) { id }
  cf: createFeature(input: {key: "cust", name: "cust", meterSlug: "cust"}) { id }
  ce: createEntitlement(subjectKey: "cust", input: {type: METERED, featureKey: "cust",
      usagePeriod: {interval: DAY, anchor: "2000-01-01T00:00:00Z"},
      measureUsageFrom: "2000-01-01T00:00:00Z"}) { id }
  ai: createFeature(input: {key: "ai", name: "AI", meterSlug: "tokens"}) { id }
  sso: createFeature(input: {key: "sso", name: "SSO"}) { id }
  zero: createFeature(input: {key: "0", name: "0"}) { id }
  upsertSubject(input: {key: "cust", displayName: "Customer"}) { id }
  m: createEntitlement(subjectKey: "cust", input: {type: METERED, featureKey: "ai",
      usagePeriod: {interval: DAY}, issueAfterReset: 10}) { id }
  b: createEntitlement(subjectKey: "cust", input: {type: BOOLEAN, featureKey: "sso"}) { id }
  s: createEntitlement(subjectKey: "a", input: {type: STATIC, featureKey: "0", config: {seats: 1}}) { id }
  ingestEvents(events: [{id: "1", source: "s", type: "prompt", subject: "cust", data: {tokens: 3}},
                        {id: "2", source: "s", type: "cust", subject: "cust", data: {}}]) { accepted }
}"""


def _datetimes(now: datetime) -> st.SearchStrategy[str]:
    near = st.integers(-40 * 24 * 60, 40 * 24 * 60).map(
        lambda m: (now.replace(second=0, microsecond=0) + timedelta(minutes=m)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    offsets = st.sampled_from([UTC, timezone(timedelta(hours=14)), timezone(-timedelta(hours=12, minutes=30))])
    # hypothesis wants naive bounds; `timezones` makes the values aware
    valid = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),  # noqa: DTZ001
                         timezones=offsets)
    return st.one_of(near, near, valid.map(lambda d: d.isoformat()),
                     valid.map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")),
                     st.sampled_from(["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2024-02-30T00:00:00Z",
                                      "2024-01-15T12:00:00", "2024-01-15", "", "\x00"]),
                     st.text(max_size=30))


def _json_values() -> st.SearchStrategy[graphql.ValueNode]:
    names = st.text(string.ascii_letters + "\x00é_", min_size=1, max_size=8)
    leaves: st.SearchStrategy[graphql.ValueNode] = st.one_of(
        st.text(max_size=20).map(nodes.String), st.integers(-(2**70), 2**70).map(nodes.Int),
        st.floats(allow_nan=False, allow_infinity=False).map(nodes.Float), st.booleans().map(nodes.Boolean),
        st.just(nodes.Null))

    def objects(children: st.SearchStrategy[graphql.ValueNode]) -> st.SearchStrategy[graphql.ValueNode]:
        pairs = st.dictionaries(names, children, max_size=4)
        return pairs.map(lambda d: nodes.Object([graphql.ObjectFieldNode(name=graphql.NameNode(value=k), value=v)
                                                 for k, v in d.items()]))

    def nest(children: st.SearchStrategy[graphql.ValueNode]) -> st.SearchStrategy[graphql.ValueNode]:
        return st.one_of(st.lists(children, max_size=4).map(nodes.List), objects(children))

    flat = st.dictionaries(st.sampled_from(["plan", "k", "seats"]), st.text(string.ascii_letters, max_size=5),
                           max_size=2).map(lambda d: nodes.Object([graphql.ObjectFieldNode(
                               name=graphql.NameNode(value=k), value=nodes.String(v)) for k, v in d.items()]))
    # flat string objects first (valid metadata and config, so that documents get through), then anything
    return st.one_of(flat, flat, st.recursive(leaves, nest, max_leaves=12))


def _texts(known: list[str]) -> st.SearchStrategy[str]:
    """Strings for every String and ID argument: names of existing things, ordinary and hostile text."""
    any_char = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, categories=None)  # lone surrogates too
    names = st.sampled_from(known)
    main = st.sampled_from(known[:3])  # "cust" (see SETUP), "ai", "UTC"
    return st.one_of(
        main, main, names, names, st.text(max_size=16), st.text(any_char, max_size=8),
        st.tuples(st.sampled_from(known), st.sampled_from(["\x00", "\ud800", " ", "\u202e", "%00"]))
        .map("".join),
        st.sampled_from(["", " ", "\x00", "a" * 300, "a" * 5000, "$", "$.", "$[", "../x", "null"]))


def register_scalars(known: list[str], now: datetime) -> None:
    schemathesis.graphql.scalar("DateTime", _datetimes(now).map(nodes.String))
    schemathesis.graphql.scalar("JSON", _json_values())
    schemathesis.graphql.scalar("String", _texts(known).map(nodes.String))
    schemathesis.graphql.scalar("ID", _texts(known).map(nodes.String))
    schemathesis.graphql.scalar("Int", st.one_of(
        st.integers(1, 10), st.integers(1, 10), st.integers(1, 10), st.integers(-(2**31), 2**31 - 1),
        st.sampled_from([0, -1, 1, 255, 256, 1000, 1001, 2**31 - 1, -(2**31)]))
        .map(nodes.Int))
    schemathesis.graphql.scalar("Float", st.one_of(
        st.integers(1, 1000).map(float), st.integers(1, 1000).map(float), st.integers(1, 1000).map(float),
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from([0.0, -0.0, 1e-9, 0.1, 1.0, 5.0, 100.0, 1e26, 1e27, 1e308, -1e308, 5e-324]))
        .map(nodes.Float))


@dataclass
class Failure:
    operation: str
    problem: str
    query: str


@dataclass
class Report:
    examples: Counter[str] = field(default_factory=Counter)
    answered: Counter[str] = field(default_factory=Counter)  # documents answered without any error
    failures: list[Failure] = field(default_factory=list)

    def distinct(self) -> dict[tuple[str, str], Failure]:
        out: dict[tuple[str, str], Failure] = {}
        for f in self.failures:
            out.setdefault((f.operation, f.problem), f)
        return out


def problem_of(resp: httpx.Response) -> str | None:
    """What is wrong with an answer, or None."""
    if resp.status_code >= 500:
        return f"HTTP {resp.status_code}"
    media = resp.headers.get("content-type", "").split(";")[0].strip()
    if media not in JSON_MEDIA:
        return f"content type {media!r}"
    try:
        body = orjson.loads(resp.content)
    except orjson.JSONDecodeError:
        return "body is not JSON"
    if not isinstance(body, dict) or not ({"data", "errors"} & body.keys()):
        return "body is not a GraphQL response"
    for error in body.get("errors") or []:
        code = (error.get("extensions") or {}).get("code") if isinstance(error, dict) else None
        if code is None or code == "INTERNAL":
            return f"{code or 'no code'}: {error.get('message') if isinstance(error, dict) else error}"
    return None


KNOWN_IDS = "{ meters { id } features { id } subjects { id } entitlements(includeDeleted: true) { id } grants { id } }"


def known_names(http: httpx.Client) -> list[str]:
    """Keys the SETUP data uses and the ids the server gave it."""
    data = http.post("/graphql", json={"query": KNOWN_IDS}).json().get("data") or {}
    ids = [row["id"] for rows in data.values() for row in rows]
    return ["cust", "ai", "UTC", "sso", "0", "a", "tokens", "prompt", *ids]


def load_schema(url: str, headers: dict[str, str], known: list[str], now: datetime) -> Any:
    register_scalars(known, now)
    return schemathesis.graphql.from_url(f"{url}/graphql", headers=headers)


def fuzz(url: str, headers: dict[str, str], now: datetime, examples: int, negative: int = 0,
         only: Iterable[str] = (), fuzz_seed: int = SEED) -> Report:
    """`examples` positive and `negative` negative (invalid) documents per operation; dates cluster around
    `now` (the server's clock), strings around the names that exist, so that some documents get through."""
    report = Report()
    wanted = set(only)
    with httpx.Client(base_url=url, headers=headers, timeout=TIMEOUT) as http:
        schema = load_schema(url, headers, known_names(http), now)
        operations = [result.ok() for result in schema.get_all_operations()]
        # queries, then mutations that add, then those that remove (which would empty SETUP's data early)
        operations.sort(key=lambda op: (op.definition.root_type.name == "MUTATION",
                                        op.definition.field_name in REMOVING))
        for operation in operations:
            name = f"{operation.definition.root_type.name.lower()} {operation.definition.field_name}"
            if wanted and operation.definition.field_name not in wanted:
                continue
            for mode, count in ((GenerationMode.POSITIVE, examples), (GenerationMode.NEGATIVE, negative)):
                if count > 0:
                    _runner(http, report, operation, name, mode, count, fuzz_seed)()
    return report


def _runner(http: httpx.Client, report: Report, operation: Any, name: str, mode: GenerationMode, count: int,
            fuzz_seed: int) -> Any:
    @seed(fuzz_seed)
    @settings(max_examples=count, database=None, deadline=None, suppress_health_check=list(HealthCheck),
              phases=[Phase.generate])
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case[Any]) -> None:
        # ASCII JSON: lone surrogates travel as \uXXXX escapes, as a browser may send them
        report.examples[name] += 1
        try:
            resp = http.post("/graphql", content=json.dumps({"query": case.body}).encode(),
                             headers={"content-type": "application/json"})
        except httpx.TimeoutException:
            report.failures.append(Failure(name, f"no answer within {TIMEOUT} s", str(case.body)))
            return
        problem = problem_of(resp)
        if problem is not None:
            report.failures.append(Failure(name, problem, str(case.body)))
        elif not orjson.loads(resp.content).get("errors"):
            report.answered[name] += 1

    return run
