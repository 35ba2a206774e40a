"""Values and caching (docs/semantics.md §6.3, §8): read-your-writes, self-expiry, past instants, late events."""

from __future__ import annotations

import pytest

from creditgate.services.runtime import Runtime
from tests.conftest import GQL, Clock
from tests.ent_helpers import CREATE_ENT, events, feature, grant, meter, metered, value


@pytest.fixture
async def ent(gql: GQL) -> dict[str, object]:
    await meter(gql, group_by={"model": "$.model"})
    await feature(gql, "ai")
    await feature(gql, "gpt", filters={"model": "gpt"})
    return await metered(gql, "c", "ai", interval="DAY", measureUsageFrom="2024-01-15T00:00:00Z",
                         anchor="2024-01-15T00:00:00Z")


async def test_read_your_writes(gql: GQL, ent: dict[str, object], rt: Runtime) -> None:
    assert rt.cache is not None
    await grant(gql, "c", "ai", 10, "2024-01-15T00:00:00Z")
    assert (await value(gql, "c", "ai"))["balance"] == 10.0
    assert (await value(gql, "c", "ai"))["balance"] == 10.0  # from the cache
    await events(gql, "c", ("2024-01-15T12:00:10Z", 3))
    assert (await value(gql, "c", "ai"))["balance"] == 7.0
    g = await grant(gql, "c", "ai", 5, "2024-01-15T00:00:00Z")
    assert (await value(gql, "c", "ai"))["balance"] == 12.0
    await gql.ok("mutation($id: ID!) { voidGrant(id: $id) { id } }", id=g["id"])
    assert (await value(gql, "c", "ai"))["balance"] == 7.0
    await gql.ok("mutation($id: ID!) { deleteEntitlement(subjectKey: \"c\", entitlementId: $id) }", id=ent["id"])
    await gql.error("{ entitlementValue(subjectKey: \"c\", entitlementIdOrFeatureKey: \"ai\") { balance } }",
                    "NOT_FOUND")
    await metered(gql, "c", "ai", interval="DAY")
    assert (await value(gql, "c", "ai"))["balance"] == 0.0


async def test_cached_value_expires_by_itself(gql: GQL, ent: dict[str, object], clock: Clock) -> None:
    await grant(gql, "c", "ai", 10, "2024-01-15T13:00:00Z", duration="HOUR", count=2)
    assert (await value(gql, "c", "ai"))["balance"] == 0.0
    clock.set("2024-01-15T12:59:00.000001+00:00")  # the grant counts from ceil_m(t) = 13:00
    assert (await value(gql, "c", "ai"))["balance"] == 10.0
    clock.set("2024-01-15T15:00:00+00:00")
    assert (await value(gql, "c", "ai"))["balance"] == 0.0
    await grant(gql, "c", "ai", 4, "2024-01-15T15:00:00Z", duration="DAY")
    clock.set("2024-01-15T23:59:59+00:00")
    assert (await value(gql, "c", "ai"))["balance"] == 4.0
    await events(gql, "c", ("2024-01-15T23:59:10Z", 1))
    assert (await value(gql, "c", "ai"))["balance"] == 3.0
    clock.set("2024-01-16T00:00:00+00:00")  # automatic reset: no rollover allowance
    assert (await value(gql, "c", "ai"))["balance"] == 0.0


async def test_future_events_count_when_their_minute_comes(gql: GQL, ent: dict[str, object], clock: Clock) -> None:
    await grant(gql, "c", "ai", 10, "2024-01-15T00:00:00Z")
    await events(gql, "c", ("2024-01-15T12:05:00Z", 2))
    assert (await value(gql, "c", "ai"))["balance"] == 10.0
    clock.set("2024-01-15T12:05:00.5+00:00")
    assert (await value(gql, "c", "ai"))["balance"] == 8.0


async def test_past_values_and_late_events(gql: GQL, ent: dict[str, object], clock: Clock) -> None:
    await grant(gql, "c", "ai", 10, "2024-01-15T00:00:00Z")
    await events(gql, "c", ("2024-01-15T11:00:00Z", 1))
    clock.set("2024-01-15T18:00:00+00:00")
    assert (await value(gql, "c", "ai", at="2024-01-15T12:00:00Z"))["balance"] == 9.0
    assert (await value(gql, "c", "ai", at="2024-01-15T12:00:00Z"))["balance"] == 9.0
    await events(gql, "c", ("2024-01-15T10:00:00Z", 2))  # late
    assert (await value(gql, "c", "ai", at="2024-01-15T12:00:00Z"))["balance"] == 7.0
    assert (await value(gql, "c", "ai"))["balance"] == 7.0
    # before measureUsageFrom: the state there, no usage
    v = await value(gql, "c", "ai", at="2024-01-14T00:00:00Z")
    assert v["usage"] == 0.0 and v["balance"] == 10.0


async def test_group_filters_and_count_meters(gql: GQL, ent: dict[str, object], clock: Clock) -> None:
    await metered(gql, "c", "gpt", interval="DAY", measureUsageFrom="2024-01-15T00:00:00Z",
                  anchor="2024-01-15T00:00:00Z")
    await grant(gql, "c", "gpt", 10, "2024-01-15T00:00:00Z")
    await grant(gql, "c", "ai", 10, "2024-01-15T00:00:00Z")
    await events(gql, "c", ("2024-01-15T11:00:00Z", 1), extra={"model": "gpt"})
    await events(gql, "c", ("2024-01-15T11:00:00Z", 2), extra={"model": "claude"})
    await events(gql, "other", ("2024-01-15T11:00:00Z", 5), extra={"model": "gpt"})
    assert (await value(gql, "c", "gpt"))["usage"] == 1.0
    assert (await value(gql, "c", "ai"))["usage"] == 3.0
    await meter(gql, "calls", "call", "COUNT")
    await feature(gql, "calls", "calls")
    await metered(gql, "c", "calls", interval="DAY", measureUsageFrom="2024-01-15T00:00:00Z",
                  anchor="2024-01-15T00:00:00Z", isSoftLimit=True)
    await events(gql, "c", ("2024-01-15T11:00:00Z", 1), ("2024-01-15T11:30:00Z", 1), event_type="call")
    v = await value(gql, "c", "calls")
    assert v == {"hasAccess": True, "balance": 0.0, "usage": 2.0, "overage": 2.0, "config": None}


async def test_static_value_config(gql: GQL, ent: dict[str, object]) -> None:
    await feature(gql, "seats", meter_slug=None)
    await gql.ok(CREATE_ENT, s="c", input={"type": "STATIC", "featureKey": "seats", "config": {"n": [1, 2]}})
    assert (await value(gql, "c", "seats"))["config"] == {"n": [1, 2]}
    assert (await value(gql, "c", "seats"))["config"] == {"n": [1, 2]}
