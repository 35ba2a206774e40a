"""Meter queries over GraphQL (docs/semantics.md §1): windows, time zones, grouping, filters, exact values."""

from __future__ import annotations

from typing import Any

import pytest

from creditgate.domain.errors import NotFound
from creditgate.services.meter_query import list_meter_subjects
from creditgate.services.runtime import Runtime
from tests.conftest import GQL, Clock

INGEST = "mutation($e: [CloudEventInput!]!) { ingestEvents(events: $e) { accepted duplicates } }"
CREATE = "mutation($input: CreateMeterInput!) { createMeter(input: $input) { id } }"
QUERY = """query($m: String!, $q: MeterQueryInput) { meterQuery(idOrSlug: $m, input: $q) {
  windowStart windowEnd value subject groupBy } }"""


async def make(gql: GQL, slug: str, aggregation: str = "SUM", **extra: Any) -> None:
    spec = {"slug": slug, "eventType": "prompt", "aggregation": aggregation, **extra}
    if aggregation != "COUNT":
        spec.setdefault("valueProperty", "$.v")
    await gql.ok(CREATE, input=spec)


_seq = iter(range(10**9))


async def send(gql: GQL, *events: tuple[str, str, dict[str, Any]]) -> None:
    """Events as (subject, time, data)."""
    batch = [{"id": f"e{next(_seq)}", "source": "t", "type": "prompt", "subject": s, "time": t, "data": d}
             for s, t, d in events]
    await gql.ok(INGEST, e=batch)


