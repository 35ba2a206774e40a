"""Screenshots of the customer usage page and GraphiQL for docs/ (Playwright driving Debian's chromium).

Starts `creditgate serve` on a temporary SQLite database, creates a subject with a few entitlements
and some usage over the current month, and saves docs/portal.png, docs/portal-phone.png and
docs/graphiql.png. Every request outside the server's origin is blocked while the pages load.

    uv run python scripts/web_screenshots.py
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from playwright.async_api import Page, Route, async_playwright

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
KEY = "screenshot-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def gql(client: httpx.Client, query: str, **variables: Any) -> dict[str, Any]:
    body = client.post("/graphql", json={"query": query, "variables": variables}).json()
    assert not body.get("errors"), body["errors"]
    data: dict[str, Any] = body["data"]
    return data


def seed(client: httpx.Client) -> str:
    now = datetime.now(UTC)
    month = (now - timedelta(days=20)).replace(hour=0, minute=0, second=0, microsecond=0)  # a period 20 days in
    gql(client, "mutation($i: CreateMeterInput!) { createMeter(input: $i) { id } }",
        i={"slug": "tokens", "eventType": "prompt", "aggregation": "SUM", "valueProperty": "$.tokens"})
    for key, name, meter in [("ai", "AI tokens", "tokens"), ("sso", "Single sign-on", None),
                             ("plan", "Plan", None)]:
        gql(client, "mutation($i: CreateFeatureInput!) { createFeature(input: $i) { id } }",
            i={"key": key, "name": name, **({"meterSlug": meter} if meter else {})})
    create = ("mutation($s: String!, $i: CreateEntitlementInput!) "
              "{ createEntitlement(subjectKey: $s, input: $i) { id } }")
    gql(client, create, s="acme", i={"type": "METERED", "featureKey": "ai", "issueAfterReset": 50000,
                                     "usagePeriod": {"interval": "MONTH", "anchor": month.isoformat()},
                                     "measureUsageFrom": month.isoformat()})
    gql(client, create, s="acme", i={"type": "BOOLEAN", "featureKey": "sso"})
    gql(client, create, s="acme", i={"type": "STATIC", "featureKey": "plan",
                                     "config": {"tier": "team", "seats": 25}})
    events, day, n = [], month, 0
    while day < now:
        for hour in (9, 13, 17):
            t = day + timedelta(hours=hour)
            if t < now:
                n += 1
                events.append({"id": f"e{n}", "source": "app", "type": "prompt", "subject": "acme",
                               "time": t.isoformat(), "data": {"tokens": 300 + (n * 137) % 900}})
        day += timedelta(days=1)
    gql(client, "mutation($e: [CloudEventInput!]!) { ingestEvents(events: $e) { accepted } }", e=events)
    made = gql(client, 'mutation { createSubjectToken(subjectKey: "acme", ttlSeconds: 3600) { token } }')
    return str(made["createSubjectToken"]["token"])


async def guarded(page: Page, origin: str, outside: list[str]) -> None:
    async def only_here(route: Route) -> None:
        if route.request.url.startswith(origin + "/"):
            await route.continue_()
        else:
            outside.append(route.request.url)
            await route.abort()

    await page.route("**/*", only_here)


async def shoot(base: str, token: str) -> None:
    outside: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        for name, viewport in [("portal.png", {"width": 1100, "height": 900}),
                               ("portal-phone.png", {"width": 390, "height": 844})]:
            page = await browser.new_page(viewport=viewport, locale="en-US")
            await guarded(page, base, outside)
            await page.goto(f"{base}/portal#token={token}")
            await page.locator('[data-feature="ai"] .balance').wait_for()
            await page.locator('#live[data-state="live"], #live[data-state="unavailable"]').wait_for()
            await page.screenshot(path=str(DOCS / name), full_page=True)
            await page.close()
        page = await browser.new_page(viewport={"width": 1280, "height": 720}, locale="en-US")
        await guarded(page, base, outside)
        await page.goto(f"{base}/graphql")
        await page.locator(".graphiql-container").wait_for()
        headers = page.locator(".graphiql-editor-tool .graphiql-editor").last
        await headers.click()
        await page.keyboard.press("Control+A")
        await page.keyboard.type(f'{{"Authorization": "Bearer {KEY}"}}')
        query = page.locator(".graphiql-query-editor .CodeMirror").first
        await query.click()
        await page.keyboard.press("Control+A")
        await page.keyboard.type('{ checkAccess(checks: [{subjectKey: "acme", featureKey: "ai"}]) '
                                 "{ hasAccess reason balance usage } }")
        await page.locator(".graphiql-execute-button").click()
        await page.locator(".graphiql-response").get_by_text('"GRANTED"').wait_for()
        await page.screenshot(path=str(DOCS / "graphiql.png"))
        await browser.close()
    assert not outside, outside


def main() -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "CREDITGATE_DATABASE_URL": f"sqlite:///{tmp}/shots.db", "CREDITGATE_API_KEYS": KEY}
        server = subprocess.Popen([sys.executable, "-m", "creditgate.cli", "serve", "--port", str(port)],
                                  env=env, cwd=tmp)
        try:
            with httpx.Client(base_url=base, headers={"authorization": f"Bearer {KEY}"}, timeout=30) as client:
                for _ in range(100):
                    try:
                        if client.get("/healthz").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    time.sleep(0.2)
                token = seed(client)
            asyncio.run(shoot(base, token))
        finally:
            server.terminate()
            server.wait(30)
    print("wrote", ", ".join(str(DOCS / n) for n in ("portal.png", "portal-phone.png", "graphiql.png")))


if __name__ == "__main__":
    main()
