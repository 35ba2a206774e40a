"""The HTTP surface around GraphQL: API keys, health, GraphiQL, query bounds, the serve guard."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from creditgate.app import create_app
from creditgate.cli import is_loopback
from creditgate.services.runtime import Runtime
from tests.conftest import GQL

FEATURES = "{ features { id } }"


@pytest.fixture
async def keyed(rt: Runtime) -> GQL:
    rt.settings = rt.settings.model_copy(update={"api_keys": "k1, k2"})
    app = create_app(runtime=rt)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    return GQL(client)


async def test_api_keys_are_required_when_configured(keyed: GQL) -> None:
    for token in (None, "wrong", "k1x"):
        body = await keyed(FEATURES, token)
        assert body["status"] == 401
        assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        assert body["data"] is None
    assert (await keyed.ok(FEATURES, "k1")) == {"features": []}
    assert (await keyed.ok(FEATURES, "k2")) == {"features": []}
    resp = await keyed.http.post("/graphql", json={"query": FEATURES}, headers={"authorization": "Basic k1"})
    assert resp.status_code == 401


async def test_open_mode_without_keys(gql: GQL) -> None:
    assert (await gql.ok(FEATURES)) == {"features": []}


async def test_health_and_graphiql(http: httpx.AsyncClient) -> None:
    resp = await http.get("/healthz")
    assert resp.status_code == 200 and resp.json() == {"status": "ok"}
    page = await http.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 200 and "graphiql" in page.text.lower()
    got = await http.get("/graphql", params={"query": FEATURES})
    assert got.json() == {"data": {"features": []}}


async def test_cors_preflight(http: httpx.AsyncClient) -> None:
    resp = await http.options("/graphql", headers={
        "origin": "https://app.example", "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type"})
    assert resp.status_code == 200
    assert resp.headers["access-control-allow-origin"] in ("*", "https://app.example")
    assert "authorization" in resp.headers["access-control-allow-headers"].lower()


async def test_query_bounds(gql: GQL) -> None:
    deep = "{ features { id } " + " ".join(f"a{i}: features {{ id }}" for i in range(40)) + " }"
    err = await gql.error(deep, "BAD_USER_INPUT")
    assert "aliases" in err["message"].lower()
    many = "{ " + " ".join("features { id key name metadata }" for _ in range(200)) + " }"
    await gql.error(many, "BAD_USER_INPUT")
    long_list = "query($x: [AccessCheckInput!]!) { checkAccess(checks: $x) { hasAccess } }"
    pair = {"subjectKey": "s", "featureKey": "f"}
    err = await gql.error(long_list, "BAD_USER_INPUT", x=[pair] * 1001)
    assert "1000" in err["message"]
    nested = "{ features { id } }" + "#" * 10  # comments are fine
    assert await gql.ok(nested) == {"features": []}


async def test_unexpected_errors_are_masked(gql: GQL, rt: Runtime, monkeypatch: pytest.MonkeyPatch,
                                            caplog: pytest.LogCaptureFixture) -> None:
    from creditgate.services import features

    async def boom(*_: object, **__: object) -> None:
        raise RuntimeError("psycopg.OperationalError: secret SQL SELECT * FROM features")

    monkeypatch.setattr(features, "list_features", boom)
    err = await gql.error(FEATURES, "INTERNAL")
    assert err["message"] == "Internal error."
    assert "secret" in caplog.text  # the stack goes to the log, not to the client


def test_loopback_detection() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3") and not is_loopback("example.com")


def test_serve_refuses_public_host_without_keys(tmp_path: object) -> None:
    env = {"PATH": "/usr/bin:/bin", "CREDITGATE_API_KEYS": "", "CREDITGATE_DATABASE_URL": "sqlite:///unused.db"}
    proc = subprocess.run([sys.executable, "-m", "creditgate.cli", "serve", "--host", "0.0.0.0"],
                          capture_output=True, text=True, env=env, timeout=60, cwd=str(tmp_path))
    assert proc.returncode == 2
    assert "CREDITGATE_API_KEYS" in proc.stderr


def test_datetime_scalar_edges() -> None:
    from datetime import UTC, datetime

    from creditgate.adapters.graphql.scalars import format_datetime, parse_datetime

    assert format_datetime(datetime(33, 1, 2, 3, 4, 5, tzinfo=UTC)) == "0033-01-02T03:04:05Z"
    assert format_datetime(datetime(2024, 1, 2, 3, 4, 5, 120000, tzinfo=UTC)) == "2024-01-02T03:04:05.12Z"
    assert parse_datetime("2024-03-31T02:30:00+02:00") == datetime(2024, 3, 31, 0, 30, tzinfo=UTC)
    for bad in ("0001-01-01T00:00:00+03:00", "2024-01-01T00:00:00", "yesterday", 5):
        with pytest.raises(ValueError):
            parse_datetime(bad)


def test_api_keys_follow_settings_copies() -> None:
    from creditgate.config import Settings

    base = Settings(api_keys="")
    assert base.api_key_set == frozenset()
    assert base.model_copy(update={"api_keys": "a, b"}).api_key_set == {"a", "b"}
