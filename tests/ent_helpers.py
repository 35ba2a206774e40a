"""Helpers for the entitlement tests: meters, features, events, entitlements, grants through GraphQL."""

from __future__ import annotations

from typing import Any

from tests.conftest import GQL

ENT_FIELDS = """id type subjectKey featureId featureKey metadata createdAt updatedAt deletedAt
  ... on StaticEntitlement { config }
  ... on MeteredEntitlement { isSoftLimit measureUsageFrom issueAfterReset issueAfterResetPriority
      usagePeriod { interval anchor } currentUsagePeriod { from to } lastReset }"""
CREATE_ENT = f"""mutation($s: String!, $input: CreateEntitlementInput!) {{
  createEntitlement(subjectKey: $s, input: $input) {{ {ENT_FIELDS} }} }}"""
GRANT_FIELDS = """id entitlementId amount priority effectiveAt expiration { duration count } expiresAt
  recurrence { interval anchor } nextRecurrence minRolloverAmount maxRolloverAmount metadata voidedAt
  createdAt updatedAt"""
CREATE_GRANT = f"""mutation($s: String!, $e: String!, $input: CreateGrantInput!) {{
  createGrant(subjectKey: $s, entitlementIdOrFeatureKey: $e, input: $input) {{ {GRANT_FIELDS} }} }}"""
VALUE = """query($s: String!, $e: String!, $at: DateTime) {
  entitlementValue(subjectKey: $s, entitlementIdOrFeatureKey: $e, at: $at) {
    hasAccess balance usage overage config } }"""
CHECK = """query($checks: [AccessCheckInput!]!, $at: DateTime) { checkAccess(checks: $checks, at: $at) {
  subjectKey featureKey hasAccess reason entitlementId type balance usage overage config } }"""


async def meter(gql: GQL, slug: str = "tokens", event_type: str = "prompt", aggregation: str = "SUM",
                group_by: dict[str, str] | None = None) -> dict[str, Any]:
    inp: dict[str, Any] = {"slug": slug, "eventType": event_type, "aggregation": aggregation,
                           "groupBy": group_by or {}}
    if aggregation != "COUNT":
        inp["valueProperty"] = "$.tokens"
    data = await gql.ok("mutation($input: CreateMeterInput!) { createMeter(input: $input) { id slug } }", input=inp)
    return dict(data["createMeter"])


async def feature(gql: GQL, key: str = "ai", meter_slug: str | None = "tokens",
                  filters: dict[str, str] | None = None) -> dict[str, Any]:
    inp: dict[str, Any] = {"key": key, "name": key}
    if meter_slug:
        inp["meterSlug"] = meter_slug
    if filters:
        inp["meterGroupByFilters"] = filters
    data = await gql.ok("mutation($input: CreateFeatureInput!) { createFeature(input: $input) { id key } }",
                        input=inp)
    return dict(data["createFeature"])


_seq = [0]


async def events(gql: GQL, subject: str, *items: tuple[str, float], event_type: str = "prompt",
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Ingest one event per (time, tokens) pair."""
    batch = []
    for time, tokens in items:
        _seq[0] += 1
        batch.append({"id": f"e{_seq[0]}", "source": "test", "type": event_type, "subject": subject,
                      "time": time, "data": {"tokens": tokens, **(extra or {})}})
    data = await gql.ok("mutation($ev: [CloudEventInput!]!) { ingestEvents(events: $ev) { accepted duplicates } }",
                        ev=batch)
    return dict(data["ingestEvents"])


async def metered(gql: GQL, subject: str = "cust", feature_key: str = "ai", interval: str = "MONTH",
                  anchor: str | None = None, **extra: Any) -> dict[str, Any]:
    inp: dict[str, Any] = {"type": "METERED", "featureKey": feature_key,
                           "usagePeriod": {"interval": interval, **({"anchor": anchor} if anchor else {})}, **extra}
    return dict((await gql.ok(CREATE_ENT, s=subject, input=inp))["createEntitlement"])


async def grant(gql: GQL, subject: str, ref: str, amount: float, effective_at: str, *,
                duration: str = "YEAR", count: int = 1, **extra: Any) -> dict[str, Any]:
    inp = {"amount": amount, "effectiveAt": effective_at, "expiration": {"duration": duration, "count": count},
           **extra}
    return dict((await gql.ok(CREATE_GRANT, s=subject, e=ref, input=inp))["createGrant"])


async def value(gql: GQL, subject: str, ref: str, at: str | None = None, token: str | None = None) -> dict[str, Any]:
    return dict((await gql.ok(VALUE, token, s=subject, e=ref, at=at))["entitlementValue"])
