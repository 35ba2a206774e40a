"""GraphQL over HTTP: the graphql-http audit (0 MUST failures, 0 SHOULD warnings), the
application/graphql-response+json answers, JSON errors for every refused request, and CORS."""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess

import httpx
import pytest

from creditgate.adapters.graphql.app import prefers_graphql_response
from creditgate.adapters.web.cors import origin_checker, parse_origins
from creditgate.app import create_app
from creditgate.services.runtime import Runtime
from tests.rest.conftest import API_KEY, Server

JS = pathlib.Path(__file__).parent / "js"
GR = "application/graphql-response+json"
GR_TYPE = GR + "; charset=utf-8"


def test_graphql_http_audit(web: Server) -> None:
    node = shutil.which("node")
    if node is None or not (JS / "node_modules" / "graphql-http").exists():
        pytest.fail(f"run `npm ci --prefix {JS.relative_to(JS.parent.parent.parent)}` first (.ci/run does)")
    out = subprocess.run([node, str(JS / "audit.mjs"), f"{web.url}/graphql", API_KEY], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    results = json.loads(out)
    assert len(results) > 50  # the audit ran
    failed = [(r["id"], r["name"], r["reason"]) for r in results
              if r["name"].startswith("MUST") and r["status"] != "ok"]
    warned = [(r["id"], r["name"], r["reason"]) for r in results if r["status"] == "warn"]
    assert failed == [] and warned == []


def test_accept_negotiation() -> None:
    assert prefers_graphql_response(GR)
    assert prefers_graphql_response(f"{GR}, application/json")
    assert prefers_graphql_response(f"application/json, {GR}")
    assert prefers_graphql_response(f"application/json;q=0.9, {GR}")
    assert not prefers_graphql_response(f"application/json, {GR};q=0.5")
    assert not prefers_graphql_response(f"{GR};q=0")
    assert not prefers_graphql_response("application/json")
    assert not prefers_graphql_response("*/*")
    assert not prefers_graphql_response("")
    assert not prefers_graphql_response("application/json, multipart/mixed")


async def post(http: httpx.AsyncClient, body: object, accept: str | None = None, **headers: str) -> httpx.Response:
    h = {"content-type": "application/json", **({"accept": accept} if accept else {}), **headers}
    return await http.post("/graphql", content=json.dumps(body).encode(), headers=h)


async def test_request_errors_with_graphql_response_json(http: httpx.AsyncClient) -> None:
    for query in ("{", "{ nope }", "query($x: Int!) { features { id } }"):  # parse, validation, unused variable
        resp = await post(http, {"query": query}, GR)
        assert resp.status_code == 400 and resp.headers["content-type"] == GR_TYPE
        body = resp.json()
        assert "data" not in body and body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    # variables that do not coerce
    resp = await post(http, {"query": "query($l: Int) { features(limit: $l) { id } }", "variables": {"l": "x"}}, GR)
    assert resp.status_code == 400 and "data" not in resp.json()
    # the same requests as application/json keep their old answer: 200 with "data": null
    for accept in (None, "application/json", "*/*"):
        resp = await post(http, {"query": "{ nope }"}, accept)
        assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
        assert resp.json()["data"] is None


async def test_field_errors_stay_200(http: httpx.AsyncClient) -> None:
    query = '{ entitlementValue(subjectKey: "s", entitlementIdOrFeatureKey: "missing") { hasAccess } }'
    resp = await post(http, {"query": query}, GR)
    assert resp.status_code == 200 and resp.headers["content-type"] == GR_TYPE
    body = resp.json()
    assert body["data"] is None and body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    ok = await post(http, {"query": "{ features { id } }"}, GR)
    assert ok.status_code == 200 and ok.headers["content-type"] == GR_TYPE and ok.json() == {"data": {"features": []}}


async def test_fast_path_answers_in_the_asked_media_type(http: httpx.AsyncClient) -> None:
    query = "query($s: String!) { checkAccess(checks: [{subjectKey: $s, featureKey: \"f\"}]) { hasAccess reason } }"
    plain = await post(http, {"query": query, "variables": {"s": "a"}})
    gr = await post(http, {"query": query, "variables": {"s": "a"}}, GR)
    assert plain.headers["content-type"] == "application/json" and gr.headers["content-type"] == GR_TYPE
    assert plain.content == gr.content == b'{"data":{"checkAccess":[{"hasAccess":false,"reason":"NO_ENTITLEMENT"}]}}'


@pytest.mark.parametrize("accept", [None, GR])
async def test_refused_requests_are_graphql_json(http: httpx.AsyncClient, accept: str | None) -> None:
    want_type = GR_TYPE if accept else "application/json"
    hdr = {"accept": accept} if accept else {}

    async def refused(resp: httpx.Response, status: int, words: str) -> None:
        assert resp.status_code == status, resp.text
        assert resp.headers["content-type"] == want_type
        body = resp.json()
        assert ("data" in body) is (accept is None)  # "data": null only in the application/json shape
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        assert words in body["errors"][0]["message"].lower()

    await refused(await post(http, [{"query": "{ features { id } }"}], accept), 400, "batching")
    await refused(await http.post("/graphql", content=b"{not json", headers={"content-type": "application/json",
                                                                              **hdr}), 400, "json")
    await refused(await http.post("/graphql", content=b'{"query": "{ features { id } }"}',
                                  headers={"content-type": "text/plain", **hdr}), 415, "application/json")
    await refused(await post(http, {"variables": {}}, accept), 400, "query")
    resp = await http.get("/graphql", params={"query": "mutation { deleteFeature(idOrKey: \"x\") }"}, headers=hdr)
    await refused(resp, 405, "mutations")
    assert resp.headers["allow"] == "POST"
    resp = await http.put("/graphql", content=b"{}", headers={"content-type": "application/json", **hdr})
    await refused(resp, 405, "get and post")
    assert resp.headers["allow"] == "GET, POST"


async def test_unauthenticated_in_both_shapes(rt: Runtime) -> None:
    rt.settings = rt.settings.model_copy(update={"api_keys": "k1"})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(runtime=rt)),
                                 base_url="http://test") as client:
        old = await post(client, {"query": "{ features { id } }"})
        assert old.status_code == 401 and old.json()["data"] is None
        new = await post(client, {"query": "{ features { id } }"}, GR)
        assert new.status_code == 401 and new.headers["content-type"] == GR_TYPE
        assert "data" not in new.json() and new.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


