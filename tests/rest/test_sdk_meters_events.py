"""Meters, event ingest/listing and meter queries through the official OpenMeter SDK."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from openmeter import Client

from tests.rest.conftest import API_KEY, Server

METER = {"slug": "tokens_total", "eventType": "tokens", "aggregation": "SUM", "valueProperty": "$.tokens",
         "groupBy": {"model": "$.model"}, "windowSize": "MINUTE", "description": "AI tokens"}


def ev(i: int, subject: str, tokens: object, model: str = "gpt-4", time: str = "2024-01-15T11:00:10Z") -> dict:
    return {"specversion": "1.0", "id": f"e{i}", "source": "test", "type": "tokens", "subject": subject,
            "time": time, "data": {"tokens": tokens, "model": model}}


def test_meters(om: Client) -> None:
    m = om.create_meter(METER)
    assert {k: m[k] for k in METER} == METER and m["id"]
    assert om.get_meter("tokens_total")["id"] == m["id"]
    assert om.get_meter(m["id"])["slug"] == "tokens_total"
    assert [x["slug"] for x in om.list_meters()] == ["tokens_total"]
    with pytest.raises(ResourceExistsError):
        om.create_meter(METER)
    for bad in [{**METER, "aggregation": "MEDIAN"}, {**METER, "slug": "Bad Slug"}, {**METER, "windowSize": "WEEK"},
                {k: v for k, v in METER.items() if k != "eventType"}]:
        with pytest.raises(HttpResponseError) as err:
            om.create_meter(bad)
        assert err.value.status_code == 400, bad
    count = om.create_meter({"slug": "calls", "eventType": "call", "aggregation": "COUNT"})
    assert count["windowSize"] == "MINUTE" and "valueProperty" not in count
    assert om.delete_meter("calls") is None
    with pytest.raises(ResourceNotFoundError):
        om.get_meter("calls")
    with pytest.raises(ResourceNotFoundError):
        om.delete_meter("calls")


def test_ingest_list_and_query(om: Client) -> None:
    om.create_meter(METER)
    assert om.ingest_events(ev(1, "cust-1", 5)) is None  # application/cloudevents+json
    assert om.ingest_events([ev(2, "cust-1", 0.1, "gpt-3"), ev(3, "cust-2", "7"), ev(1, "cust-1", 5),
                             ev(4, "cust-1", "lots", time="2024-01-15T11:01:00Z")]) is None  # batch
    events = om.list_events(limit=10)
    assert len(events) == 4  # the duplicate (source, id) is skipped
    by_id = {e["event"]["id"]: e for e in events}
    assert by_id["e4"]["validationError"] and "validationError" not in by_id["e1"]
    assert by_id["e1"]["event"] == {"specversion": "1.0", "id": "e1", "source": "test", "type": "tokens",
                                    "subject": "cust-1", "time": "2024-01-15T11:00:10Z",
                                    "data": {"tokens": 5, "model": "gpt-4"}}
    assert [e["event"]["id"] for e in om.list_events(
        from_parameter=datetime(2024, 1, 15, 11, 1, tzinfo=UTC), limit=10)] == ["e4"]
    assert sorted(om.list_meter_subjects("tokens_total")) == ["cust-1", "cust-2"]

    whole = om.query_meter("tokens_total")
    assert [r["value"] for r in whole["data"]] == [12.1]
    per = om.query_meter("tokens_total", from_parameter=datetime(2024, 1, 15, 11, 0, tzinfo=UTC),
                         to=datetime(2024, 1, 15, 12, 0, tzinfo=UTC), window_size="HOUR",
                         subject=["cust-1", "cust-2"], group_by=["subject", "model"])
    assert per["windowSize"] == "HOUR" and per["from"] == "2024-01-15T11:00:00Z"
    rows = {(r["subject"], r["groupBy"]["model"]): r for r in per["data"]}
    assert rows[("cust-1", "gpt-4")]["value"] == 5 and rows[("cust-1", "gpt-3")]["value"] == 0.1
    assert rows[("cust-2", "gpt-4")]["windowStart"] == "2024-01-15T11:00:00Z"
    assert rows[("cust-2", "gpt-4")]["windowEnd"] == "2024-01-15T12:00:00Z"
    filtered = om.query_meter("tokens_total", filter_group_by={"model": "gpt-3"}, window_time_zone="Europe/Budapest")
    assert [r["value"] for r in filtered["data"]] == [0.1]
    for kwargs in [{"window_time_zone": "Mars/Olympus"}, {"group_by": ["nope"]}, {"window_size": "WEEK"},
                   {"from_parameter": datetime(2024, 1, 15, 11, 0, 30, tzinfo=UTC)}]:
        with pytest.raises(HttpResponseError) as err:
            om.query_meter("tokens_total", **kwargs)
        assert err.value.status_code == 400, kwargs
    with pytest.raises(ResourceNotFoundError):
        om.query_meter("nope")


def test_csv_only_when_asked_first(live: Server, om: Client) -> None:
    om.create_meter(METER)
    om.ingest_events([ev(1, "cust-1", 5), ev(2, "cust-2", 2, "gpt-3")])
    headers = {"authorization": f"Bearer {API_KEY}", "accept": "text/csv"}
    resp = httpx.get(f"{live.url}/api/v1/meters/tokens_total/query",
                     params={"groupBy": ["subject", "model"], "windowSize": "MINUTE"}, headers=headers)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
    assert resp.text.splitlines() == ["window_start,window_end,subject,model,value",
                                      "2024-01-15T11:00:00Z,2024-01-15T11:01:00Z,cust-1,gpt-4,5",
                                      "2024-01-15T11:00:00Z,2024-01-15T11:01:00Z,cust-2,gpt-3,2"]


def test_ingest_errors(om: Client, live: Server) -> None:
    for bad in [{"id": "x", "source": "s", "type": "t"}, [ev(1, "a", 1), {**ev(2, "a", 1), "time": "yesterday"}],
                [ev(3, "a", 1), "not an object"], {**ev(4, "a", 1), "data": [1]}]:
        with pytest.raises(HttpResponseError) as err:
            om.ingest_events(bad)
        assert err.value.status_code == 400, bad
    assert om.list_events() == []  # all or nothing
    with pytest.raises(HttpResponseError) as err:
        om.ingest_events(b"{not json", content_type="application/cloudevents+json")
    assert err.value.status_code == 400
    assert err.value.response.json()["detail"] == "the request body is not valid JSON"
    resp = httpx.post(f"{live.url}/api/v1/events", content=b"a=b", headers={
        "authorization": f"Bearer {API_KEY}", "content-type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 415
    with pytest.raises(HttpResponseError) as err:
        om.list_events(limit=0)
    assert err.value.status_code == 400
