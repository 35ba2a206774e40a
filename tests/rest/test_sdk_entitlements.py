"""Entitlements, values, history, resets, grants and portal tokens through the official OpenMeter SDK."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from openmeter import Client

from tests.rest.conftest import Server

DAY_START = "2024-01-15T00:00:00Z"


def setup_metered(om: Client, subject: str = "cust-1") -> dict[str, Any]:
    om.create_meter({"slug": "tokens_total", "eventType": "tokens", "aggregation": "SUM",
                     "valueProperty": "$.tokens", "groupBy": {"model": "$.model"}})
    om.create_feature({"key": "ai", "name": "AI tokens", "meterSlug": "tokens_total"})
    ent: dict[str, Any] = om.create_entitlement(subject, {
        "type": "metered", "featureKey": "ai", "usagePeriod": {"interval": "DAY", "anchor": DAY_START},
        "measureUsageFrom": DAY_START, "metadata": {"plan": "pro"}})
    return ent


def tokens(om: Client, subject: str, *amounts: tuple[str, float]) -> None:
    om.ingest_events([{"specversion": "1.0", "id": f"{subject}-{t}-{v}", "source": "t", "type": "tokens",
                       "subject": subject, "time": t, "data": {"tokens": v, "model": "gpt"}} for t, v in amounts])


def test_metered_entitlement_value_history_reset(om: Client, live: Server) -> None:
    ent = setup_metered(om)
    assert ent["type"] == "metered" and ent["subjectKey"] == "cust-1" and ent["featureKey"] == "ai"
    assert ent["usagePeriod"] == {"interval": "DAY", "anchor": DAY_START}
    assert ent["currentUsagePeriod"] == {"from": DAY_START, "to": "2024-01-16T00:00:00Z"}
    assert ent["lastReset"] == DAY_START and ent["isSoftLimit"] is False and ent["metadata"] == {"plan": "pro"}
    grant = om.create_grant("cust-1", ent["id"], {
        "amount": 1, "effectiveAt": DAY_START, "expiration": {"duration": "MONTH", "count": 1}, "priority": 1,
        "recurrence": {"interval": "DAY"}})
    assert grant["amount"] == 1 and grant["entitlementId"] == ent["id"]
    assert grant["expiresAt"] == "2024-02-15T00:00:00Z" and grant["nextRecurrence"] == "2024-01-16T00:00:00Z"
    assert grant["recurrence"] == {"interval": "DAY", "anchor": DAY_START}
    tokens(om, "cust-1", *[(f"2024-01-15T11:{m:02d}:00Z", 0.1) for m in range(10)])  # no drift: exactly 0
    for ref in (ent["id"], "ai"):
        v = om.get_entitlement_value("cust-1", ref)
        assert v == {"hasAccess": False, "balance": 0.0, "usage": 1.0, "overage": 0.0}, v
    past = om.get_entitlement_value("cust-1", "ai", time=datetime(2024, 1, 15, 11, 5, tzinfo=UTC))
    assert past["balance"] == 0.5 and past["hasAccess"] is True
    h = om.get_entitlement_history("cust-1", ent["id"], window_size="HOUR")
    assert [(w["period"]["from"], w["usage"]) for w in h["windowedHistory"]] == [("2024-01-15T11:00:00Z", 1.0)]
    assert h["windowedHistory"][0]["balanceAtStart"] == 1.0
    seg = h["burndownHistory"][0]
    assert seg["grantBalancesAtStart"] == {grant["id"]: 1.0} and seg["grantUsages"] == [
        {"grantId": grant["id"], "usage": 1.0}]
    with pytest.raises(HttpResponseError) as err:
        om.get_entitlement_history("cust-1", ent["id"], window_size="HOUR", window_time_zone="Nowhere/Land")
    assert err.value.status_code == 400
    assert om.reset_entitlement_usage("cust-1", ent["id"], {}) is None
    after = om.get_entitlement("cust-1", ent["id"])
    assert after["lastReset"] == "2024-01-15T12:00:00Z"
    assert after["usagePeriod"]["anchor"] == "2024-01-15T12:00:00Z"
    assert om.get_entitlement_value("cust-1", "ai")["usage"] == 0.0
    with pytest.raises(HttpResponseError) as err:
        om.reset_entitlement_usage("cust-1", ent["id"], {"effectiveAt": "2024-01-16T00:00:00Z"})
    assert err.value.status_code == 400  # in the future
    assert [g["id"] for g in om.list_entitlement_grants("cust-1", ent["id"])] == [grant["id"]]
    assert [g["id"] for g in om.list_grants()] == [grant["id"]]
    assert om.void_grant(grant["id"]) is None
    with pytest.raises(HttpResponseError) as err:
        om.void_grant(grant["id"])
    assert err.value.status_code == 400  # voiding twice (docs/semantics.md §5)
    with pytest.raises(ResourceNotFoundError):
        om.void_grant("01HZZZZZZZZZZZZZZZZZZZZZZZ")
    voided = om.list_grants(include_deleted=True)
    assert voided[0]["voidedAt"] == "2024-01-15T12:00:00Z"


def test_entitlement_types_conflicts_and_deletion(om: Client, live: Server) -> None:
    om.create_feature({"key": "sso", "name": "SSO"})
    om.create_feature({"key": "seats", "name": "Seats"})
    f3 = om.create_feature({"key": "beta", "name": "Beta"})
    boolean = om.create_entitlement("cust-1", {"type": "boolean", "featureKey": "sso"})
    assert boolean["type"] == "boolean" and "config" not in boolean and "usagePeriod" not in boolean
    static = om.create_entitlement("cust-1", {"type": "static", "featureKey": "seats",
                                              "config": '{"integrations": ["github"]}'})
    assert static["type"] == "static" and static["config"] == '{"integrations":["github"]}'
    by_id = om.create_entitlement("cust-2", {"type": "boolean", "featureId": f3["id"]})
    assert by_id["featureKey"] == "beta"
    assert om.get_entitlement_value("cust-1", "sso") == {"hasAccess": True}
    assert om.get_entitlement_value("cust-1", "seats") == {"hasAccess": True,
                                                            "config": '{"integrations":["github"]}'}
    # A duplicate is a 409 problem that this SDK method returns instead of raising.
    dup = om.create_entitlement("cust-1", {"type": "boolean", "featureKey": "sso"})
    assert dup["status"] == 409 and dup["extensions"]["conflictingEntityId"] == boolean["id"]
    for body in [{"type": "static", "featureKey": "beta", "config": "{nope"},
                 {"type": "static", "featureKey": "beta", "config": "[1]"},
                 {"type": "STATIC", "featureKey": "beta", "config": "{}"},
                 {"type": "metered", "featureKey": "beta", "usagePeriod": {"interval": "DAY"}},
                 {"type": "boolean"}, {"type": "boolean", "featureKey": "beta", "usagePeriod": {"interval": "DAY"}}]:
        with pytest.raises(HttpResponseError) as err:
            om.create_entitlement("cust-1", body)
        assert err.value.status_code == 400, body
    with pytest.raises(ResourceNotFoundError):
        om.create_entitlement("cust-1", {"type": "boolean", "featureKey": "missing"})
    subject = om.get_subject("cust-1")  # created with its first entitlement
    listed = om.list_subject_entitlements(subject["id"])  # path by subject id works too
    assert sorted(e["featureKey"] for e in listed) == ["seats", "sso"]
    assert len(om.list_entitlements()) == 3
    assert [e["id"] for e in om.list_entitlements(limit=1, offset=2)] == [by_id["id"]]
    live.clock.set("2024-01-15T13:00:00+00:00")
    assert om.delete_entitlement("cust-1", boolean["id"]) is None
    with pytest.raises(ResourceNotFoundError):
        om.delete_entitlement("cust-1", boolean["id"])
    with pytest.raises(ResourceNotFoundError):
        om.get_entitlement_value("cust-1", "sso")
    # before the deletion it is still visible (audit)
    assert om.get_entitlement_value("cust-1", "sso", time=datetime(2024, 1, 15, 12, 30, tzinfo=UTC))["hasAccess"]
    assert sorted(e["featureKey"] for e in om.list_subject_entitlements("cust-1")) == ["seats"]
    deleted = [e for e in om.list_subject_entitlements("cust-1", include_deleted=True) if e["id"] == boolean["id"]]
    assert deleted[0]["deletedAt"] == "2024-01-15T13:00:00Z"
    assert om.get_entitlement("cust-1", boolean["id"])["deletedAt"] == "2024-01-15T13:00:00Z"
    with pytest.raises(ResourceNotFoundError):
        om.get_entitlement("cust-2", boolean["id"])  # another subject's entitlement
    with pytest.raises(HttpResponseError) as err:
        om.create_grant("cust-1", static["id"], {"amount": 1, "effectiveAt": DAY_START,
                                                 "expiration": {"duration": "DAY", "count": 1}})
    assert err.value.status_code == 400  # only metered entitlements take grants
    with pytest.raises(HttpResponseError) as err:
        om.get_entitlement_history("cust-1", static["id"], window_size="DAY")
    assert err.value.status_code == 400


def test_grant_validation(om: Client) -> None:
    ent = setup_metered(om)
    base = {"amount": 5, "effectiveAt": DAY_START, "expiration": {"duration": "DAY", "count": 1}}
    for bad in [{**base, "amount": 0}, {**base, "amount": "x"}, {**base, "priority": 256},
                {**base, "expiration": {"duration": "FORTNIGHT", "count": 1}},
                {**base, "expiration": {"duration": "DAY", "count": 0}},
                {**base, "minRolloverAmount": 2, "maxRolloverAmount": 1},
                {**base, "effectiveAt": "2024-01-14T00:00:00Z"}, {**base, "effectiveAt": "soon"},
                {**base, "effectiveAt": "0001-01-01T00:00:00+03:00"},
                {**base, "effectiveAt": "9999-12-31T00:00:00Z", "expiration": {"duration": "YEAR", "count": 1}},
                {**base, "expiration": {"duration": "YEAR", "count": 10**12}},
                {k: v for k, v in base.items() if k != "expiration"}]:
        with pytest.raises(HttpResponseError) as err:
            om.create_grant("cust-1", ent["id"], bad)
        assert err.value.status_code == 400, bad
    with pytest.raises(ResourceNotFoundError):
        om.create_grant("cust-1", "01HZZZZZZZZZZZZZZZZZZZZZZZ", base)
    with pytest.raises(ResourceNotFoundError):
        om.create_grant("cust-2", ent["id"], base)


def test_portal_tokens(om: Client, live: Server) -> None:
    ent = setup_metered(om, "cust-1")
    om.create_entitlement("cust-2", {"type": "metered", "featureKey": "ai", "usagePeriod": {"interval": "DAY"}})
    tokens(om, "cust-1", ("2024-01-15T11:00:00Z", 3))
    tokens(om, "cust-2", ("2024-01-15T11:00:00Z", 4))
    created = om.create_portal_token({"subject": "cust-1"})
    assert created["subject"] == "cust-1" and created["token"] and created["expired"] is False
    assert created["expiresAt"] == "2024-01-15T13:00:30Z"
    portal = live.client(token=created["token"])
    assert portal.get_subject("cust-1")["key"] == "cust-1"
    assert [e["id"] for e in portal.list_subject_entitlements("cust-1")] == [ent["id"]]
    assert portal.get_entitlement_value("cust-1", "ai")["usage"] == 3.0
    assert portal.get_entitlement("cust-1", ent["id"])["id"] == ent["id"]
    assert portal.get_entitlement_history("cust-1", ent["id"], window_size="DAY")["windowedHistory"]
    assert portal.list_entitlement_grants("cust-1", ent["id"]) == []
    q = portal.query_portal_meter("tokens_total", window_size="HOUR", group_by=["model"])
    assert [(r["value"], r["groupBy"]) for r in q["data"]] == [(3.0, {"model": "gpt"})]
    for call in [lambda: portal.get_subject("cust-2"), lambda: portal.get_entitlement_value("cust-2", "ai"),
                 lambda: portal.list_subjects(), lambda: portal.create_feature({"key": "x", "name": "x"}),
                 lambda: portal.list_meters(), lambda: portal.create_portal_token({"subject": "cust-1"}),
                 lambda: portal.reset_entitlement_usage("cust-1", ent["id"], {})]:
        with pytest.raises(HttpResponseError) as err:
            call()
        assert err.value.status_code == 403
    with pytest.raises(HttpResponseError) as err:
        om.query_portal_meter("tokens_total")  # an API key has no subject
    assert err.value.status_code == 403
    with pytest.raises(HttpResponseError) as err:
        om.create_portal_token({"subject": "cust-1", "allowedMeterSlugs": ["tokens_total"]})
    assert err.value.status_code == 400
    live.clock.set("2024-01-15T12:10:00+00:00")
    second = om.create_portal_token({"subject": "cust-2", "expiresAt": "2024-01-16T12:10:00Z"})
    assert second["expiresAt"] == "2024-01-16T12:10:00Z"
    listed = om.list_portal_tokens()
    assert [t["id"] for t in listed] == [second["id"], created["id"]] and "token" not in listed[0]
    assert [t["id"] for t in om.list_portal_tokens(limit=1)] == [second["id"]]
    assert om.invalidate_portal_tokens({"subject": "cust-1"}) is None
    with pytest.raises(ClientAuthenticationError):
        portal.get_entitlement_value("cust-1", "ai")
    assert [t["expired"] for t in om.list_portal_tokens()] == [False, True]
    assert om.invalidate_portal_tokens({"id": second["id"]}) is None
    with pytest.raises(ClientAuthenticationError):
        live.client(token=second["token"]).get_subject("cust-2")
    with pytest.raises(HttpResponseError) as err:
        om.invalidate_portal_tokens({})
    assert err.value.status_code == 400


def test_conflict_status_of_sdk_methods(om: Client) -> None:
    om.create_meter({"slug": "m", "eventType": "t", "aggregation": "COUNT"})
    om.create_feature({"key": "f", "name": "F", "meterSlug": "m"})
    with pytest.raises(ResourceExistsError) as err:
        om.delete_meter("m")  # still used by a live feature
    assert err.value.response.json()["extensions"]["conflictingEntityId"]
