"""Entitlements by id or feature key, features by id or key (docs/semantics.md §2, §3), through the OpenMeter SDK."""

from __future__ import annotations

import httpx
import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from openmeter import Client

from tests.rest.conftest import API_KEY, Server
from tests.rest.test_sdk_entitlements import DAY_START, setup_metered, tokens

GRANT = {"amount": 5, "effectiveAt": DAY_START, "expiration": {"duration": "MONTH", "count": 1}}


def test_grants_listed_and_created_by_feature_key(om: Client, live: Server) -> None:
    ent = setup_metered(om, "cust-1")
    by_key = om.create_grant("cust-1", "ai", GRANT)
    assert by_key["entitlementId"] == ent["id"]
    for ref in (ent["id"], "ai"):
        assert [g["id"] for g in om.list_entitlement_grants("cust-1", ref)] == [by_key["id"]], ref
    assert om.list_entitlement_grants("cust-1", "nope") == []
    assert om.list_entitlement_grants("cust-2", "ai") == []  # another subject's feature key names nothing
    # a successor: the key names the live entitlement, the old id still lists its own grants when asked
    om.delete_entitlement("cust-1", ent["id"])
    live.clock.set("2024-01-15T12:01:30+00:00")
    succ = om.create_entitlement("cust-1", {"type": "metered", "featureKey": "ai", "usagePeriod": {"interval": "DAY"}})
    second = om.create_grant("cust-1", "ai", {**GRANT, "effectiveAt": "2024-01-15T12:01:00Z"})
    assert second["entitlementId"] == succ["id"]
    assert [g["id"] for g in om.list_entitlement_grants("cust-1", "ai")] == [second["id"]]
    assert om.list_entitlement_grants("cust-1", ent["id"]) == []
    assert [g["id"] for g in om.list_entitlement_grants("cust-1", ent["id"], include_deleted=True)] == [by_key["id"]]


def test_history_and_reset_by_feature_key(om: Client, live: Server) -> None:
    ent = setup_metered(om, "cust-1")
    om.create_grant("cust-1", "ai", GRANT)
    tokens(om, "cust-1", ("2024-01-15T11:00:00Z", 2))
    by_id = om.get_entitlement_history("cust-1", ent["id"], window_size="HOUR")
    assert om.get_entitlement_history("cust-1", "ai", window_size="HOUR") == by_id
    assert om.reset_entitlement_usage("cust-1", "ai", {}) is None
    assert om.get_entitlement("cust-1", ent["id"])["lastReset"] == "2024-01-15T12:00:00Z"
    for call in [lambda: om.get_entitlement_history("cust-1", "nope", window_size="HOUR"),
                 lambda: om.reset_entitlement_usage("cust-2", "ai", {})]:
        with pytest.raises(ResourceNotFoundError):
            call()


def test_features_by_id_or_key(om: Client) -> None:
    made = om.create_feature({"key": "sso", "name": "SSO"})
    assert om.get_feature("sso")["id"] == made["id"] == om.get_feature(made["id"])["id"]
    assert om.delete_feature("sso") is None
    with pytest.raises(ResourceNotFoundError):
        om.delete_feature("sso")  # archived: the key names no live feature
    with pytest.raises(ResourceNotFoundError):
        om.delete_feature(made["id"])  # archiving twice is NOT_FOUND
    again = om.create_feature({"key": "sso", "name": "SSO v2"})  # an archived key may be reused
    assert om.delete_feature(again["id"]) is None
    listed = om.list_features(include_archived=True)
    assert sorted((f["id"], f["archivedAt"] is not None) for f in listed) == sorted(
        [(made["id"], True), (again["id"], True)])
    with pytest.raises(HttpResponseError) as err:
        om.delete_feature("missing")
    assert err.value.status_code == 404


def test_override_and_get_by_id(om: Client, live: Server) -> None:
    """PUT .../{idOrFeatureKey}/override (the Node SDK's overrideEntitlement) and GET /entitlements/{id}."""
    ent = setup_metered(om, "cust-1")
    om.create_feature({"key": "sso", "name": "SSO"})
    auth = {"Authorization": f"Bearer {API_KEY}"}
    url = f"{live.url}/api/v1/subjects/cust-1/entitlements"
    got = httpx.get(f"{live.url}/api/v1/entitlements/{ent['id']}", headers=auth)
    assert got.status_code == 200 and got.json()["subjectKey"] == "cust-1"
    assert httpx.get(f"{live.url}/api/v1/entitlements/01HZZZZZZZZZZZZZZZZZZZZZZZ", headers=auth).status_code == 404
    other_feature = httpx.put(f"{url}/ai/override", json={"type": "boolean", "featureKey": "sso"}, headers=auth)
    assert other_feature.status_code == 400  # an override keeps the feature; nothing changed
    assert "deletedAt" not in om.get_entitlement("cust-1", ent["id"])
    new = httpx.put(f"{url}/ai/override", headers=auth, json={
        "type": "metered", "featureKey": "ai", "usagePeriod": {"interval": "MONTH"}, "issueAfterReset": 7})
    assert new.status_code == 201, new.text
    assert new.json()["usagePeriod"]["interval"] == "MONTH"
    assert om.get_entitlement_value("cust-1", "ai")["balance"] == 7.0
    old = om.get_entitlement("cust-1", ent["id"])
    assert old["deletedAt"] == "2024-01-15T12:00:30Z"
    assert httpx.put(f"{url}/{ent['id']}/override", json={"type": "boolean", "featureKey": "ai"},
                     headers=auth).status_code == 404  # the old one is gone
    assert httpx.put(f"{live.url}/api/v1/subjects/cust-2/entitlements/ai/override",
                     json={"type": "boolean", "featureKey": "ai"}, headers=auth).status_code == 404


def test_list_filters(om: Client, live: Server) -> None:
    """The Node SDK's filters on /entitlements (subject, feature, entitlementType) and /grants (subject, feature)."""
    ent = setup_metered(om, "cust-1")
    om.create_feature({"key": "sso", "name": "SSO"})
    sso = om.create_entitlement("cust-2", {"type": "boolean", "featureKey": "sso"})
    grant = om.create_grant("cust-1", "ai", GRANT)

    def ids(path: str, **params: object) -> list[str]:
        resp = httpx.get(f"{live.url}/api/v1/{path}", params=params, headers={"Authorization": f"Bearer {API_KEY}"})
        assert resp.status_code == 200, resp.text
        return [x["id"] for x in resp.json()]

    assert ids("entitlements", subject=["cust-1", "cust-3"]) == [ent["id"]]
    assert ids("entitlements", feature=[sso["featureId"]]) == [sso["id"]]  # a feature id
    assert ids("entitlements", feature=["ai", "sso"], entitlementType=["boolean"]) == [sso["id"]]
    assert sorted(ids("entitlements")) == sorted([ent["id"], sso["id"]])
    assert ids("grants", subject=["cust-1"], feature=["ai"]) == [grant["id"]]
    assert ids("grants", subject=["cust-2"]) == [] == ids("grants", feature=["sso"])
    assert ids("features", meterSlug=["tokens_total", "none"]) == [ent["featureId"]]
    bad = httpx.get(f"{live.url}/api/v1/entitlements", params={"entitlementType": "gold"},
                    headers={"Authorization": f"Bearer {API_KEY}"})
    assert bad.status_code == 400
