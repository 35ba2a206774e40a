"""GraphQL fuzzing (schemathesis) of every query and mutation against the live server, on both backends:
a fixed seed and a bounded number of documents per operation; no 5xx, a JSON body always, no INTERNAL.
`scripts/fuzz_graphql.py` runs the same for longer."""

from __future__ import annotations

import os

import httpx

from tests.graphql_fuzz import SETUP, fuzz
from tests.rest.conftest import API_KEY, START, Server

EXAMPLES = int(os.environ.get("CREDITGATE_GQL_FUZZ_EXAMPLES", "30"))
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def test_graphql_fuzz(live: Server) -> None:
    setup = httpx.post(f"{live.url}/graphql", json={"query": SETUP}, headers=AUTH)
    assert setup.status_code == 200 and not setup.json().get("errors"), setup.text
    report = fuzz(live.url, AUTH, START, examples=EXAMPLES, negative=max(1, EXAMPLES // 3))
    ops = {name.split(" ", 1)[1] for name in report.examples}
    assert len(ops) >= 25 and {"checkAccess", "ingestEvents", "createGrant", "deleteMeter"} <= ops
    failures = [f"{f.operation}: {f.problem}\n  {f.query}" for f in report.distinct().values()]
    assert not failures, "\n".join(failures)
