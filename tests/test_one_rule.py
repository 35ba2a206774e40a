"""Rules that live once, in services, and that both APIs therefore answer alike: the subject-read guard,
the entitlement period fields and "a deleted entitlement has no history"."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from strawberry.permission import PermissionExtension
from strawberry.types.base import get_object_definition

from creditgate.adapters.graphql import access, entitlements, grants, subjects
from creditgate.adapters.graphql.permissions import ReadsSubject
from creditgate.services import tokens as token_svc
from creditgate.services.runtime import Runtime
from tests.conftest import GQL, Clock
from tests.ent_helpers import ENT_FIELDS, feature, grant, meter, metered

MINT = 'mutation($s: String!) { createSubjectToken(subjectKey: $s, ttlSeconds: 600) { token } }'


@pytest.fixture
async def world(gql: GQL) -> dict[str, str]:
    await meter(gql)
    await feature(gql, "ai")
    mine = await metered(gql, "me", "ai", interval="MONTH")
    await grant(gql, "me", "ai", 10, "2024-01-15T12:00:00Z")
    token = (await gql.ok(MINT, s="me"))["createSubjectToken"]["token"]
    return {"token": token, "mine": str(mine["id"])}


def guarded_fields() -> dict[str, set[str]]:
    """The fields (python names) of each GraphQL type that declare the subject-read guard."""
    out: dict[str, set[str]] = {}
    for cls in (access.AccessQuery, entitlements.EntitlementQuery, entitlements.Entitlement,
                entitlements.MeteredEntitlement, grants.GrantQuery, subjects.Subject):
        definition = get_object_definition(cls, strict=True)
        out[definition.name] = {f.python_name for f in definition.fields if any(
            isinstance(ext, PermissionExtension) and any(isinstance(p, ReadsSubject) for p in ext.permissions)
            for ext in f.extensions)}
    return out


def test_every_subject_read_declares_the_guard() -> None:
    assert guarded_fields() == {
        "AccessQuery": {"entitlement_value", "check_access"},
        "EntitlementQuery": {"entitlements"},
        "Entitlement": {"value"},
        "MeteredEntitlement": {"value", "grants", "history"},
        "GrantQuery": {"grants"},
        "Subject": {"entitlements", "access"},
    }


SUBJECT_READS = [
    '{ entitlementValue(subjectKey: "me", entitlementIdOrFeatureKey: "ai") { balance } }',
    '{ checkAccess(checks: [{subjectKey: "me", featureKey: "ai"}]) { reason } }',
    '{ entitlements(subjectKey: "me") { id } }',
    '{ grants(subjectKey: "me") { id } }',
    '{ subject(idOrKey: "me") { key } }',  # read require_subject without check_live before
]
REST_READS = ["/subjects/me", "/subjects/me/entitlements", "/subjects/me/entitlements/ai/value",
              "/subjects/me/entitlements/ai/history?windowSize=DAY", "/subjects/me/entitlements/ai/grants"]


async def test_invalidated_token_is_refused_by_every_read(gql: GQL, http: httpx.AsyncClient, rt: Runtime,
                                                          world: dict[str, str]) -> None:
    t = world["token"]
    for q in SUBJECT_READS:
        await gql.ok(q, t)
    one = "query($id: ID!) { entitlement(id: $id) { id } }"
    await gql.ok(one, t, id=world["mine"])
    auth = {"authorization": f"Bearer {t}"}
    for path in REST_READS:
        assert (await http.get("/api/v1" + path, headers=auth)).status_code == 200, path
    assert await token_svc.invalidate_tokens(rt, subject_key="me") == 1
    for q in SUBJECT_READS:
        got = await gql(q, t)
        assert [e["extensions"]["code"] for e in got["errors"]] == ["UNAUTHENTICATED"], (q, got)
    got = await gql(one, t, id=world["mine"])
    assert [e["extensions"]["code"] for e in got["errors"]] == ["UNAUTHENTICATED"]
    for path in REST_READS:
        assert (await http.get("/api/v1" + path, headers=auth)).status_code == 401, path


async def test_guard_on_nested_fields(gql: GQL, world: dict[str, str]) -> None:
    """A subject token reaches another subject's data through no nested field either."""
    await metered(gql, "you", "ai", interval="MONTH")
    t = world["token"]
    for q in ['{ subject(idOrKey: "you") { key } }',
              '{ checkAccess(checks: [{subjectKey: "me", featureKey: "ai"}, {subjectKey: "you", featureKey: "ai"}])'
              ' { reason } }']:
        got = await gql(q, t)
        assert [e["extensions"]["code"] for e in got["errors"]] == ["FORBIDDEN"], got


PERIODS = f"""query($s: String!) {{ entitlements(subjectKey: $s) {{ {ENT_FIELDS} }} }}"""


async def test_period_fields_agree_in_both_apis(gql: GQL, http: httpx.AsyncClient, clock: Clock) -> None:
    await meter(gql)
    await feature(gql, "ai")
    e = await metered(gql, "c", "ai", interval="MONTH", anchor="2024-01-10T00:00:00Z")
    clock.set("2024-01-20T08:30:00+00:00")
    reset = """mutation($id: ID!) { resetEntitlement(subjectKey: "c", entitlementId: $id,
      input: {effectiveAt: "2024-01-18T00:00:00Z"}) { id } }"""
    await gql.ok(reset, id=e["id"])
    clock.set("2024-02-25T00:00:00+00:00")
    g: dict[str, Any] = (await gql.ok(PERIODS, s="c"))["entitlements"][0]
    r = (await http.get("/api/v1/subjects/c/entitlements")).json()[0]
    # the reset moved the anchor (retainAnchor false): periods run from the 18th
    assert g["usagePeriod"] == {"interval": "MONTH", "anchor": "2024-01-18T00:00:00Z"}
    assert g["currentUsagePeriod"] == {"from": "2024-02-18T00:00:00Z", "to": "2024-03-18T00:00:00Z"}
    assert g["lastReset"] == "2024-02-18T00:00:00Z"
    assert (r["usagePeriod"], r["currentUsagePeriod"], r["lastReset"]) == (
        g["usagePeriod"], g["currentUsagePeriod"], g["lastReset"])


HISTORY = """query($id: ID!) { entitlement(id: $id) { ... on MeteredEntitlement {
  history(windowSize: DAY) { windowedHistory { usage } } } } }"""


async def test_deleted_entitlement_has_no_history_in_either_api(gql: GQL, http: httpx.AsyncClient,
                                                                clock: Clock) -> None:
    await meter(gql)
    await feature(gql, "ai")
    e = await metered(gql, "c", "ai", interval="MONTH")
    assert (await gql.ok(HISTORY, id=e["id"]))["entitlement"]["history"]["windowedHistory"] == []
    assert (await http.get(f"/api/v1/subjects/c/entitlements/{e['id']}/history?windowSize=DAY")).status_code == 200
    await gql.ok('mutation($id: ID!) { deleteEntitlement(subjectKey: "c", entitlementId: $id) }', id=e["id"])
    got = await gql(HISTORY, id=e["id"])
    assert [x["extensions"]["code"] for x in got["errors"]] == ["NOT_FOUND"], got
    listed = await gql("""{ entitlements(subjectKey: "c", includeDeleted: true) { id
      ... on MeteredEntitlement { history(windowSize: DAY) { windowedHistory { usage } } } } }""")
    assert [x["extensions"]["code"] for x in listed["errors"]] == ["NOT_FOUND"]
    resp = await http.get(f"/api/v1/subjects/c/entitlements/{e['id']}/history?windowSize=DAY")
    assert resp.status_code == 404
