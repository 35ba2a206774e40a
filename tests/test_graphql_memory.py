"""A GraphQL request's executor, variables and result are freed when it ends (adapters/graphql/execution.py),
not left in a reference cycle for a full collection that the app makes rare (app.py)."""

from __future__ import annotations

import gc

from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from creditgate.adapters.graphql.execution import Execution
from creditgate.adapters.graphql.schema import schema
from tests.conftest import GQL


def executors() -> int:
    return sum(1 for o in gc.get_objects() if isinstance(o, StrawberryGraphQLCoreExecutionContext))


def test_the_schema_runs_with_it() -> None:
    assert schema.execution_context_class is Execution


async def test_a_request_leaves_no_cycle_behind(gql: GQL) -> None:
    await gql.ok('mutation { createFeature(input: {key: "sso", name: "SSO"}) { id } }')
    gc.collect()
    gc.disable()  # anything still here after the requests is cyclic garbage, not yet collected
    try:
        assert executors() == 0
        inputs = [{"subjectKey": f"s{i}", "input": {"type": "BOOLEAN", "featureKey": "sso"}} for i in range(50)]
        await gql.ok("mutation($i: [BatchEntitlementInput!]!) { createEntitlements(inputs: $i) { id } }", i=inputs)
        assert executors() == 0, "mutation"
        await gql.ok('{ entitlements(subjectKey: "s1") { id featureKey } }')
        assert executors() == 0, "query"
    finally:
        gc.enable()
