"""REST edges without the SDK: open mode, routing and protocol errors, the error mapping, /metrics."""

from __future__ import annotations

import logging
import re

import httpx
import orjson
import pytest
from pydantic import BaseModel

from creditgate.adapters.rest.errors import error_response
from creditgate.domain.errors import Conflict, Forbidden, NotFound, Unauthenticated


async def test_open_mode_without_api_keys(http: httpx.AsyncClient) -> None:
    resp = await http.post("/api/v1/subjects", json=[{"key": "a"}])
    assert resp.status_code == 200 and resp.json()[0]["key"] == "a"
    resp = await http.get("/api/v1/subjects", headers={"authorization": "Basic eDp5"})
    assert resp.status_code == 401 and resp.headers["www-authenticate"] == "Bearer"


async def test_routing_and_protocol_errors(http: httpx.AsyncClient) -> None:
    for method, url, status in [("GET", "/api/v1/nope", 404), ("PUT", "/api/v1/subjects", 405),
                                ("GET", "/api/v1/subjects/%00", 400), ("GET", "/api/v1/features?limit=x", 400),
                                ("GET", "/api/v1/features?orderBy=name", 400),
                                ("GET", "/api/v1/features?limit=1&limit=2", 400),
                                ("GET", "/api/v1/subjects/a%0Ab", 404)]:
        resp = await http.request(method, url)
        assert resp.status_code == status, (method, url, resp.text)
        body = resp.json()
        assert resp.headers["content-type"] == "application/problem+json"
        assert body["status"] == status and body["type"] == "about:blank" and body["instance"]
    for raw in [b"[", b"", b"null", b'{"key": "a"}', b'[{"key": "a\\u0000"}]', b"[" * 5000]:
        resp = await http.post("/api/v1/subjects", content=raw, headers={"content-type": "application/json"})
        assert resp.status_code == 400, raw[:20]
    resp = await http.post("/api/v1/subjects", content=b"[]", headers={"content-type": "text/plain"})
    assert resp.status_code == 415


def test_error_mapping_in_one_place(caplog: pytest.LogCaptureFixture) -> None:
    cases = [(NotFound("gone"), 404), (Forbidden("no"), 403), (Unauthenticated("who"), 401),
             (Conflict("dup", conflicting_entity_id="01X"), 409)]
    for exc, status in cases:
        resp = error_response(exc, "/api/v1/x")
        body = orjson.loads(bytes(resp.body))
        assert resp.status_code == status and body["detail"] == exc.message and body["instance"] == "/api/v1/x"
    assert orjson.loads(bytes(error_response(cases[3][0]).body))["extensions"] == {"conflictingEntityId": "01X"}

    class M(BaseModel):
        n: int

    try:
        M.model_validate({"n": "secret-input"})
    except Exception as exc:
        resp = error_response(exc)
    assert resp.status_code == 400 and b"secret-input" not in bytes(resp.body)
    with caplog.at_level(logging.ERROR, logger="creditgate.rest"):
        resp = error_response(RuntimeError("psycopg.errors.Boom: SELECT secret FROM t"), "/api/v1/y")
    body = orjson.loads(bytes(resp.body))
    assert resp.status_code == 500 and body["detail"] == "Internal error."
    assert b"psycopg" not in bytes(resp.body) and b"SELECT" not in bytes(resp.body)
    assert "psycopg.errors.Boom" in caplog.text  # logged for the operator


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text (0 when absent: a counter not yet incremented)."""
    for m in re.finditer(r"^(\w+)(?:\{(.*)\})? (\S+)$", text, re.M):
        if m[1] == name and dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m[2] or "")) == labels:
            return float(m[3])
    return 0.0


async def test_prometheus_metrics_count_exactly(http: httpx.AsyncClient) -> None:
    """Exact increments from a baseline read in this test: counters are per process, so the second backend's
    run starts from the first one's totals."""
    async def scrape() -> str:
        resp = await http.get("/metrics")
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
        return resp.text

    before = await scrape()
    assert "# TYPE creditgate_http_requests_total counter" in before
    for _ in range(3):
        assert (await http.get("/api/v1/features")).status_code == 200
    assert (await http.get("/api/v1/features?limit=x")).status_code == 400
    batch = [{"id": f"m{i}", "source": "edge", "type": "t", "subject": "s", "specversion": "1.0"} for i in (1, 2)]
    for body in (batch, batch[:1]):
        resp = await http.post("/api/v1/events", content=orjson.dumps(body),
                               headers={"content-type": "application/cloudevents-batch+json"})
        assert resp.status_code == 204, resp.text
    after = await scrape()

    def delta(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert delta("creditgate_http_requests_total", operation="listFeatures", status="200") == 3
    assert delta("creditgate_http_requests_total", operation="listFeatures", status="400") == 1
    assert delta("creditgate_http_requests_total", operation="ingestEvents", status="204") == 2
    assert delta("creditgate_events_total", outcome="accepted") == 2
    assert delta("creditgate_events_total", outcome="duplicates") == 1
    debug = (await http.get("/api/v1/debug/metrics")).json()
    assert debug.startswith("# HELP")
    assert sample(debug, "creditgate_http_requests_total", operation="listFeatures", status="200") == \
        sample(after, "creditgate_http_requests_total", operation="listFeatures", status="200")
