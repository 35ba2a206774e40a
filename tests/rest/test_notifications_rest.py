"""REST /api/v1/notification/* (OpenMeter's shapes, docs/rest.md): channels, rules, rule tests, events; paging as
the Node SDK expects; problem+json errors; subject tokens refused; every answer true to the OpenAPI document."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import jsonschema_rs
import pytest

from tests.conftest import GQL, Clock
from tests.ent_helpers import feature, grant, meter, metered

API = "/api/v1/notification"
SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef01234567").decode()
MISSING = "01J00000000000000000000000"
NOTIFICATION_OPERATIONS = {
    ("get", "/api/v1/notification/channels"), ("post", "/api/v1/notification/channels"),
    ("get", "/api/v1/notification/channels/{channelId}"), ("put", "/api/v1/notification/channels/{channelId}"),
    ("delete", "/api/v1/notification/channels/{channelId}"),
    ("get", "/api/v1/notification/rules"), ("post", "/api/v1/notification/rules"),
    ("get", "/api/v1/notification/rules/{ruleId}"), ("put", "/api/v1/notification/rules/{ruleId}"),
    ("delete", "/api/v1/notification/rules/{ruleId}"), ("post", "/api/v1/notification/rules/{ruleId}/test"),
    ("get", "/api/v1/notification/events"), ("get", "/api/v1/notification/events/{eventId}"),
}


class Api:
    """REST calls through the ASGI app; every JSON answer is checked against the OpenAPI document."""

    def __init__(self, http: httpx.AsyncClient, doc: dict[str, Any]) -> None:
        self.http, self.doc = http, doc

    async def __call__(self, method: str, path: str, body: Any = None, status: int = 200, token: str | None = None,
                       template: str | None = None, **params: Any) -> Any:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        url = path if path.startswith("/api/") else API + path
        resp = await self.http.request(method, url, json=body, params=params, headers=headers)
        assert resp.status_code == status, (method, path, resp.text)
        if status == 204:
            assert resp.content == b""
            return None
        kind = "application/json" if status < 400 else "application/problem+json"
        assert resp.headers["content-type"] == kind, resp.headers
        if template is not None:
            content = self.doc["paths"]["/api/v1/notification" + template][method.lower()]["responses"][str(status)]
            schema = {**content["content"][kind]["schema"], "components": self.doc["components"]}
            errors = [str(e) for e in jsonschema_rs.validator_for(schema).iter_errors(resp.json())]
            assert not errors, (path, errors)
        return resp.json()


@pytest.fixture
async def api(http: httpx.AsyncClient) -> Api:
    doc = (await http.get("/api/v1/openapi.json")).json()
    return Api(http, doc)


@pytest.fixture
async def world(gql: GQL) -> dict[str, Any]:
    """Feature "ai" (metered) and "sso" (not), a metered entitlement of "cust" with 100 granted."""
    await meter(gql)
    ai = await feature(gql, "ai")
    await feature(gql, "sso", meter_slug=None)
    ent = await metered(gql, "cust", "ai", interval="MONTH")
    await grant(gql, "cust", "ai", 100, "2024-01-15T12:00:00Z")
    return {"ai": ai["id"], "ent": ent["id"]}


def channel_body(name: str = "hook", **extra: Any) -> dict[str, Any]:
    return {"type": "WEBHOOK", "name": name, "url": "https://example.com/hook", **extra}


def rule_body(channels: list[str], **extra: Any) -> dict[str, Any]:
    return {"type": "entitlements.balance.threshold", "name": "usage", "channels": channels,
            "thresholds": [{"value": 80, "type": "PERCENT"}, {"value": 50, "type": "NUMBER"}], **extra}


async def test_document_lists_every_notification_operation(api: Api) -> None:
    served = {(m, p) for p, item in api.doc["paths"].items() for m in item}
    assert served >= NOTIFICATION_OPERATIONS
    tags = {api.doc["paths"][p][m]["tags"][0] for m, p in NOTIFICATION_OPERATIONS}
    assert tags == {"Notifications"}


async def test_channels(api: Api, clock: Clock) -> None:
    made = await api("POST", "/channels", channel_body(customHeaders={"X-Env": "test"}), 201, template="/channels")
    assert made["type"] == "WEBHOOK" and made["name"] == "hook" and made["disabled"] is False
    assert made["customHeaders"] == {"X-Env": "test"} and made["createdAt"] == "2024-01-15T12:00:30Z"
    assert made["signingSecret"].startswith("whsec_") and "deletedAt" not in made
    off = await api("POST", "/channels", channel_body("off", signingSecret=SECRET, disabled=True), 201)
    assert off["signingSecret"] == SECRET
    assert await api("GET", f"/channels/{made['id']}", template="/channels/{channelId}") == made

    listed = await api("GET", "/channels", template="/channels")
    assert listed == {"items": [made], "totalCount": 1, "page": 1, "pageSize": 100}  # disabled ones hidden
    both = await api("GET", "/channels", includeDisabled="true")
    assert [c["id"] for c in both["items"]] == [made["id"], off["id"]] and both["totalCount"] == 2

    clock.set("2024-01-15T13:00:00+00:00")
    up = await api("PUT", f"/channels/{made['id']}", channel_body("renamed", url="http://127.0.0.1:8/x"),
                   template="/channels/{channelId}")
    assert (up["name"], up["url"], up["signingSecret"], up["customHeaders"]) == (
        "renamed", "http://127.0.0.1:8/x", made["signingSecret"], {})
    assert up["updatedAt"] == "2024-01-15T13:00:00Z"

    assert await api("DELETE", f"/channels/{made['id']}", status=204) is None
    gone = await api("GET", f"/channels/{made['id']}")
    assert gone["deletedAt"] == "2024-01-15T13:00:00Z"
    assert (await api("GET", "/channels"))["items"] == []
    every = await api("GET", "/channels", includeDeleted="true", includeDisabled="true")
    assert [c["id"] for c in every["items"]] == [made["id"], off["id"]]
    await api("DELETE", f"/channels/{made['id']}", status=404, template="/channels/{channelId}")
    await api("GET", f"/channels/{MISSING}", status=404, template="/channels/{channelId}")
    await api("PUT", f"/channels/{MISSING}", channel_body(), status=404)


async def test_channel_paging(api: Api) -> None:
    ids = [(await api("POST", "/channels", channel_body(f"c{i}"), 201))["id"] for i in range(5)]
    pages = [await api("GET", "/channels", page=p, pageSize=2) for p in (1, 2, 3, 4)]
    assert [[c["id"] for c in p["items"]] for p in pages] == [ids[0:2], ids[2:4], ids[4:], []]
    assert [(p["page"], p["pageSize"], p["totalCount"]) for p in pages] == [(n, 2, 5) for n in (1, 2, 3, 4)]
    for bad in ({"page": 0}, {"pageSize": 0}, {"pageSize": 1001}, {"page": "x"}, {"includeDisabled": "maybe"}):
        problem = await api("GET", "/channels", status=400, template="/channels", **bad)
        assert problem["status"] == 400 and problem["title"] == "Bad Request"


async def test_rules(api: Api, world: dict[str, Any]) -> None:
    ch = await api("POST", "/channels", channel_body(), 201)
    other = await api("POST", "/channels", channel_body("other"), 201)
    every = await api("POST", "/rules", rule_body([ch["id"]]), 201, template="/rules")
    assert every["type"] == "entitlements.balance.threshold" and every["channels"] == [{"id": ch["id"],
                                                                                       "type": "WEBHOOK"}]
    assert every["thresholds"] == [{"value": 80, "type": "PERCENT"}, {"value": 50, "type": "NUMBER"}]
    assert "features" not in every and every["disabled"] is False  # absent: every metered feature
    scoped = await api("POST", "/rules", rule_body([other["id"]], features=["ai"], disabled=True), 201)
    assert scoped["features"] == [{"id": world["ai"], "key": "ai"}] and scoped["disabled"] is True
    assert await api("GET", f"/rules/{scoped['id']}", template="/rules/{ruleId}") == scoped

    assert [r["id"] for r in (await api("GET", "/rules", template="/rules"))["items"]] == [every["id"]]
    listed = await api("GET", "/rules", includeDisabled="true")
    assert [r["id"] for r in listed["items"]] == [every["id"], scoped["id"]] and listed["totalCount"] == 2
    by_channel = await api("GET", "/rules", includeDisabled="true", channel=other["id"])
    assert [r["id"] for r in by_channel["items"]] == [scoped["id"]]
    by_feature = await api("GET", "/rules", includeDisabled="true", feature="ai")
    assert scoped["id"] in [r["id"] for r in by_feature["items"]]
    paged = await api("GET", "/rules", includeDisabled="true", page=2, pageSize=1)
    assert [r["id"] for r in paged["items"]] == [scoped["id"]] and paged["totalCount"] == 2

    up = await api("PUT", f"/rules/{scoped['id']}", rule_body([ch["id"], other["id"]], name="renamed"),
                   template="/rules/{ruleId}")
    assert up["name"] == "renamed" and up["disabled"] is False and "features" not in up
    assert [c["id"] for c in up["channels"]] == [ch["id"], other["id"]]

    assert await api("DELETE", f"/rules/{scoped['id']}", status=204) is None
    assert (await api("GET", f"/rules/{scoped['id']}"))["deletedAt"] == "2024-01-15T12:00:30Z"
    assert [r["id"] for r in (await api("GET", "/rules", includeDisabled="true"))["items"]] == [every["id"]]
    await api("DELETE", f"/rules/{scoped['id']}", status=404, template="/rules/{ruleId}")
    await api("GET", f"/rules/{MISSING}", status=404, template="/rules/{ruleId}")
    await api("PUT", f"/rules/{MISSING}", rule_body([ch["id"]]), status=404)


@pytest.mark.parametrize(("body", "words"), [
    (channel_body(url="ftp://example.com/x"), "url"),
    (channel_body(url="not a url"), "url"),
    (channel_body(url=""), "url"),
    (channel_body(signingSecret="secret"), "signingSecret"),
    (channel_body(signingSecret="whsec_***"), "signingSecret"),
    (channel_body(signingSecret="whsec_" + base64.b64encode(b"too short").decode()), "signingSecret"),
    (channel_body(type="EMAIL"), "type"),
    (channel_body(customHeaders={"bad header": "x"}), "customHeaders"),
    ({"type": "WEBHOOK", "url": "https://example.com"}, "name"),
])
async def test_bad_channels(api: Api, body: dict[str, Any], words: str) -> None:
    problem = await api("POST", "/channels", body, 400, template="/channels")
    assert words in problem["detail"]
    ch = await api("POST", "/channels", channel_body(), 201)
    await api("PUT", f"/channels/{ch['id']}", body, 400)
    assert (await api("GET", f"/channels/{ch['id']}"))["updatedAt"] == ch["updatedAt"]


@pytest.mark.parametrize(("thresholds", "status"), [
    ([], 400),
    ([{"value": 0, "type": "NUMBER"}], 400),
    ([{"value": -1, "type": "PERCENT"}], 400),
    ([{"value": 5, "type": "NUMBER"}, {"value": 5.0, "type": "NUMBER"}], 400),
    ([{"value": v, "type": "PERCENT"} for v in range(1, 12)], 400),
    ([{"value": 5, "type": "RATIO"}], 400),
    ([{"value": "many", "type": "NUMBER"}], 400),
])
async def test_bad_thresholds(api: Api, world: dict[str, Any], thresholds: list[Any], status: int) -> None:
    ch = await api("POST", "/channels", channel_body(), 201)
    await api("POST", "/rules", rule_body([ch["id"]], thresholds=thresholds), status, template="/rules")
    assert (await api("GET", "/rules", includeDisabled="true"))["totalCount"] == 0


async def test_rule_references_and_conflict(api: Api, world: dict[str, Any]) -> None:
    ch = await api("POST", "/channels", channel_body(), 201)
    problem = await api("POST", "/rules", rule_body([ch["id"]], features=["nope"]), 404, template="/rules")
    assert "nope" in problem["detail"]
    problem = await api("POST", "/rules", rule_body([ch["id"], MISSING]), 404)
    assert MISSING in problem["detail"]
    await api("POST", "/rules", rule_body([]), 400)
    await api("POST", "/rules", rule_body([ch["id"]], features=["sso"]), 400)  # not metered
    await api("POST", f"/rules/{MISSING}/test", status=404, template="/rules/{ruleId}/test")

    rule = await api("POST", "/rules", rule_body([ch["id"]]), 201)
    problem = await api("DELETE", f"/channels/{ch['id']}", status=409)
    assert problem["extensions"] == {"conflictingEntityId": rule["id"]} and problem["title"] == "Conflict"
    await api("PUT", f"/rules/{rule['id']}", rule_body([ch["id"]], disabled=True))
    await api("DELETE", f"/channels/{ch['id']}", status=204)
    await api("POST", "/rules", rule_body([ch["id"]]), 404)  # a deleted channel


async def test_rule_test_and_events(api: Api, clock: Clock, world: dict[str, Any]) -> None:
    ch = await api("POST", "/channels", channel_body(), 201)
    rule = await api("POST", "/rules", rule_body([ch["id"]], features=["ai"]), 201)
    made = []
    for minute in (1, 2, 3):
        clock.set(f"2024-01-15T12:0{minute}:00+00:00")
        made.append(await api("POST", f"/rules/{rule['id']}/test", status=201, template="/rules/{ruleId}/test"))
    ev = made[0]
    assert ev["type"] == "entitlements.balance.threshold" and ev["createdAt"] == "2024-01-15T12:01:00Z"
    assert ev["rule"] == rule and ev["annotations"] == {"test": True}
    assert [(d["channel"], d["state"], d["attempts"]) for d in ev["deliveryStatus"]] == [
        ({"id": ch["id"], "type": "WEBHOOK"}, "PENDING", 0)]
    payload = ev["payload"]
    assert (payload["id"], payload["type"], payload["timestamp"]) == (ev["id"], ev["type"], ev["createdAt"])
    # the payload carries the REST representations of the entitlement, feature and subject
    ent = await api("GET", "/api/v1/subjects/cust/entitlements/" + world["ent"])
    feat = await api("GET", "/api/v1/features/ai")
    subj = await api("GET", "/api/v1/subjects/cust")
    assert payload["data"]["entitlement"] == ent
    assert payload["data"]["feature"] == feat and payload["data"]["subject"] == subj
    assert payload["data"]["value"] == {"hasAccess": True, "balance": 100, "usage": 0, "overage": 0}
    assert payload["data"]["threshold"]["type"] in ("NUMBER", "PERCENT")

    assert await api("GET", f"/events/{ev['id']}", template="/events/{eventId}") == ev
    await api("GET", f"/events/{MISSING}", status=404, template="/events/{eventId}")
    newest = [e["id"] for e in reversed(made)]
    listed = await api("GET", "/events", template="/events")
    assert [e["id"] for e in listed["items"]] == newest and listed["totalCount"] == 3
    assert (listed["page"], listed["pageSize"]) == (1, 100)
    second = await api("GET", "/events", page=2, pageSize=2)
    assert [e["id"] for e in second["items"]] == newest[2:] and second["totalCount"] == 3
    window = await api("GET", "/events", **{"from": "2024-01-15T12:02:00Z", "to": "2024-01-15T12:03:00Z"})
    assert [e["id"] for e in window["items"]] == [made[1]["id"]]
    for filt in ({"subject": "cust"}, {"feature": "ai"}, {"feature": world["ai"]}, {"rule": rule["id"]},
                 {"channel": ch["id"]}):
        assert (await api("GET", "/events", **filt))["totalCount"] == 3, filt
    for filt in ({"subject": "nobody"}, {"feature": "sso"}, {"rule": MISSING}, {"channel": MISSING}):
        assert (await api("GET", "/events", **filt)) == {"items": [], "totalCount": 0, "page": 1, "pageSize": 100}
    await api("GET", "/events", status=400, **{"from": "yesterday"})
    await api("GET", "/events", status=400, **{"from": "2024-01-15T12:03:00Z", "to": "2024-01-15T12:02:00Z"})


CALLS = [
    ("GET", "/channels", None), ("POST", "/channels", channel_body()), ("GET", "/channels/{c}", None),
    ("PUT", "/channels/{c}", channel_body()), ("DELETE", "/channels/{c}", None),
    ("GET", "/rules", None), ("POST", "/rules", rule_body(["{c}"])), ("GET", "/rules/{r}", None),
    ("PUT", "/rules/{r}", rule_body(["{c}"])), ("DELETE", "/rules/{r}", None), ("POST", "/rules/{r}/test", None),
    ("GET", "/events", None), ("GET", "/events/{r}", None),
]


@pytest.mark.parametrize(("method", "path", "body"), CALLS)
async def test_subject_token_forbidden(api: Api, gql: GQL, world: dict[str, Any], method: str, path: str,
                                       body: Any) -> None:
    token = (await gql.ok('mutation { createSubjectToken(subjectKey: "cust") { token } }'))["createSubjectToken"]
    ch = await api("POST", "/channels", channel_body(), 201)
    rule = await api("POST", "/rules", rule_body([ch["id"]]), 201)
    if body is not None and "channels" in body:
        body = {**body, "channels": [ch["id"]]}
    problem = await api(method, path.replace("{c}", ch["id"]).replace("{r}", rule["id"]), body, 403,
                        token=token["token"])
    assert problem["status"] == 403
    assert await api("GET", f"/channels/{ch['id']}") == ch
    assert await api("GET", f"/rules/{rule['id']}") == rule
    assert (await api("GET", "/events"))["totalCount"] == 0
