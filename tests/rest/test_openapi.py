"""The generated OpenAPI document: served, complete for the SDK, and true to real responses (schemathesis)."""

from __future__ import annotations

import os
from typing import Any

import httpx
import jsonschema_rs
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from tests.rest.conftest import API_KEY, Server

# Generated cases per operation; raise it locally for a deeper search (the suite stays fast and fixed).
EXAMPLES = int(os.environ.get("CREDITGATE_FUZZ_EXAMPLES", "12"))
AUTH = {"Authorization": f"Bearer {API_KEY}"}
# Every client method of openmeter 1.0.0b115: (method, path).
SDK_OPERATIONS = {
    ("get", "/api/v1/events"), ("post", "/api/v1/events"),
    ("get", "/api/v1/meters"), ("post", "/api/v1/meters"), ("get", "/api/v1/meters/{meterIdOrSlug}"),
    ("delete", "/api/v1/meters/{meterIdOrSlug}"), ("get", "/api/v1/meters/{meterIdOrSlug}/query"),
    ("get", "/api/v1/meters/{meterIdOrSlug}/subjects"),
    ("get", "/api/v1/subjects"), ("post", "/api/v1/subjects"), ("get", "/api/v1/subjects/{subjectIdOrKey}"),
    ("delete", "/api/v1/subjects/{subjectIdOrKey}"),
    ("get", "/api/v1/portal/meters/{meterSlug}/query"),
    ("get", "/api/v1/features"), ("post", "/api/v1/features"), ("get", "/api/v1/features/{featureId}"),
    ("delete", "/api/v1/features/{featureId}"),
    ("get", "/api/v1/debug/metrics"),
    ("post", "/api/v1/portal/tokens"), ("get", "/api/v1/portal/tokens"), ("post", "/api/v1/portal/tokens/invalidate"),
    ("get", "/api/v1/entitlements"), ("get", "/api/v1/grants"), ("delete", "/api/v1/grants/{grantId}"),
    ("get", "/api/v1/subjects/{subjectIdOrKey}/entitlements"),
    ("post", "/api/v1/subjects/{subjectIdOrKey}/entitlements"),
    ("get", "/api/v1/subjects/{subjectIdOrKey}/entitlements/{entitlementId}"),
    ("delete", "/api/v1/subjects/{subjectIdOrKey}/entitlements/{entitlementId}"),
    ("get", "/api/v1/subjects/{subjectIdOrKey}/entitlements/{entitlementIdOrFeatureKey}/grants"),
    ("post", "/api/v1/subjects/{subjectIdOrKey}/entitlements/{entitlementIdOrFeatureKey}/grants"),
    ("get", "/api/v1/subjects/{subjectIdOrKey}/entitlements/{entitlementIdOrFeatureKey}/value"),
    ("get", "/api/v1/subjects/{subjectIdOrKey}/entitlements/{entitlementId}/history"),
    ("post", "/api/v1/subjects/{subjectIdOrKey}/entitlements/{entitlementId}/reset"),
    # and those the Node SDK 1.0.0-beta.185 adds
    ("get", "/api/v1/entitlements/{entitlementId}"),
    ("put", "/api/v1/subjects/{subjectIdOrKey}/entitlements/{entitlementIdOrFeatureKey}/override"),
}


def document(live: Server) -> dict[str, Any]:
    resp = httpx.get(f"{live.url}/api/v1/openapi.json")  # public: no credentials needed
    assert resp.status_code == 200
    doc: dict[str, Any] = resp.json()
    return doc


def test_document_covers_the_sdk(live: Server) -> None:
    doc = document(live)
    assert doc["openapi"].startswith("3.")
    served = {(m, p) for p, item in doc["paths"].items() for m in item}
    assert served >= SDK_OPERATIONS
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


