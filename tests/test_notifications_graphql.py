"""Notifications over GraphQL (docs/semantics.md §11): channels, rules, rule tests and events, bad input, paging,
and subject tokens refused on every field. Evaluation and delivery are tested in the services' own tests."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.conftest import GQL, Clock
from tests.ent_helpers import feature, grant, meter, metered

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef01234567").decode()  # 24 bytes
CHANNEL = """id type name url customHeaders signingSecret disabled createdAt updatedAt deletedAt"""
RULE = f"""id type name thresholds {{ value type }} features {{ id key }} channels {{ {CHANNEL} }} disabled
  createdAt updatedAt deletedAt"""
EVENT = """id type createdAt rule { id name } subjectKey featureKey entitlementId threshold { value type }
  value { hasAccess balance usage overage } payload annotations
  deliveryStatus { channel { id } state attempts lastError nextAttemptAt updatedAt }"""
CREATE_CHANNEL = f"""mutation($input: NotificationChannelInput!) {{ createNotificationChannel(input: $input) {{
  {CHANNEL} }} }}"""
UPDATE_CHANNEL = f"""mutation($id: ID!, $input: NotificationChannelInput!) {{
  updateNotificationChannel(id: $id, input: $input) {{ {CHANNEL} }} }}"""
CREATE_RULE = f"""mutation($input: NotificationRuleInput!) {{ createNotificationRule(input: $input) {{ {RULE} }} }}"""
UPDATE_RULE = f"""mutation($id: ID!, $input: NotificationRuleInput!) {{
  updateNotificationRule(id: $id, input: $input) {{ {RULE} }} }}"""
TEST_RULE = f"""mutation($id: ID!) {{ testNotificationRule(id: $id) {{ {EVENT} }} }}"""
EVENTS = f"""query($s: String, $f: String, $r: ID, $from: DateTime, $to: DateTime, $limit: Int, $offset: Int) {{
  notificationEvents(subjectKey: $s, featureKey: $f, ruleId: $r, from: $from, to: $to, limit: $limit,
                     offset: $offset) {{ {EVENT} }} }}"""
MINT = 'mutation($s: String!) { createSubjectToken(subjectKey: $s) { token } }'


async def channel(gql: GQL, name: str = "hook", url: str = "https://example.com/hook", **extra: Any) -> dict[str, Any]:
    return dict((await gql.ok(CREATE_CHANNEL, input={"name": name, "url": url, **extra}))["createNotificationChannel"])


async def rule(gql: GQL, channels: list[str], thresholds: list[dict[str, Any]] | None = None,
               **extra: Any) -> dict[str, Any]:
    inp = {"name": "usage", "thresholds": thresholds or [{"value": 80, "type": "PERCENT"}], "channels": channels,
           **extra}
    return dict((await gql.ok(CREATE_RULE, input=inp))["createNotificationRule"])


@pytest.fixture
async def metered_ai(gql: GQL) -> dict[str, Any]:
    """Feature "ai" on meter "tokens" and a metered entitlement of "cust" with 100 granted."""
    await meter(gql)
    await feature(gql, "ai")
    ent = await metered(gql, "cust", "ai", interval="MONTH")
    await grant(gql, "cust", "ai", 100, "2024-01-15T12:00:00Z")
    return ent


async def test_channel_lifecycle(gql: GQL, clock: Clock) -> None:
    made = await channel(gql, customHeaders={"X-Env": "test"})
    assert made["type"] == "WEBHOOK" and made["url"] == "https://example.com/hook" and not made["disabled"]
    assert made["customHeaders"] == {"X-Env": "test"} and made["deletedAt"] is None
    assert made["createdAt"] == made["updatedAt"] == "2024-01-15T12:00:30Z"
    secret = made["signingSecret"]
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) >= 24  # generated
    given = await channel(gql, "second", "http://127.0.0.1:9/x", signingSecret=SECRET, disabled=True)
    assert given["signingSecret"] == SECRET and given["disabled"] is True

    got = await gql.ok(f"query($id: ID!) {{ notificationChannel(id: $id) {{ {CHANNEL} }} }}", id=made["id"])
    assert got["notificationChannel"] == made
    listed = await gql.ok(f"{{ notificationChannels {{ {CHANNEL} }} }}")
    assert [c["id"] for c in listed["notificationChannels"]] == [made["id"], given["id"]]

    clock.set("2024-01-15T13:00:00+00:00")
    updated = (await gql.ok(UPDATE_CHANNEL, id=made["id"], input={"name": "renamed", "url": "https://example.org/h"}))
    up = updated["updateNotificationChannel"]
    assert (up["name"], up["url"], up["signingSecret"], up["customHeaders"]) == ("renamed", "https://example.org/h",
                                                                                  secret, {})
    assert up["updatedAt"] == "2024-01-15T13:00:00Z" and up["createdAt"] == made["createdAt"]

    assert (await gql.ok("mutation($id: ID!) { deleteNotificationChannel(id: $id) }", id=made["id"])) == {
        "deleteNotificationChannel": True}
    gone = await gql.ok("query($id: ID!) { notificationChannel(id: $id) { deletedAt } }", id=made["id"])
    assert gone["notificationChannel"]["deletedAt"] == "2024-01-15T13:00:00Z"
    assert [c["id"] for c in (await gql.ok("{ notificationChannels { id } }"))["notificationChannels"]] == [given["id"]]
    every = await gql.ok("{ notificationChannels(includeDeleted: true) { id } }")
    assert [c["id"] for c in every["notificationChannels"]] == [made["id"], given["id"]]
    await gql.error("mutation($id: ID!) { deleteNotificationChannel(id: $id) }", "NOT_FOUND", id=made["id"])
    await gql.error(UPDATE_CHANNEL, "NOT_FOUND", id=made["id"], input={"name": "x", "url": "https://a.b/"})
    assert (await gql.ok('{ notificationChannel(id: "01J00000000000000000000000") { id } }')) == {
        "notificationChannel": None}


async def test_rule_lifecycle(gql: GQL, metered_ai: dict[str, Any]) -> None:
    ch = await channel(gql)
    everything = await rule(gql, [ch["id"]], [{"value": 50, "type": "NUMBER"}, {"value": 100, "type": "PERCENT"}])
    assert everything["type"] == "ENTITLEMENTS_BALANCE_THRESHOLD" and everything["features"] is None
    assert everything["thresholds"] == [{"value": 50.0, "type": "NUMBER"}, {"value": 100.0, "type": "PERCENT"}]
    assert everything["channels"] == [ch] and everything["disabled"] is False

    ai = (await gql.ok('{ feature(idOrKey: "ai") { id } }'))["feature"]["id"]
    scoped = await rule(gql, [ch["id"]], features=["ai"], disabled=True)
    assert scoped["features"] == [{"id": ai, "key": "ai"}] and scoped["disabled"] is True
    by_id = await rule(gql, [ch["id"]], features=[ai])
    assert by_id["features"] == [{"id": ai, "key": "ai"}]

    got = await gql.ok(f"query($id: ID!) {{ notificationRule(id: $id) {{ {RULE} }} }}", id=scoped["id"])
    assert got["notificationRule"] == scoped
    listed = await gql.ok("{ notificationRules { id } }")
    assert [r["id"] for r in listed["notificationRules"]] == [everything["id"], scoped["id"], by_id["id"]]

    up = (await gql.ok(UPDATE_RULE, id=scoped["id"], input={
        "name": "renamed", "thresholds": [{"value": 10, "type": "NUMBER"}], "channels": [ch["id"]]}))
    assert up["updateNotificationRule"]["name"] == "renamed" and up["updateNotificationRule"]["features"] is None
    assert up["updateNotificationRule"]["disabled"] is False  # the input's default

    assert (await gql.ok("mutation($id: ID!) { deleteNotificationRule(id: $id) }", id=scoped["id"])) == {
        "deleteNotificationRule": True}
    assert [r["id"] for r in (await gql.ok("{ notificationRules { id } }"))["notificationRules"]] == [
        everything["id"], by_id["id"]]
    deleted = await gql.ok("{ notificationRules(includeDeleted: true) { id deletedAt } }")
    assert [r["deletedAt"] is not None for r in deleted["notificationRules"]] == [False, True, False]
    await gql.error("mutation($id: ID!) { deleteNotificationRule(id: $id) }", "NOT_FOUND", id=scoped["id"])


@pytest.mark.parametrize(("url", "secret"), [
    ("ftp://example.com/hook", None),
    ("example.com/hook", None),
    ("javascript:alert(1)", None),
    ("https://example.com/hook", "not-a-secret"),
    ("https://example.com/hook", "whsec_%%%not base64%%%"),
    ("https://example.com/hook", "whsec_" + base64.b64encode(b"short").decode()),
])
async def test_bad_channel_input(gql: GQL, url: str, secret: str | None) -> None:
    inp = {"name": "hook", "url": url, **({"signingSecret": secret} if secret else {})}
    err = await gql.error(CREATE_CHANNEL, "BAD_USER_INPUT", input=inp)
    assert ("url" in err["message"]) if secret is None else ("signingSecret" in err["message"])
    ch = await channel(gql)
    await gql.error(UPDATE_CHANNEL, "BAD_USER_INPUT", id=ch["id"], input=inp)
    assert (await gql.ok("{ notificationChannels { url } }"))["notificationChannels"] == [
        {"url": "https://example.com/hook"}]


@pytest.mark.parametrize("thresholds", [
    [],
    [{"value": 0, "type": "NUMBER"}],
    [{"value": -5, "type": "PERCENT"}],
    [{"value": 80, "type": "PERCENT"}, {"value": 80, "type": "PERCENT"}],
    [{"value": v, "type": "NUMBER"} for v in range(1, 12)],
])
async def test_bad_thresholds(gql: GQL, metered_ai: dict[str, Any], thresholds: list[dict[str, Any]]) -> None:
    ch = await channel(gql)
    await gql.error(CREATE_RULE, "BAD_USER_INPUT", input={"name": "r", "thresholds": thresholds,
                                                          "channels": [ch["id"]]})
    assert (await gql.ok("{ notificationRules { id } }"))["notificationRules"] == []


async def test_thresholds_limits_accepted(gql: GQL, metered_ai: dict[str, Any]) -> None:
    """Ten thresholds, and the same value as NUMBER and PERCENT, are fine."""
    ch = await channel(gql)
    ten = await rule(gql, [ch["id"]], [{"value": v, "type": "NUMBER"} for v in range(1, 11)])
    assert len(ten["thresholds"]) == 10
    both = await rule(gql, [ch["id"]], [{"value": 80, "type": "NUMBER"}, {"value": 80, "type": "PERCENT"}])
    assert len(both["thresholds"]) == 2


async def test_rule_references(gql: GQL, metered_ai: dict[str, Any]) -> None:
    ch = await channel(gql)
    await feature(gql, "sso", meter_slug=None)
    err = await gql.error(CREATE_RULE, "NOT_FOUND", input={"name": "r", "thresholds": [{"value": 1, "type": "NUMBER"}],
                                                           "channels": [ch["id"]], "features": ["nope"]})
    assert "nope" in err["message"]
    missing = "01J00000000000000000000000"
    err = await gql.error(CREATE_RULE, "NOT_FOUND", input={"name": "r", "thresholds": [{"value": 1, "type": "NUMBER"}],
                                                           "channels": [ch["id"], missing]})
    assert missing in err["message"]
    await gql.error(CREATE_RULE, "BAD_USER_INPUT", input={"name": "r", "thresholds": [{"value": 1, "type": "NUMBER"}],
                                                          "channels": []})
    await gql.error(CREATE_RULE, "BAD_USER_INPUT", input={"name": "r", "thresholds": [{"value": 1, "type": "NUMBER"}],
                                                          "channels": [ch["id"]], "features": ["sso"]})
    await gql.error(UPDATE_RULE, "NOT_FOUND", id=missing, input={
        "name": "r", "thresholds": [{"value": 1, "type": "NUMBER"}], "channels": [ch["id"]]})
    await gql.error(TEST_RULE, "NOT_FOUND", id=missing)
    assert (await gql.ok("{ notificationRules { id } }"))["notificationRules"] == []


async def test_channel_in_use_cannot_be_deleted(gql: GQL, metered_ai: dict[str, Any]) -> None:
    ch = await channel(gql)
    r = await rule(gql, [ch["id"]])
    err = await gql.error("mutation($id: ID!) { deleteNotificationChannel(id: $id) }", "CONFLICT", id=ch["id"])
    assert err["extensions"]["conflictingEntityId"] == r["id"]
    await gql.ok(UPDATE_RULE, id=r["id"], input={"name": "r", "thresholds": [{"value": 1, "type": "NUMBER"}],
                                                 "channels": [ch["id"]], "disabled": True})
    assert (await gql.ok("mutation($id: ID!) { deleteNotificationChannel(id: $id) }", id=ch["id"])) == {
        "deleteNotificationChannel": True}
    # a deleted channel is no longer a rule's channel to choose
    await gql.error(CREATE_RULE, "NOT_FOUND", input={"name": "r", "thresholds": [{"value": 1, "type": "NUMBER"}],
                                                     "channels": [ch["id"]]})


async def test_rule_test_events_and_paging(gql: GQL, clock: Clock, metered_ai: dict[str, Any]) -> None:
    ch = await channel(gql)
    off = await channel(gql, "off", disabled=True)
    r = await rule(gql, [ch["id"], off["id"]], [{"value": 10, "type": "NUMBER"}, {"value": 50, "type": "PERCENT"}],
                   features=["ai"])
    made = []
    for minute in range(3):
        clock.set(f"2024-01-15T12:0{minute + 1}:00+00:00")
        made.append((await gql.ok(TEST_RULE, id=r["id"]))["testNotificationRule"])
    ev = made[0]
    assert ev["type"] == "ENTITLEMENTS_BALANCE_THRESHOLD" and ev["annotations"] == {"test": True}
    assert ev["rule"] == {"id": r["id"], "name": "usage"}
    assert (ev["subjectKey"], ev["featureKey"], ev["entitlementId"]) == ("cust", "ai", metered_ai["id"])
    assert ev["createdAt"] == "2024-01-15T12:01:00Z"
    assert ev["value"] == {"hasAccess": True, "balance": 100.0, "usage": 0.0, "overage": 0.0}
    assert ev["threshold"]["type"] in ("NUMBER", "PERCENT")
    # only the enabled channel gets a delivery
    assert [(d["channel"]["id"], d["state"]) for d in ev["deliveryStatus"]] == [(ch["id"], "PENDING")]
    payload = ev["payload"]
    assert payload["id"] == ev["id"] and payload["type"] == "entitlements.balance.threshold"
    assert payload["timestamp"] == "2024-01-15T12:01:00Z"
    data = payload["data"]
    assert data["entitlement"]["id"] == metered_ai["id"] and data["entitlement"]["type"] == "metered"
    assert data["feature"]["key"] == "ai" and data["subject"]["key"] == "cust"
    assert data["value"] == {"hasAccess": True, "balance": 100.0, "usage": 0.0, "overage": 0.0}
    assert data["threshold"] == ev["threshold"]

    newest_first = [e["id"] for e in reversed(made)]
    listed = await gql.ok(EVENTS)
    assert [e["id"] for e in listed["notificationEvents"]] == newest_first
    page = await gql.ok(EVENTS, limit=2, offset=1)
    assert [e["id"] for e in page["notificationEvents"]] == newest_first[1:]
    assert [e["id"] for e in (await gql.ok(EVENTS, limit=1))["notificationEvents"]] == newest_first[:1]
    assert (await gql.ok(EVENTS, offset=3))["notificationEvents"] == []
    window = await gql.ok(EVENTS, **{"from": "2024-01-15T12:02:00Z", "to": "2024-01-15T12:03:00Z"})
    assert [e["id"] for e in window["notificationEvents"]] == [made[1]["id"]]
    for args in ({"s": "cust"}, {"f": "ai"}, {"r": r["id"]}):
        assert len((await gql.ok(EVENTS, **args))["notificationEvents"]) == 3
    for args in ({"s": "other"}, {"f": "other"}, {"r": ch["id"]}):
        assert (await gql.ok(EVENTS, **args))["notificationEvents"] == []
    await gql.error(EVENTS, "BAD_USER_INPUT", limit=0)
    await gql.error(EVENTS, "BAD_USER_INPUT", offset=-1)

    one = await gql.ok(f"query($id: ID!) {{ notificationEvent(id: $id) {{ {EVENT} }} }}", id=ev["id"])
    assert one["notificationEvent"] == ev
    assert (await gql.ok('{ notificationEvent(id: "01J00000000000000000000000") { id } }')) == {
        "notificationEvent": None}


READS = [
    "{ notificationChannels { id } }",
    '{ notificationChannel(id: "x") { id } }',
    "{ notificationRules { id } }",
    '{ notificationRule(id: "x") { id } }',
    '{ notificationEvents(subjectKey: "me") { id } }',
    '{ notificationEvent(id: "x") { id } }',
]
WRITES = [
    'mutation { createNotificationChannel(input: {name: "x", url: "https://a.b/"}) { id } }',
    'mutation { updateNotificationChannel(id: "x", input: {name: "x", url: "https://a.b/"}) { id } }',
    'mutation { deleteNotificationChannel(id: "x") }',
    'mutation { createNotificationRule(input: {name: "x", thresholds: [{value: 1, type: NUMBER}], channels: ["x"]})'
    " { id } }",
    'mutation { updateNotificationRule(id: "x", input: {name: "x", thresholds: [{value: 1, type: NUMBER}], '
    'channels: ["x"]}) { id } }',
    'mutation { deleteNotificationRule(id: "x") }',
    'mutation { testNotificationRule(id: "x") { id } }',
]


@pytest.mark.parametrize("query", READS + WRITES)
async def test_subject_token_forbidden(gql: GQL, query: str) -> None:
    token = (await gql.ok(MINT, s="me"))["createSubjectToken"]["token"]
    ch = await channel(gql)
    err = await gql.error(query.replace('"x"', f'"{ch["id"]}"'), "FORBIDDEN", token)
    assert err["path"]
    # nothing changed
    assert (await gql.ok("{ notificationChannels { id name } }"))["notificationChannels"] == [
        {"id": ch["id"], "name": "hook"}]
