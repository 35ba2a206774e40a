"""Subjects, features and debug metrics through the official OpenMeter SDK against a live server."""

from __future__ import annotations

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from openmeter import Client

from tests.rest.conftest import Server
from tests.rest.test_edges import sample


def test_subjects(om: Client) -> None:
    created = om.upsert_subject([{"key": "customer-1", "displayName": "ACME", "metadata": {"a": 1}},
                                 {"key": "customer 2/x"}])
    assert [s["key"] for s in created] == ["customer-1", "customer 2/x"]
    first = created[0]
    assert first["displayName"] == "ACME" and first["metadata"] == {"a": 1}
    assert first["createdAt"] == "2024-01-15T12:00:30Z"
    assert om.get_subject("customer-1")["id"] == first["id"]
    assert om.get_subject(first["id"])["key"] == "customer-1"
    assert om.get_subject("customer 2/x")["key"] == "customer 2/x"  # %2F stays inside the segment
    again = om.upsert_subject([{"key": "customer-1", "displayName": "ACME Inc"}])[0]
    assert again["id"] == first["id"] and again["displayName"] == "ACME Inc"
    assert sorted(s["key"] for s in om.list_subjects()) == ["customer 2/x", "customer-1"]
    assert om.delete_subject("customer-1") is None
    with pytest.raises(ResourceNotFoundError):
        om.get_subject("customer-1")
    with pytest.raises(ResourceNotFoundError):
        om.delete_subject("customer-1")
    with pytest.raises(HttpResponseError) as err:
        om.upsert_subject([{"key": "  "}])
    assert err.value.status_code == 400


def test_features(om: Client, live: Server) -> None:
    f = om.create_feature({"key": "sso", "name": "Single sign-on", "metadata": {"tier": "pro"}})
    assert f["key"] == "sso" and f["metadata"] == {"tier": "pro"} and "archivedAt" not in f
    assert f["createdAt"] == "2024-01-15T12:00:30Z"
    assert om.get_feature(f["id"])["key"] == "sso"
    assert om.get_feature("sso")["id"] == f["id"]
    with pytest.raises(ResourceExistsError) as err:
        om.create_feature({"key": "sso", "name": "again"})
    assert err.value.response.json()["extensions"]["conflictingEntityId"] == f["id"]
    live.clock.set("2024-01-15T12:05:00+00:00")
    other = om.create_feature({"key": "ai-tokens", "name": "AI"})
    assert [x["key"] for x in om.list_features()] == ["sso", "ai-tokens"]
    assert [x["key"] for x in om.list_features(order_by="createdAt", limit=1, offset=1)] == ["ai-tokens"]
    assert om.delete_feature(f["id"]) is None
    assert [x["id"] for x in om.list_features()] == [other["id"]]
    archived = [x for x in om.list_features(include_archived=True) if x["id"] == f["id"]]
    assert archived[0]["archivedAt"] == "2024-01-15T12:05:00Z"
    with pytest.raises(ResourceNotFoundError):
        om.delete_feature(f["id"])
    with pytest.raises(ResourceNotFoundError):
        om.get_feature("nope")


def test_feature_errors(om: Client) -> None:
    for body in [{"key": "UPPER", "name": "x"}, {"key": "x", "name": 5}, {"name": "x"},
                 {"key": "x", "name": "x", "metadata": [1]},
                 {"key": "x", "name": "x", "meterGroupByFilters": {"a": "b"}}]:
        with pytest.raises(HttpResponseError) as err:
            om.create_feature(body)
        assert err.value.status_code == 400, body
        problem = err.value.response.json()
        assert problem["status"] == 400 and problem["title"] == "Bad Request" and problem["detail"]
        assert err.value.response.headers["content-type"] == "application/problem+json"
    with pytest.raises(ResourceNotFoundError):
        om.create_feature({"key": "x", "name": "x", "meterSlug": "nope"})
    for bad in [{"limit": 0}, {"order_by": "nope"}, {"offset": -1}]:
        with pytest.raises(HttpResponseError) as err:
            om.list_features(**bad)
        assert err.value.status_code == 400


def test_authentication(live: Server) -> None:
    with pytest.raises(ClientAuthenticationError):
        live.client(token=None).list_subjects()
    with pytest.raises(ClientAuthenticationError):
        live.client(token="wrong").list_features()


def test_debug_metrics(om: Client) -> None:
    before = om.get_debug_metrics()
    assert isinstance(before, str)
    om.list_subjects()
    om.list_subjects()
    after = om.get_debug_metrics()
    for op, n in [("listSubjects", 2), ("getDebugMetrics", 1)]:  # exact, from this test's own baseline
        labels = {"operation": op, "status": "200"}
        assert sample(after, "creditgate_http_requests_total", **labels) - \
            sample(before, "creditgate_http_requests_total", **labels) == n, op
