"""The SDK's async client (openmeter.aio, over aiohttp) against the live server: the same wire format."""

from __future__ import annotations

import pytest
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from openmeter.aio import Client as AsyncClient

from tests.rest.conftest import API_KEY, Server

DAY_START = "2024-01-15T00:00:00Z"


async def test_async_client_end_to_end(live: Server) -> None:
    async with AsyncClient(endpoint=live.url, headers={"Authorization": f"Bearer {API_KEY}"},
                           retry_total=0) as om:
        await om.create_meter({"slug": "calls", "eventType": "call", "aggregation": "COUNT"})
        feature = await om.create_feature({"key": "api", "name": "API calls", "meterSlug": "calls"})
        with pytest.raises(ResourceExistsError):
            await om.create_feature({"key": "api", "name": "again", "meterSlug": "calls"})
        ent = await om.create_entitlement("cust-a", {
            "type": "metered", "featureKey": "api", "usagePeriod": {"interval": "DAY", "anchor": DAY_START},
            "measureUsageFrom": DAY_START, "issueAfterReset": 3})
        assert ent["type"] == "metered" and ent["featureId"] == feature["id"]
        await om.ingest_events([{"specversion": "1.0", "id": f"c{i}", "source": "s", "type": "call",
                                 "subject": "cust-a", "time": f"2024-01-15T11:0{i}:00Z"} for i in range(4)])
        value = await om.get_entitlement_value("cust-a", "api")
        # issueAfterReset 3 against 4 calls: balance 0, overage 1, no access (hard limit)
        assert value == {"hasAccess": False, "balance": 0.0, "usage": 4.0, "overage": 1.0}
        grants = await om.list_entitlement_grants("cust-a", ent["id"])
        assert [g["amount"] for g in grants] == [3.0]
        assert [e["id"] for e in await om.list_subject_entitlements("cust-a")] == [ent["id"]]
        with pytest.raises(ResourceNotFoundError):
            await om.get_entitlement_value("cust-a", "nope")
        await om.delete_entitlement("cust-a", ent["id"])
        assert await om.list_subject_entitlements("cust-a") == []
