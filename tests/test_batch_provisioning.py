"""Batch provisioning over GraphQL: createEntitlements and createGrants (docs/semantics.md §3.7).

The batch keeps every rule of the single mutations, is checked whole before anything is written, is written
in one transaction (all or none), names the failing input by its index, and is capped at 1000 inputs."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from creditgate.adapters.sql import entitlements as ent_repo
from creditgate.domain.errors import BadInput, Conflict
from creditgate.records import ValueChangeCause
from creditgate.services import entitlements as ent_svc
from creditgate.services.batches import MAX_BATCH
from creditgate.services.changes import Change
from creditgate.services.runtime import Runtime
from tests.conftest import GQL
from tests.ent_helpers import ENT_FIELDS, GRANT_FIELDS, events, feature, grant, meter, metered, value

CREATE_ENTS = f"""mutation($inputs: [BatchEntitlementInput!]!) {{
  createEntitlements(inputs: $inputs) {{ {ENT_FIELDS} }} }}"""
CREATE_GRANTS = f"""mutation($inputs: [BatchGrantInput!]!) {{
  createGrants(inputs: $inputs) {{ {GRANT_FIELDS} }} }}"""
LIST = "{ entitlements(includeDeleted: true) { id subjectKey featureKey } grants(includeDeleted: true) { id } }"
MONTHLY = {"interval": "MONTH", "anchor": "2024-01-01T00:00:00Z"}


def ents(*items: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"subjectKey": s, "input": inp} for s, inp in items]


def grants(*items: tuple[str, str, float]) -> list[dict[str, Any]]:
    return [{"subjectKey": s, "entitlementIdOrFeatureKey": ref,
             "input": {"amount": amount, "effectiveAt": "2024-01-15T12:00:00Z",
                       "expiration": {"duration": "YEAR", "count": 1}}} for s, ref, amount in items]


@pytest.fixture
async def catalog(gql: GQL) -> None:
    await meter(gql)
    await feature(gql, "ai")
    await feature(gql, "sso", meter_slug=None)
    await feature(gql, "cfg", meter_slug=None)


async def stored(gql: GQL) -> dict[str, Any]:
    return await gql.ok(LIST)


async def test_entitlements_of_every_type_in_one_batch(gql: GQL, catalog: None) -> None:
    inputs = []
    for s in ("a", "b", "c"):
        inputs += ents((s, {"type": "BOOLEAN", "featureKey": "sso"}),
                       (s, {"type": "STATIC", "featureKey": "cfg", "config": {"seats": 5}}),
                       (s, {"type": "METERED", "featureKey": "ai", "usagePeriod": MONTHLY, "issueAfterReset": 7,
                            "metadata": {"plan": "pro"}}))
    out = (await gql.ok(CREATE_ENTS, inputs=inputs))["createEntitlements"]
    assert [(e["subjectKey"], e["featureKey"], e["type"]) for e in out] == [
        (s, f, t) for s in ("a", "b", "c") for f, t in (("sso", "BOOLEAN"), ("cfg", "STATIC"), ("ai", "METERED"))]
    assert out[1]["config"] == {"seats": 5} and out[2]["metadata"] == {"plan": "pro"}
    assert out[2]["usagePeriod"] == MONTHLY and out[2]["issueAfterResetPriority"] == 1
    # the same answers as entitlements created one by one: issueAfterReset granted, values as usual
    assert await value(gql, "b", "ai") == {"hasAccess": True, "balance": 7.0, "usage": 0.0, "overage": 0.0,
                                           "config": None}
    assert (await value(gql, "c", "cfg"))["config"] == {"seats": 5}
    assert (await value(gql, "a", "sso"))["hasAccess"] is True
    subjects = await gql.ok("{ subjects { key } }")
    assert [s["key"] for s in subjects["subjects"]] == ["a", "b", "c"]
    assert (await gql.ok(CREATE_ENTS, inputs=[]))["createEntitlements"] == []


async def test_grants_in_one_batch(gql: GQL, catalog: None) -> None:
    first = await metered(gql, "a", "ai", anchor="2024-01-01T00:00:00Z")
    await metered(gql, "b", "ai", anchor="2024-01-01T00:00:00Z")
    out = (await gql.ok(CREATE_GRANTS, inputs=grants(("a", "ai", 10), ("a", str(first["id"]), 5), ("b", "ai", 3))))
    got = out["createGrants"]
    assert [(g["entitlementId"] == first["id"], g["amount"]) for g in got] == [(True, 10.0), (True, 5.0),
                                                                               (False, 3.0)]
    assert got[0]["effectiveAt"] == "2024-01-15T12:00:00Z" and got[0]["expiresAt"] == "2025-01-15T12:00:00Z"
    await events(gql, "a", ("2024-01-15T12:00:10Z", 4))
    assert (await value(gql, "a", "ai"))["balance"] == 11.0
    assert (await value(gql, "b", "ai"))["balance"] == 3.0


@pytest.mark.parametrize(("bad", "code"), [
    ({"type": "STATIC", "featureKey": "cfg"}, "BAD_USER_INPUT"),  # no config
    ({"type": "BOOLEAN", "featureKey": "sso", "isSoftLimit": True}, "BAD_USER_INPUT"),
    ({"type": "METERED", "featureKey": "sso", "usagePeriod": MONTHLY}, "BAD_USER_INPUT"),  # no meter
    ({"type": "BOOLEAN", "featureKey": "nope"}, "NOT_FOUND"),
    ({"type": "BOOLEAN", "featureKey": "sso", "metadata": [1]}, "BAD_USER_INPUT"),
])
async def test_a_bad_entitlement_fails_the_whole_batch(gql: GQL, catalog: None, bad: dict[str, Any],
                                                       code: str) -> None:
    inputs = ents(("a", {"type": "BOOLEAN", "featureKey": "sso"}), ("b", {"type": "BOOLEAN", "featureKey": "sso"}),
                  ("c", bad))
    err = await gql.error(CREATE_ENTS, code, inputs=inputs)
    assert err["extensions"]["index"] == 2 and err["message"].startswith("inputs[2]: "), err
    assert err["path"] == ["createEntitlements"]
    assert await stored(gql) == {"entitlements": [], "grants": []}


async def test_conflicts_name_the_input(gql: GQL, catalog: None) -> None:
    old = await metered(gql, "a", "ai")
    err = await gql.error(CREATE_ENTS, "CONFLICT", inputs=ents(
        ("b", {"type": "BOOLEAN", "featureKey": "sso"}), ("a", {"type": "METERED", "featureKey": "ai",
                                                                 "usagePeriod": MONTHLY})))
    assert err["extensions"]["index"] == 1 and err["extensions"]["conflictingEntityId"] == old["id"]
    twice = ents(("b", {"type": "BOOLEAN", "featureKey": "sso"}), ("c", {"type": "BOOLEAN", "featureKey": "sso"}),
                 ("b", {"type": "BOOLEAN", "featureKey": "sso"}))
    err = await gql.error(CREATE_ENTS, "CONFLICT", inputs=twice)
    assert err["extensions"]["index"] == 2 and "inputs[0]" in err["message"]
    assert [e["subjectKey"] for e in (await stored(gql))["entitlements"]] == ["a"]


async def test_a_conflict_found_only_on_insert_fails_the_transaction(rt: Runtime, gql: GQL, catalog: None) -> None:
    """A concurrent insert between the check and the write: the unique index decides, nothing is written."""
    old = await metered(gql, "a", "ai")
    found = await ent_svc.get_entitlement(rt, str(old["id"]))
    assert found is not None
    twin = replace(found, id="x" * 26)
    with pytest.raises(Conflict):
        async with rt.db.transaction() as s:
            await ent_repo.insert_entitlements(s, [twin])
    assert len((await stored(gql))["entitlements"]) == 1


@pytest.mark.parametrize(("item", "code"), [
    (("a", "nope", 1), "NOT_FOUND"),
    (("zz", "ai", 1), "NOT_FOUND"),
    (("a", "sso", 1), "BAD_USER_INPUT"),  # BOOLEAN entitlements take no grants
    (("a", "ai", 0), "BAD_USER_INPUT"),
])
async def test_a_bad_grant_fails_the_whole_batch(gql: GQL, catalog: None, item: tuple[str, str, float],
                                                 code: str) -> None:
    await metered(gql, "a", "ai", anchor="2024-01-01T00:00:00Z")
    await gql.ok(CREATE_ENTS, inputs=ents(("a", {"type": "BOOLEAN", "featureKey": "sso"})))
    err = await gql.error(CREATE_GRANTS, code, inputs=grants(("a", "ai", 1), item, ("a", "ai", 2)))
    assert err["extensions"]["index"] == 1 and err["message"].startswith("inputs[1]: ")
    assert (await stored(gql))["grants"] == []


async def test_a_grant_before_the_period_start_fails_the_batch(gql: GQL, catalog: None) -> None:
    await metered(gql, "a", "ai", anchor="2024-01-01T00:00:00Z")
    early = grants(("a", "ai", 1), ("a", "ai", 1))
    early[1]["input"]["effectiveAt"] = "2023-12-31T00:00:00Z"
    err = await gql.error(CREATE_GRANTS, "BAD_USER_INPUT", inputs=early)
    assert err["extensions"]["index"] == 1 and "current period start" in err["message"]
    assert (await stored(gql))["grants"] == []


async def test_batch_size_is_capped(rt: Runtime, gql: GQL, catalog: None) -> None:
    many = ents(*[(f"s{i}", {"type": "BOOLEAN", "featureKey": "sso"}) for i in range(MAX_BATCH + 1)])
    body = await gql(CREATE_ENTS, inputs=many)
    assert body["status"] == 200 and body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "1000" in body["errors"][0]["message"]
    body = await gql(CREATE_GRANTS, inputs=grants(*[("a", "ai", 1)] * (MAX_BATCH + 1)))
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    with pytest.raises(BadInput, match="at most 1000"):  # the service's own cap, whichever API calls it
        await ent_svc.create_entitlements(rt, [(f"s{i}", ent_svc.EntitlementInput(type="BOOLEAN", feature_key="sso"))
                                               for i in range(MAX_BATCH + 1)])
    out = await gql.ok(CREATE_ENTS, inputs=many[:MAX_BATCH])  # exactly the cap is fine
    assert len(out["createEntitlements"]) == MAX_BATCH


async def test_one_change_signal_and_fresh_values(rt: Runtime, gql: GQL, catalog: None) -> None:
    for s in ("a", "b"):
        await metered(gql, s, "ai", anchor="2024-01-01T00:00:00Z")
        await grant(gql, s, "ai", 1, "2024-01-15T12:00:00Z")
        assert (await value(gql, s, "ai"))["balance"] == 1.0  # now cached
    seen: list[Change] = []

    async def listen(change: Change) -> None:
        seen.append(change)
    stop = rt.changes.listen(listen)
    try:
        await gql.ok(CREATE_GRANTS, inputs=grants(("a", "ai", 10), ("b", "ai", 20)))
        await gql.ok(CREATE_ENTS, inputs=ents(("a", {"type": "BOOLEAN", "featureKey": "sso"}),
                                              ("c", {"type": "BOOLEAN", "featureKey": "sso"})))
    finally:
        stop()
    assert [(c.subjects, c.cause) for c in seen] == [(frozenset({"a", "b"}), ValueChangeCause.GRANT),
                                                     (frozenset({"a", "c"}), ValueChangeCause.ENTITLEMENT)]
    assert (await value(gql, "a", "ai"))["balance"] == 11.0 and (await value(gql, "b", "ai"))["balance"] == 21.0


async def test_admin_only(gql: GQL, catalog: None) -> None:
    await metered(gql, "me", "ai")
    token = (await gql.ok('mutation { createSubjectToken(subjectKey: "me") { token } }'))["createSubjectToken"]
    await gql.error(CREATE_ENTS, "FORBIDDEN", token["token"],
                    inputs=ents(("me", {"type": "BOOLEAN", "featureKey": "sso"})))
    await gql.error(CREATE_GRANTS, "FORBIDDEN", token["token"], inputs=grants(("me", "ai", 1)))
    assert (await stored(gql))["grants"] == []
