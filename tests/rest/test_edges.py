"""REST edges without the SDK: open mode, routing and protocol errors, the error mapping, /metrics."""

from __future__ import annotations

import logging

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


async def test_prometheus_metrics(http: httpx.AsyncClient) -> None:
    await http.get("/api/v1/features")
    resp = await http.get("/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    assert "# TYPE creditgate_http_requests_total counter" in resp.text
    assert 'creditgate_http_requests_total{operation="listFeatures",status="200"}' in resp.text
    debug = await http.get("/api/v1/debug/metrics")
    assert debug.json().startswith("# HELP")
