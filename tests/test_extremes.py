"""Inputs at the edges of time, found by fuzzing (scripts/fuzz_graphql.py): answers stay cheap and clear."""

from __future__ import annotations

from tests.conftest import GQL
from tests.ent_helpers import events, feature, meter, metered

HISTORY = """query($id: ID!, $w: WindowSize!, $from: DateTime, $to: DateTime) { entitlement(id: $id) {
  ... on MeteredEntitlement { history(windowSize: $w, from: $from, to: $to) { windowedHistory { usage } } } } }"""
QUERY = """query($input: MeterQueryInput) { meterQuery(idOrSlug: "tokens", input: $input) {
  windowStart windowEnd value } }"""


async def test_history_range_is_bounded(gql: GQL) -> None:
    await meter(gql)
    await feature(gql, "ai")
    ent = await metered(gql, "c", "ai", interval="DAY", measureUsageFrom="2024-01-01T00:00:00Z")
    await events(gql, "c", ("2024-01-15T11:00:00Z", 2))
    # billions of minute windows: refused at once instead of computed
    err = await gql.error(HISTORY, "BAD_USER_INPUT", id=ent["id"], w="MINUTE", to="9999-12-31T00:00:00Z")
    assert "100000 MINUTE windows" in err["message"]
    await gql.error(HISTORY, "BAD_USER_INPUT", id=ent["id"], w="HOUR", **{"from": "2024-01-01T00:00:00Z"},
                    to="2036-01-01T00:00:00Z")
    # the same range in DAY windows is within the bound
    ok = await gql.ok(HISTORY, id=ent["id"], w="DAY", **{"from": "2024-01-01T00:00:00Z"}, to="2036-01-01T00:00:00Z")
    assert ok["entitlement"]["history"]["windowedHistory"] == [{"usage": 2.0}]


async def test_meter_query_over_centuries(gql: GQL) -> None:
    await meter(gql)
    await events(gql, "c", ("1000-01-01T00:00:00Z", 1), ("2024-03-31T01:30:00Z", 2), ("8999-12-31T12:00:00Z", 4))
    # 70 million hours: only the windows with data are worked out
    whole = {"from": "1000-01-01T00:00:00Z", "to": "8999-12-31T00:00:00Z"}
    hours = (await gql.ok(QUERY, input={**whole, "windowSize": "HOUR"}))["meterQuery"]
    assert hours == [
        {"windowStart": "1000-01-01T00:00:00Z", "windowEnd": "1000-01-01T01:00:00Z", "value": 1.0},
        {"windowStart": "2024-03-31T01:00:00Z", "windowEnd": "2024-03-31T02:00:00Z", "value": 2.0}]
    # DAY windows in Berlin over seven millennia: the DST day is 23 hours long
    days = (await gql.ok(QUERY, input={"from": "2024-03-30T23:00:00Z", "to": "8999-12-31T23:00:00Z",
                                       "windowSize": "DAY", "windowTimeZone": "Europe/Berlin"}))["meterQuery"]
    assert days[0] == {"windowStart": "2024-03-30T23:00:00Z", "windowEnd": "2024-03-31T22:00:00Z", "value": 2.0}
    assert days[1:] == [{"windowStart": "8999-12-30T23:00:00Z", "windowEnd": "8999-12-31T23:00:00Z", "value": 4.0}]
