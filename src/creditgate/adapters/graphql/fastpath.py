"""A fast path for the hot reads (`entitlementValue`, `checkAccess` at "now") and for `ingestEvents`.

Strawberry spends several hundred microseconds per request (argument conversion, field
resolution, result completion), more than the cache round trip these reads need, and ~25 µs
per event of an ingest batch (variable coercion of [CloudEventInput!]!, argument conversion).
A document qualifies once (validated with the full path's rules and token limit) when it is
one query or mutation operation whose only root field is one of ROOTS, selecting leaf fields
only, with no fragments, directives or variable defaults. Such a request is answered by the
same services and auth rules, written as the same JSON.

Anything else falls back to Strawberry, which then produces the standard answer: other
documents, unusual variables (an `at`, values of the wrong type, unknown keys, nulls, a time
that does not parse, lists over MAX_LIST or MAX_EVENTS), and every request whose answer would carry an error
(auth refusals, NOT_FOUND, BAD_USER_INPUT from the ingest service, a number a Float cannot
represent). Reads are harmless to answer twice; an ingest that fails stored nothing (the
service checks the whole batch before its transaction, which rolls back on any error; after
the commit only the cache invalidation runs, and it logs its own errors), so Strawberry's
second attempt starts from the same state.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from operator import attrgetter
from typing import Any

import orjson
from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    NullValueNode,
    OperationDefinitionNode,
    OperationType,
    StringValueNode,
    Undefined,
    VariableNode,
    parse,
    specified_rules,
    value_from_ast,
)
from strawberry.schema.schema import validate_document

from creditgate.adapters.graphql.labels import bounded
from creditgate.adapters.graphql.limits import MAX_EVENTS, MAX_LIST, MAX_TOKENS, RULES
from creditgate.adapters.graphql.meters import CloudEventInput, _event_from_input
from creditgate.adapters.graphql.schema import schema
from creditgate.records import EventInput
from creditgate.services import events as event_svc
from creditgate.services import tokens as token_svc
from creditgate.services import values as svc
from creditgate.services.auth import Principal
from creditgate.services.runtime import Runtime

# root field -> (argument -> kind, leaf fields of the result, result type name)
STR, AT, CHECKS, EVENTS = "str", "at", "checks", "events"
ROOTS: dict[str, tuple[dict[str, str], frozenset[str], str]] = {
    "entitlementValue": ({"subjectKey": STR, "entitlementIdOrFeatureKey": STR, "at": AT},
                         frozenset({"hasAccess", "balance", "usage", "overage", "config"}), "EntitlementValue"),
    "checkAccess": ({"checks": CHECKS, "at": AT},
                    frozenset({"subjectKey", "featureKey", "hasAccess", "reason", "entitlementId", "type",
                               "balance", "usage", "overage", "config"}), "AccessResult"),
    "ingestEvents": ({"events": EVENTS}, frozenset({"accepted", "duplicates"}), "IngestResult"),
}
# CloudEventInput: its String! fields, and all its fields (AccessCheckInput: _pairs)
EVENT_STRINGS = ("id", "source", "type", "subject")
EVENT_KEYS = frozenset({*EVENT_STRINGS, "specversion", "time", "data"})
_mutation = schema._schema.mutation_type
assert _mutation is not None
EVENTS_TYPE = _mutation.fields["ingestEvents"].args["events"].type  # [CloudEventInput!]!


# A run of 19 digits: every integer outside [-2**63, 2**64) has one.
_DIGITS = bytes(b"0"[0] if chr(i).isdigit() and i < 128 else b" "[0] for i in range(256))
_LONG_NUMBER = b"0" * 19


class Fallback(Exception):
    """This request goes through Strawberry."""


@dataclass(frozen=True, slots=True)
class Plan:
    root: str
    key: str  # response key of the root field
    args: tuple[tuple[str, str, bool, Any], ...]  # (argument, kind, from a variable?, variable name or literal)
    variables: frozenset[str]  # the declared variables
    fields: tuple[tuple[str, str], ...]  # (response key, field name)
    typename: str
    operation_name: str | None


@lru_cache(maxsize=512)
def plan_for(query: str) -> Plan | None:
    """The plan of a qualifying document; None for every other document (valid or not)."""
    try:
        doc = parse(query, max_tokens=MAX_TOKENS)
    except GraphQLError:
        return None
    if validate_document(schema._schema, doc, (*specified_rules, *RULES)):
        return None
    return _plan(doc)


def _plan(doc: DocumentNode) -> Plan | None:
    if len(doc.definitions) != 1 or not isinstance(doc.definitions[0], OperationDefinitionNode):
        return None
    op = doc.definitions[0]
    # (validation has checked that the root field belongs to the operation's type)
    if op.operation == OperationType.SUBSCRIPTION or op.directives or len(op.selection_set.selections) != 1:
        return None
    if any(v.default_value is not None or v.directives for v in op.variable_definitions or ()):
        return None
    root = op.selection_set.selections[0]
    if not isinstance(root, FieldNode) or root.directives or root.name.value not in ROOTS or not root.selection_set:
        return None
    kinds, leaves, typename = ROOTS[root.name.value]
    args: list[tuple[str, str, bool, Any]] = []
    used: set[str] = set()
    for a in root.arguments or ():
        kind = kinds[a.name.value]
        if isinstance(a.value, VariableNode):
            used.add(a.value.name.value)
            args.append((a.name.value, kind, True, a.value.name.value))
        elif kind == STR and isinstance(a.value, StringValueNode):
            args.append((a.name.value, kind, False, a.value.value))
        elif kind == AT and isinstance(a.value, NullValueNode):
            args.append((a.name.value, kind, False, None))
        elif kind == EVENTS:  # a literal: coerced here as the full path does (once per document)
            coerced = value_from_ast(a.value, EVENTS_TYPE)
            if coerced is Undefined:
                return None  # it holds variables
            args.append((a.name.value, kind, False, coerced))
        else:
            return None
    if used != {v.variable.name.value for v in op.variable_definitions or ()}:
        return None  # every declared variable must be one we coerce
    fields: list[tuple[str, str]] = []
    for sel in root.selection_set.selections:
        if not isinstance(sel, FieldNode) or sel.directives or sel.arguments or sel.selection_set:
            return None
        name = sel.name.value
        if name not in leaves and name != "__typename":
            return None
        fields.append(((sel.alias or sel.name).value, name))
    return Plan(root.name.value, (root.alias or root.name).value, tuple(args), frozenset(used), tuple(fields),
                typename, op.name.value if op.name else None)


def _arguments(plan: Plan, variables: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, kind, is_var, ref in plan.args:
        value: Any = variables.get(ref) if is_var else ref
        if kind == STR and not isinstance(value, str):
            raise Fallback
        if kind == AT and value is not None:
            raise Fallback  # past instants: rare, and DateTime parsing lives in the full path
        if kind == CHECKS:
            value = _pairs(value)
        if kind == EVENTS:
            # a literal was coerced with the document: the full path's records from it
            value = _events(value) if is_var else [_event_from_input(CloudEventInput, e, None) for e in value]
        out[name] = value
    return out


def _pairs(value: Any) -> list[tuple[str, str]]:
    """A [AccessCheckInput!]! variable that GraphQL's coercion keeps as it is, as (subject, feature)
    pairs: a list of at most MAX_LIST objects, each with exactly the two String! fields, both strings.
    Anything else (a lone object, which GraphQL reads as a list of one, included) raises Fallback."""
    if not isinstance(value, list) or len(value) > MAX_LIST:
        raise Fallback
    out = []
    for item in value:
        if not isinstance(item, dict) or len(item) != 2:  # two keys, both present below: no other key
            raise Fallback
        subject, feature = item.get("subjectKey"), item.get("featureKey")
        if not isinstance(subject, str) or not isinstance(feature, str):  # missing, null or another type
            raise Fallback
        out.append((subject, feature))
    return out


def _events(value: Any) -> list[EventInput]:
    """An ingestEvents variable as the service's records, in one pass: a list of at most MAX_EVENTS
    objects with no keys but CloudEventInput's, its String! fields strings, `specversion` a string or
    null (absent: "1.0"), `time` a string or null. The time is parsed by the service with the DateTime
    scalar's own reader (timefmt.parse_rfc3339), so a time it refuses fails the ingest before anything
    is stored and the full path answers."""
    if not isinstance(value, list) or len(value) > MAX_EVENTS:
        raise Fallback
    keys, out = EVENT_KEYS, []
    for item in value:
        if not isinstance(item, dict) or not item.keys() <= keys:
            raise Fallback
        event_id, source, type_, subject = item.get("id"), item.get("source"), item.get("type"), item.get("subject")
        spec, time = item.get("specversion", "1.0"), item.get("time")
        if type(event_id) is not str or type(source) is not str or type(type_) is not str \
                or type(subject) is not str or (spec is not None and type(spec) is not str) \
                or (time is not None and type(time) is not str):
            raise Fallback
        out.append(EventInput(id=event_id, source=source, type=type_, subject=subject, specversion=spec, time=time,
                              data=item.get("data")))
    return out


def _num(x: Decimal | None) -> float | None:
    if x is None:
        return None
    out = float(x)
    if not math.isfinite(out):
        raise Fallback  # a GraphQL Float cannot hold it: the full path reports the error
    return out


def _value(v: svc.EntValue, plan: Plan) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, name in plan.fields:
        if name == "hasAccess":
            out[key] = v.has_access
        elif name == "balance":
            out[key] = _num(v.balance)
        elif name == "usage":
            out[key] = _num(v.usage)
        elif name == "overage":
            out[key] = _num(v.overage)
        elif name == "config":
            out[key] = v.config
        else:
            out[key] = plan.typename
    return out


# AccessResult's fields, read from an answer (a checkAccess batch reads up to MAX_LIST answers per field)
_ACCESS: dict[str, Callable[[svc.Access], Any]] = {
    "subjectKey": attrgetter("subject_key"),
    "featureKey": attrgetter("feature_key"),
    "hasAccess": attrgetter("has_access"),
    "reason": attrgetter("reason"),
    "entitlementId": lambda a: a.entitlement_id or None,
    "type": lambda a: a.type or None,
    "balance": lambda a: _num(a.value.balance) if a.value else None,
    "usage": lambda a: _num(a.value.usage) if a.value else None,
    "overage": lambda a: _num(a.value.overage) if a.value else None,
    "config": lambda a: a.value.config if a.value else None,
}


@lru_cache(maxsize=512)
def _access_fields(plan: Plan) -> tuple[tuple[str, Callable[[svc.Access], Any]], ...]:
    """(response key, reader) for each selected field of a checkAccess plan."""
    typename = plan.typename
    return tuple((key, _ACCESS[name] if name != "__typename" else lambda _a: typename) for key, name in plan.fields)


async def _execute(plan: Plan, rt: Runtime, principal: Principal, args: dict[str, Any]) -> Any:
    if plan.root == "ingestEvents":
        principal.require_admin()
        done = await event_svc.ingest_events(rt, args["events"])
        return {key: plan.typename if name == "__typename" else getattr(done, name) for key, name in plan.fields}
    if plan.root == "entitlementValue":
        subject, ref = args["subjectKey"], args["entitlementIdOrFeatureKey"]
        await token_svc.authorize_subject_read(rt, principal, subject)
        answer = await svc.entitlement_value(rt, subject, ref)
        if answer.value is None:
            raise Fallback  # NOT_FOUND
        return _value(answer.value, plan)
    pairs = args["checks"]
    await token_svc.authorize_subject_read(rt, principal, [subject for subject, _ in pairs])
    fields = _access_fields(plan)
    return [{key: read(a) for key, read in fields} for a in await svc.check_access(rt, pairs)]


async def answer(rt: Runtime, principal: Principal, body: bytes,
                 state: dict[str, Any] | None = None) -> bytes | None:
    """The response body for a qualifying POST body, or None: use the full path. An answered request's
    operation label (labels.py) goes into `state` (the request's, read by adapters/http)."""
    if _LONG_NUMBER in body.translate(_DIGITS):
        return None  # orjson reads integers beyond 64 bits as floats, Strawberry's json.loads as ints
    try:
        data = orjson.loads(body)  # otherwise as json.loads reads it, or an error (NaN, lone surrogates...)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not data.keys() <= {"query", "variables", "operationName"}:
        return None
    query, variables, name = data.get("query"), data.get("variables"), data.get("operationName")
    if not isinstance(query, str) or not isinstance(variables, dict | None):
        return None
    plan = plan_for(query)
    if plan is None or (name is not None and name != plan.operation_name):
        return None
    if variables and not variables.keys() <= plan.variables:
        return None  # extra variables: the full path also checks those (VariableListLimit)
    try:
        result = await _execute(plan, rt, principal, _arguments(plan, variables or {}))
    except Exception:  # Fallback, DomainError, anything unexpected: the full path answers (and logs)
        return None
    if state is not None:
        state["operation"] = bounded(plan.operation_name)
    return orjson.dumps({"data": {plan.key: result}})
