"""Access checks (docs/semantics.md §8): reasons, input order, batching without N+1, Subject.access."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event

from creditgate.services.runtime import Runtime
from tests.conftest import GQL, Clock
from tests.ent_helpers import CHECK, CREATE_ENT, events, feature, grant, meter, metered


@contextmanager
def count_statements(rt: Runtime) -> Iterator[list[str]]:
    seen: list[str] = []

    def on_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    engine = rt.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", on_execute)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)


@pytest.fixture
async def world(gql: GQL) -> None:
    await meter(gql)
    await feature(gql, "ai")
    await feature(gql, "sso", meter_slug=None)
    await feature(gql, "soft")


async def test_reasons_in_order(gql: GQL, world: None, clock: Clock) -> None:
    await metered(gql, "a", "ai", interval="MONTH")
    await grant(gql, "a", "ai", 5, "2024-01-15T12:00:00Z")
    await metered(gql, "b", "ai", interval="MONTH")
    await metered(gql, "a", "soft", interval="MONTH", isSoftLimit=True)
    await gql.ok(CREATE_ENT, s="a", input={"type": "STATIC", "featureKey": "sso", "config": {"x": 1}})
    checks = [{"subjectKey": "a", "featureKey": "ai"}, {"subjectKey": "b", "featureKey": "ai"},
              {"subjectKey": "a", "featureKey": "soft"}, {"subjectKey": "a", "featureKey": "sso"},
              {"subjectKey": "nobody", "featureKey": "ai"}, {"subjectKey": "a", "featureKey": "nofeature"},
              {"subjectKey": "a", "featureKey": "ai"}]
    got = (await gql.ok(CHECK, checks=checks))["checkAccess"]
    assert [(r["subjectKey"], r["featureKey"], r["reason"], r["hasAccess"]) for r in got] == [
        ("a", "ai", "GRANTED", True), ("b", "ai", "NO_BALANCE", False), ("a", "soft", "SOFT_LIMIT", True),
        ("a", "sso", "GRANTED", True), ("nobody", "ai", "NO_ENTITLEMENT", False),
        ("a", "nofeature", "NO_ENTITLEMENT", False), ("a", "ai", "GRANTED", True)]
    assert got[0]["balance"] == 5.0 and got[0]["type"] == "METERED" and got[3]["config"] == {"x": 1}
    assert got[4]["entitlementId"] is None and got[4]["balance"] is None
    await events(gql, "a", ("2024-01-15T12:00:40Z", 5))
    again = (await gql.ok(CHECK, checks=checks[:1]))["checkAccess"]
    assert again[0]["reason"] == "NO_BALANCE"
    sub = await gql.ok("""{ subject(idOrKey: "a") { ai: access(featureKey: "ai") { reason balance }
      sso: access(featureKey: "sso") { reason config } } }""")
    assert sub["subject"]["ai"] == {"reason": "NO_BALANCE", "balance": 0.0}
    assert sub["subject"]["sso"] == {"reason": "GRANTED", "config": {"x": 1}}
    # a NO_ENTITLEMENT answer is cached, and dropped when the entitlement appears
    await gql.ok(CREATE_ENT, s="nobody", input={"type": "BOOLEAN", "featureKey": "sso"})
    got = (await gql.ok(CHECK, checks=[{"subjectKey": "nobody", "featureKey": "sso"}]))["checkAccess"]
    assert got[0]["reason"] == "GRANTED"


async def test_no_n_plus_one(gql: GQL, world: None, rt: Runtime, clock: Clock) -> None:
    subjects = [f"s{i:03d}" for i in range(40)]
    for i, s in enumerate(subjects):
        await metered(gql, s, "ai", interval="MONTH")
        await grant(gql, s, "ai", 10 + i, "2024-01-15T12:00:00Z")
        await gql.ok(CREATE_ENT, s=s, input={"type": "BOOLEAN", "featureKey": "sso"})
    await events(gql, subjects[0], ("2024-01-15T12:00:10Z", 1))
    clock.set("2024-01-15T12:10:00+00:00")
    counts = []
    for n in (2, 10, 40):
        checks = [{"subjectKey": s, "featureKey": f} for s in subjects[:n] for f in ("ai", "sso", "none")]
        with count_statements(rt) as seen:  # cold: everything from the database
            got = (await gql.ok(CHECK, checks=checks))["checkAccess"]
        assert len(got) == 3 * n and got[0]["balance"] == 9.0 and got[1]["reason"] == "GRANTED"
        counts.append(len(seen))
        with count_statements(rt) as seen:  # warm: the cache answers
            await gql.ok(CHECK, checks=checks)
        assert len(seen) == 0
        clock.set(clock.value.replace(minute=clock.value.minute + 1))
    assert counts[0] == counts[1] == counts[2], counts
    query = ("{ subjects { key entitlements { id ... on MeteredEntitlement { grants { id } lastReset } "
             "value { balance } } } }")
    with count_statements(rt) as seen:
        got2 = await gql.ok(query)
    assert len(got2["subjects"]) == 40
    assert len(seen) <= 12, len(seen)