# ---------------------------------------------------------------- CORS


def test_origin_patterns() -> None:
    exact, regex = parse_origins("https://app.example.com, https://*.example.com,http://localhost:*, ")
    assert exact == ["https://app.example.com"]
    import re

    assert regex is not None
    ok = ["https://a.example.com", "https://a.b.example.com", "https://x-1.example.com", "http://localhost",
          "http://localhost:5173"]
    bad = ["https://example.com", "https://evilexample.com", "http://a.example.com", "https://a.example.com.evil.io",
           "https://a.example.com:8443", "https://.example.com", "https://a_b.example.com", "http://localhost.evil.io",
           "http://localhost:5173/x", "https://a.example.comx", "null"]
    assert [o for o in ok if not re.fullmatch(regex, o)] == []
    assert [o for o in bad if re.fullmatch(regex, o)] == []
    assert parse_origins("*") == (["*"], None)
    assert parse_origins("") == ([], None)
    for wrong in ("https://*.com", "https://app.*.example.com", "https://a*.example.com", "ftp://x.example.com",
                  "example.com", "https://*", "https://x.example.com/path"):
        with pytest.raises(ValueError, match="CREDITGATE_CORS_ORIGINS"):
            parse_origins(wrong)


def test_websocket_origins_follow_the_same_list() -> None:
    allowed = origin_checker("https://app.example.com, https://*.example.org")
    assert allowed("https://app.example.com") and allowed("https://x.example.org")
    assert not allowed("https://example.org") and not allowed("https://evil.io") and not allowed("null")
    assert origin_checker("*")("https://anything.io")
    assert not origin_checker("")("https://app.example.com")


async def test_cors_preflight_and_exposed_headers(rt: Runtime) -> None:
    rt.settings = rt.settings.model_copy(update={"cors_origins": "https://*.example.com"})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(runtime=rt)),
                                 base_url="http://test") as client:
        asked = "authorization, content-type, traceparent, tracestate, x-request-id, apollographql-client-name, " \
                "apollographql-client-version"
        pre = await client.options("/graphql", headers={"origin": "https://shop.example.com",
                                                        "access-control-request-method": "POST",
                                                        "access-control-request-headers": asked})
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == "https://shop.example.com"
        allowed = {h.strip() for h in pre.headers["access-control-allow-headers"].lower().split(",")}
        assert {h.strip() for h in asked.split(",")} <= allowed
        denied = await client.options("/graphql", headers={"origin": "https://example.com.evil.io",
                                                           "access-control-request-method": "POST"})
        assert denied.status_code == 400 and "access-control-allow-origin" not in denied.headers
        resp = await client.post("/graphql", json={"query": "{ features { id } }"},
                                 headers={"origin": "https://shop.example.com"})
        assert resp.headers["access-control-allow-origin"] == "https://shop.example.com"
        exposed = {h.strip() for h in resp.headers["access-control-expose-headers"].lower().split(",")}
        assert {"x-request-id", "retry-after", "www-authenticate"} <= exposed