async def query(gql: GQL, slug: str = "m", **q: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = (await gql.ok(QUERY, m=slug, q=q or None))["meterQuery"]
    return rows


def cells(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(r["windowStart"], r["windowEnd"], r["value"]) for r in rows]


async def test_exact_sums_and_awkward_values(gql: GQL) -> None:
    await make(gql, "m")
    await send(gql, *[("a", "2024-01-15T10:00:00Z", {"v": 0.1}) for _ in range(10)])
    assert cells(await query(gql)) == [("2024-01-15T10:00:00Z", "2024-01-15T12:01:00Z", 1.0)]
    await make(gql, "tiny")
    await send(gql, ("a", "2024-01-15T10:00:00Z", {"v": 1e-9}), ("a", "2024-01-15T10:00:00Z", {"v": "1e-9"}))
    assert (await query(gql, "tiny"))[0]["value"] == 2e-9
    await make(gql, "big")
    await send(gql, ("a", "2024-01-15T10:00:00Z", {"v": 12345678901234567890}),
               ("a", "2024-01-15T10:01:00Z", {"v": "0.000000000001"}))
    assert (await query(gql, "big"))[0]["value"] == 12345678901234567890.000000000001
    await make(gql, "neg")
    await send(gql, ("a", "2024-01-15T10:00:00Z", {"v": -2.5}), ("a", "2024-01-15T10:00:00Z", {"v": "  3 "}))
    assert (await query(gql, "neg"))[0]["value"] == 0.5


async def test_every_aggregation(gql: GQL) -> None:
    for agg in ["SUM", "COUNT", "AVG", "MIN", "MAX", "UNIQUE_COUNT"]:
        await make(gql, agg.lower(), agg)
    values = [0.1, 0.2, "0.3", 0.1, 5, -1]
    await send(gql, *[("a", f"2024-01-15T10:0{i}:00Z", {"v": v}) for i, v in enumerate(values)])
    got = {agg: (await query(gql, agg))[0]["value"] for agg in ["sum", "count", "avg", "min", "max", "unique_count"]}
    assert got == {"sum": 4.7, "count": 6, "avg": 4.7 / 6, "min": -1, "max": 5, "unique_count": 5}
    # AVG is the exact sum over the count
    await make(gql, "avg2", "AVG")
    await send(gql, *[("a", "2024-01-15T10:00:00Z", {"v": 0.1}) for _ in range(3)])
    assert (await query(gql, "avg2"))[0]["value"] == 0.1


async def test_windows_only_with_data_in_order(gql: GQL) -> None:
    await make(gql, "m")
    await send(gql, ("a", "2024-01-15T10:59:59Z", {"v": 1}), ("a", "2024-01-15T10:00:00Z", {"v": 2}),
               ("a", "2024-01-15T08:30:00Z", {"v": 4}), ("b", "2024-01-15T10:10:00Z", {"v": 8}))
    rng = {"from": "2024-01-15T08:00:00Z", "to": "2024-01-15T12:00:00Z"}
    assert cells(await query(gql, **rng, windowSize="HOUR")) == [
        ("2024-01-15T08:00:00Z", "2024-01-15T09:00:00Z", 4.0),
        ("2024-01-15T10:00:00Z", "2024-01-15T11:00:00Z", 11.0)]
    assert cells(await query(gql, **rng, windowSize="MINUTE")) == [
        ("2024-01-15T08:30:00Z", "2024-01-15T08:31:00Z", 4.0),
        ("2024-01-15T10:00:00Z", "2024-01-15T10:01:00Z", 2.0),
        ("2024-01-15T10:10:00Z", "2024-01-15T10:11:00Z", 8.0),
        ("2024-01-15T10:59:00Z", "2024-01-15T11:00:00Z", 1.0)]
    assert cells(await query(gql, **rng)) == [("2024-01-15T08:00:00Z", "2024-01-15T12:00:00Z", 15.0)]
    # [from, to) in minute buckets
    assert cells(await query(gql, **{"from": "2024-01-15T10:00:00Z", "to": "2024-01-15T10:59:00Z"})) == [
        ("2024-01-15T10:00:00Z", "2024-01-15T10:59:00Z", 10.0)]
    # windows are clipped to the range
    assert cells(await query(gql, windowSize="DAY", **{"from": "2024-01-15T10:00:00Z",
                                                       "to": "2024-01-15T10:30:00Z"})) == [
        ("2024-01-15T10:00:00Z", "2024-01-15T10:30:00Z", 10.0)]
    assert await query(gql, **{"from": "2024-01-16T00:00:00Z", "to": "2024-01-17T00:00:00Z"}) == []


async def test_default_range(gql: GQL, clock: Clock) -> None:
    await make(gql, "m")
    assert await query(gql) == []
    await send(gql, ("a", "2024-01-15T09:15:20Z", {"v": 1}), ("a", "2024-01-15T12:00:10Z", {"v": 2}),
               ("a", "2024-01-15T12:01:00Z", {"v": 4}))
    # from: the earliest data; to: now rounded up to the meter's window
    assert cells(await query(gql)) == [("2024-01-15T09:15:00Z", "2024-01-15T12:01:00Z", 3.0)]
    assert cells(await query(gql, windowSize="HOUR")) == [
        ("2024-01-15T09:00:00Z", "2024-01-15T10:00:00Z", 1.0),
        ("2024-01-15T12:00:00Z", "2024-01-15T12:01:00Z", 2.0)]
    await make(gql, "hourly", windowSize="HOUR")
    await send(gql, ("a", "2024-01-15T09:15:20Z", {"v": 1}))
    assert cells(await query(gql, "hourly")) == [("2024-01-15T09:00:00Z", "2024-01-15T13:00:00Z", 1.0)]


async def test_day_windows_across_dst_in_paris(gql: GQL) -> None:
    await make(gql, "m")
    # local days of 2024-03-30 (24h), 2024-03-31 (23h) and 2024-04-01 in Europe/Paris
    await send(gql, ("a", "2024-03-30T12:00:00Z", {"v": 1}), ("a", "2024-03-30T23:30:00Z", {"v": 2}),
               ("a", "2024-03-31T21:59:00Z", {"v": 4}), ("a", "2024-03-31T22:00:00Z", {"v": 8}))
    rows = await query(gql, windowSize="DAY", windowTimeZone="Europe/Paris",
                       **{"from": "2024-03-29T23:00:00Z", "to": "2024-04-01T22:00:00Z"})
    assert cells(rows) == [
        ("2024-03-29T23:00:00Z", "2024-03-30T23:00:00Z", 1.0),
        ("2024-03-30T23:00:00Z", "2024-03-31T22:00:00Z", 6.0),
        ("2024-03-31T22:00:00Z", "2024-04-01T22:00:00Z", 8.0)]
    hours = await query(gql, windowSize="HOUR", windowTimeZone="Asia/Kolkata",
                        **{"from": "2024-03-30T11:30:00Z", "to": "2024-03-30T13:30:00Z"})
    assert cells(hours) == [("2024-03-30T11:30:00Z", "2024-03-30T12:30:00Z", 1.0)]


async def test_query_errors(gql: GQL) -> None:
    await make(gql, "m", groupBy={"model": "$.model"})
    await make(gql, "hourly", windowSize="HOUR")
    ok = {"from": "2024-01-15T10:00:00Z", "to": "2024-01-15T11:00:00Z"}
    bad: list[tuple[str, dict[str, Any]]] = [
        ("m", {**ok, "windowTimeZone": "Mars/Olympus"}),
        ("m", {**ok, "from": "2024-01-15T10:00:30Z"}),
        ("m", {**ok, "to": "2024-01-15T10:59:59.5Z"}),
        ("m", {**ok, "to": "2024-01-15T10:00:00Z"}),
        ("m", {**ok, "to": "2024-01-15T09:00:00Z"}),
        ("m", {**ok, "groupBy": ["nope"]}),
        ("m", {**ok, "filterGroupBy": {"nope": "x"}}),
        ("m", {**ok, "filterGroupBy": {"model": 1}}),
        ("m", {**ok, "filterGroupBy": ["model"]}),
        ("hourly", {**ok, "windowSize": "MINUTE"}),
        ("hourly", {**ok, "from": "2024-01-15T10:30:00Z"}),
        ("hourly", {**ok, "windowTimeZone": "Asia/Kolkata"}),  # 10:00Z is :30 in Kolkata
    ]
    for slug, q in bad:
        await gql.error(QUERY, "BAD_USER_INPUT", m=slug, q=q)
    await gql.error(QUERY, "BAD_USER_INPUT", m="m", q={**ok, "windowSize": "WEEK"})
    await gql.error(QUERY, "NOT_FOUND", m="nope", q=ok)
    assert await query(gql, "hourly", **ok, windowSize="DAY") == []


async def test_subjects_and_group_by(gql: GQL) -> None:
    await make(gql, "m", groupBy={"model": "$.model", "n": "$.meta.n", "tier": "$['tier']"})
    t = "2024-01-15T10:00:00Z"
    await send(gql, ("a", t, {"v": 1, "model": "gpt", "meta": {"n": 1}, "tier": "pro"}),
               ("a", t, {"v": 2, "model": "gpt", "meta": {"n": 1.5}}),
               ("b", t, {"v": 4, "model": "llama", "meta": {"n": 1}, "tier": "pro"}),
               ("c", t, {"v": 8, "meta": {"n": True}}))
    rng = {"from": "2024-01-15T10:00:00Z", "to": "2024-01-15T11:00:00Z"}

    def view(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [(r["subject"], r["groupBy"], r["value"]) for r in rows]

    assert view(await query(gql, **rng)) == [(None, {}, 15.0)]
    assert view(await query(gql, **rng, groupBy=["subject"])) == [
        ("a", {}, 3.0), ("b", {}, 4.0), ("c", {}, 8.0)]
    assert view(await query(gql, **rng, subjects=["a", "c"])) == [("a", {}, 3.0), ("c", {}, 8.0)]
    assert view(await query(gql, **rng, groupBy=["model"])) == [
        (None, {"model": "gpt"}, 3.0), (None, {"model": "llama"}, 4.0), (None, {"model": None}, 8.0)]
    assert view(await query(gql, **rng, groupBy=["n", "subject"])) == [
        ("a", {"n": "1"}, 1.0), ("a", {"n": "1.5"}, 2.0), ("b", {"n": "1"}, 4.0), ("c", {"n": "true"}, 8.0)]
    assert view(await query(gql, **rng, filterGroupBy={"tier": "pro"})) == [(None, {}, 5.0)]
    assert view(await query(gql, **rng, filterGroupBy={"tier": "pro", "model": "gpt"}, groupBy=["subject"])) == [
        ("a", {}, 1.0)]
    assert view(await query(gql, **rng, filterGroupBy={"model": "none"})) == []
    assert view(await query(gql, **rng, subjects=[])) == []


async def test_unique_count_across_minutes_and_groups(gql: GQL) -> None:
    await make(gql, "m", "UNIQUE_COUNT", valueProperty="$.user", groupBy={"plan": "$.plan"})
    await send(gql, ("a", "2024-01-15T10:00:00Z", {"user": "u1", "plan": "x"}),
               ("a", "2024-01-15T10:01:00Z", {"user": "u1", "plan": "y"}),
               ("a", "2024-01-15T10:02:00Z", {"user": 7, "plan": "x"}),
               ("b", "2024-01-15T11:02:00Z", {"user": "7", "plan": "x"}))
    rng = {"from": "2024-01-15T10:00:00Z", "to": "2024-01-15T12:00:00Z"}
    assert cells(await query(gql, **rng)) == [("2024-01-15T10:00:00Z", "2024-01-15T12:00:00Z", 2.0)]
    assert [r["value"] for r in await query(gql, **rng, windowSize="HOUR")] == [2.0, 1.0]
    assert [(r["subject"], r["value"]) for r in await query(gql, **rng, groupBy=["subject"])] == [
        ("a", 2.0), ("b", 1.0)]
    assert [(r["groupBy"], r["value"]) for r in await query(gql, **rng, groupBy=["plan"])] == [
        ({"plan": "x"}, 2.0), ({"plan": "y"}, 1.0)]


async def test_deleted_meter_and_new_meter_see_only_new_events(gql: GQL) -> None:
    await make(gql, "m")
    await send(gql, ("a", "2024-01-15T10:00:00Z", {"v": 1}))
    await gql.ok('mutation { deleteMeter(idOrSlug: "m") }')
    await gql.error(QUERY, "NOT_FOUND", m="m")
    await make(gql, "m")
    assert await query(gql) == []


@pytest.mark.parametrize("window", ["MINUTE", "HOUR", "DAY"])
async def test_meter_window_sizes_round_default_to(gql: GQL, clock: Clock, window: str) -> None:
    await make(gql, "m", windowSize=window)
    await send(gql, ("a", "2024-01-15T00:00:00Z", {"v": 1}))
    end = {"MINUTE": "2024-01-15T12:01:00Z", "HOUR": "2024-01-15T13:00:00Z", "DAY": "2024-01-16T00:00:00Z"}
    assert cells(await query(gql)) == [("2024-01-15T00:00:00Z", end[window], 1.0)]


async def test_list_meter_subjects(gql: GQL, rt: Runtime) -> None:
    await make(gql, "m")
    await make(gql, "other", "COUNT")
    assert await list_meter_subjects(rt, "m") == []
    await send(gql, ("b", "2024-01-15T10:00:00Z", {"v": 1}), ("a", "2024-01-15T10:00:00Z", {"v": 1}),
               ("c", "2024-01-15T10:00:00Z", {"v": "bad"}))
    assert await list_meter_subjects(rt, "m") == ["a", "b"]
    assert await list_meter_subjects(rt, "other") == ["a", "b"]
    with pytest.raises(NotFound):
        await list_meter_subjects(rt, "nope")