def test_real_responses_match_the_document(live: Server) -> None:
    doc = document(live)
    calls = [
        ("post", "/api/v1/meters", "/api/v1/meters", 201,
         {"slug": "m1", "eventType": "t", "aggregation": "SUM", "valueProperty": "$.v", "groupBy": {"g": "$.g"}}),
        ("post", "/api/v1/events", "/api/v1/events", None,
         [{"id": "1", "source": "s", "type": "t", "subject": "a", "time": "2024-01-15T11:00:00Z", "data": {"v": 1}},
          {"id": "2", "source": "s", "type": "t", "subject": "a", "data": {"v": "x"}}]),
        ("get", "/api/v1/events", "/api/v1/events", 200, None),
        ("get", "/api/v1/meters", "/api/v1/meters", 200, None),
        ("get", "/api/v1/meters/{meterIdOrSlug}", "/api/v1/meters/m1", 200, None),
        ("get", "/api/v1/meters/{meterIdOrSlug}/query", "/api/v1/meters/m1/query?groupBy=g&groupBy=subject", 200,
         None),
        ("get", "/api/v1/meters/{meterIdOrSlug}/subjects", "/api/v1/meters/m1/subjects", 200, None),
        ("post", "/api/v1/subjects", "/api/v1/subjects", 200, [{"key": "a", "metadata": {"x": [1]}}]),
        ("get", "/api/v1/subjects", "/api/v1/subjects", 200, None),
        ("get", "/api/v1/subjects/{subjectIdOrKey}", "/api/v1/subjects/a", 200, None),
        ("post", "/api/v1/features", "/api/v1/features", 201, {"key": "f", "name": "F", "meterSlug": "m1"}),
        ("get", "/api/v1/features", "/api/v1/features?includeArchived=true", 200, None),
        ("get", "/api/v1/features/{featureId}", "/api/v1/features/f", 200, None),
        ("get", "/api/v1/debug/metrics", "/api/v1/debug/metrics", 200, None),
        ("post", "/api/v1/subjects/{subjectIdOrKey}/entitlements", "/api/v1/subjects/a/entitlements", 201,
         {"type": "metered", "featureKey": "f", "usagePeriod": {"interval": "DAY"}, "issueAfterReset": 5}),
        ("post", "/api/v1/subjects/{subjectIdOrKey}/entitlements", "/api/v1/subjects/b/entitlements", 201,
         {"type": "static", "featureKey": "f", "config": "{}"}),
        ("get", "/api/v1/entitlements", "/api/v1/entitlements", 200, None),
        ("get", "/api/v1/subjects/{subjectIdOrKey}/entitlements", "/api/v1/subjects/a/entitlements", 200, None),
        ("get", "/api/v1/subjects/{subjectIdOrKey}/entitlements/{entitlementIdOrFeatureKey}/value",
         "/api/v1/subjects/a/entitlements/f/value", 200, None),
        ("get", "/api/v1/subjects/{subjectIdOrKey}/entitlements/{entitlementIdOrFeatureKey}/value",
         "/api/v1/subjects/b/entitlements/f/value", 200, None),
        ("get", "/api/v1/grants", "/api/v1/grants", 200, None),
        ("post", "/api/v1/portal/tokens", "/api/v1/portal/tokens", 200, {"subject": "a"}),
        ("get", "/api/v1/portal/tokens", "/api/v1/portal/tokens", 200, None),
        ("get", "/api/v1/features/{featureId}", "/api/v1/features/nope", 404, None),
        ("get", "/api/v1/subjects/{subjectIdOrKey}/entitlements/{entitlementIdOrFeatureKey}/value",
         "/api/v1/subjects/a/entitlements/nope/value", 404, None),
        ("post", "/api/v1/features", "/api/v1/features", 409, {"key": "f", "name": "F"}),
        ("post", "/api/v1/features", "/api/v1/features", 400, {"key": 1}),
    ]
    with httpx.Client(base_url=live.url, headers=AUTH) as http:
        responses = [(call, http.request(call[0].upper(), call[2], json=call[4])) for call in calls]
    for (method, template, url, status, _), resp in responses:
        assert resp.status_code == (status or 204), (url, resp.text)
        if status is None:
            continue
        kind = "application/json" if status < 400 else "application/problem+json"
        assert resp.headers["content-type"] == kind
        content = doc["paths"][template][method]["responses"][str(status)]["content"]
        schema = content[kind]["schema"]
        errors = list(jsonschema_rs.validator_for({**schema, "components": doc["components"]})
                      .iter_errors(resp.json()))
        assert not errors, (url, [str(e) for e in errors])


def test_schemathesis(live: Server) -> None:
    """Generated requests for every operation: never a 5xx, and every response as documented."""
    schema = schemathesis.openapi.from_dict(document(live))
    checks = [not_a_server_error, response_schema_conformance, content_type_conformance]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= len(SDK_OPERATIONS)
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=live.url, headers=AUTH, checks=checks)

        run()
