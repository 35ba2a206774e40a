"""Live updates in the browser: the portal's graphql-transport-ws client (static/gqlws.js) against the
protocol as docs/semantics.md §10 states it (a scripted server in the browser), then against creditgate."""

from __future__ import annotations

import asyncio
import json
import pathlib
from typing import Any

from playwright.async_api import BrowserContext, WebSocketRoute, expect

from tests.conftest import GQL
from tests.ent_helpers import events
from tests.rest.conftest import Server
from tests.web.conftest import Watched, static_site
from tests.web.test_portal import open_portal, seed, token_for

VALUE = {"hasAccess": True, "balance": 70.0, "usage": 30.0, "overage": 0.0, "config": None}


class ScriptedServer:
    """The server end of graphql-transport-ws, played by the test (Playwright's WebSocket routing)."""

    def __init__(self) -> None:
        self.sockets: list[WebSocketRoute] = []
        self.received: list[dict[str, Any]] = []
        self.subscribed = asyncio.Event()
        self.refuse_handshake = False

    async def handle(self, ws: WebSocketRoute) -> None:
        self.sockets.append(ws)
        if self.refuse_handshake:
            await ws.close(code=1011, reason="refused")
            return

        def on_message(message: str | bytes) -> None:
            msg = json.loads(message)
            self.received.append(msg)
            if msg["type"] == "connection_init":
                ws.send(json.dumps({"type": "connection_ack"}))
            elif msg["type"] == "subscribe":
                self.subscribed.set()

        ws.on_message(on_message)

    def next(self, feature: str, entitlement_id: str | None, value: dict[str, Any], cause: str) -> None:
        sub = [m for m in self.received if m["type"] == "subscribe"][-1]
        update = {"subjectKey": "acme", "featureKey": feature, "entitlementId": entitlement_id, "value": value,
                  "asOf": "2024-01-15T12:00:30Z", "cause": cause}
        self.sockets[-1].send(json.dumps({"id": sub["id"], "type": "next",
                                          "payload": {"data": {"entitlementValues": update}}}))


async def scripted(page: Watched) -> ScriptedServer:
    server = ScriptedServer()
    await page.page.route_web_socket("**/graphql", server.handle)
    return server


async def test_portal_speaks_graphql_transport_ws(page: Watched, web: Server, api: GQL) -> None:
    ent = await seed(api)
    token = await token_for(api, "acme")
    server = await scripted(page)
    await open_portal(page, web, "token=" + token)
    p = page.page
    ai = p.locator('[data-feature="ai"]')
    await expect(ai.locator(".balance")).to_have_text("70")
    await asyncio.wait_for(server.subscribed.wait(), 10)
    init, sub = server.received[0], server.received[1]
    assert init == {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
    assert sub["type"] == "subscribe" and sub["payload"]["variables"] == {"s": "acme"}
    assert "entitlementValues(subjectKey: $s)" in sub["payload"]["query"]
    await expect(p.locator("#live")).to_have_attribute("data-state", "live")
    # the first update (CURRENT) changes nothing; the next ones show at once
    server.next("ai", ent["id"], VALUE, "CURRENT")
    server.next("ai", ent["id"], {**VALUE, "balance": 58.0, "usage": 42.0}, "INGEST")
    await expect(ai.locator(".balance")).to_have_text("58")
    await expect(ai.locator(".usage")).to_have_text("42")
    await expect(ai.locator(".percent")).to_have_text("42%")
    server.next("ai", ent["id"], {**VALUE, "hasAccess": False, "balance": 0.0, "usage": 100.0}, "INGEST")
    await expect(ai.locator(".state")).to_have_text("Off")
    # close code 4403: the credentials were refused (here the page only knows the server said so)
    await server.sockets[-1].close(code=4403, reason="Forbidden")
    await expect(p.locator("#notice")).to_contain_text("This link is not valid")
    assert page.outside == [] and page.errors == []


async def test_lost_connection_resubscribes(page: Watched, web: Server, api: GQL) -> None:
    ent = await seed(api)
    server = await scripted(page)
    await open_portal(page, web, "token=" + await token_for(api, "acme"))
    await asyncio.wait_for(server.subscribed.wait(), 10)
    server.subscribed.clear()
    await server.sockets[-1].close(code=1001, reason="Going Away")
    await expect(page.page.locator("#live")).to_have_attribute("data-state", "connecting")
    await page.page.clock.fast_forward(3000)  # the reconnection delay
    await asyncio.wait_for(server.subscribed.wait(), 10)
    assert len(server.sockets) == 2
    server.next("ai", ent["id"], {**VALUE, "balance": 65.0, "usage": 35.0}, "RESYNC")
    await expect(page.page.locator('[data-feature="ai"] .balance')).to_have_text("65")
    await expect(page.page.locator("#live")).to_have_attribute("data-state", "live")


async def test_subscription_refused_by_the_server(page: Watched, web: Server, api: GQL) -> None:
    await seed(api)
    server = await scripted(page)
    server.refuse_handshake = True
    await open_portal(page, web, "token=" + await token_for(api, "acme"))
    live = page.page.locator("#live")
    await expect(live).to_have_attribute("data-state", "unavailable")
    await expect(live).to_contain_text("Live updates unavailable")
    await expect(live.get_by_role("button", name="Reload")).to_be_visible()
    # the figures are there all the same, and a reload shows new usage
    ai = page.page.locator('[data-feature="ai"]')
    await expect(ai.locator(".balance")).to_have_text("70")
    await events(api, "acme", ("2024-01-15T11:00:00Z", 5))
    await live.get_by_role("button", name="Reload").click()
    await expect(ai.locator(".balance")).to_have_text("65")


# ---------------------------------------------------------------- against creditgate's own subscriptions

async def test_ingest_changes_the_page_within_a_second(page: Watched, web: Server, api: GQL) -> None:
    await seed(api)
    await open_portal(page, web, "token=" + await token_for(api, "acme"))
    await expect(page.page.locator("#live")).to_have_attribute("data-state", "live")
    ai = page.page.locator('[data-feature="ai"]')
    await expect(ai.locator(".balance")).to_have_text("70")
    await events(api, "acme", ("2024-01-15T12:00:00Z", 25))
    await expect(ai.locator(".balance")).to_have_text("45", timeout=1000)
    await expect(ai.locator(".usage")).to_have_text("55", timeout=1000)
    # the chart follows: the day's bar now holds the new usage
    await expect(ai.locator("rect.bar title")).to_have_text(["Jan 10: 12 used", "Jan 12: 18 used", "Jan 15: 25 used"])


SUBSCRIBER = """<!doctype html><meta charset="utf-8"><title>shop</title><pre id="out"></pre>
<script src="{api}/static/gqlws.js"></script>
<script>
const args = new URLSearchParams(location.hash.slice(1));
const out = document.getElementById('out');
const client = CreditgateWs.connect({{
  url: CreditgateWs.wsUrl('{api}/graphql'),
  connectionParams: {{Authorization: 'Bearer ' + args.get('token')}},
  onState: (state) => {{ document.body.dataset.state = state; }},
}});
for (const subject of ['acme', 'rival']) {{
  client.subscribe({{query: 'subscription($s: String!) {{ entitlementValues(subjectKey: $s) ' +
      '{{ featureKey cause value {{ balance usage }} }} }}', variables: {{s: subject}}}}, {{
    next: (p) => {{ out.textContent += JSON.stringify([subject, p.data.entitlementValues]) + '\\n'; }},
    error: (e) => {{ out.textContent += JSON.stringify([subject, e[0].extensions.code]) + '\\n'; }},
  }});
}}
</script>"""


async def test_another_origin_subscribes_with_a_subject_token(context: BrowserContext, web: Server, api: GQL,
                                                             tmp_path: pathlib.Path) -> None:
    await seed(api)
    token = await token_for(api, "acme")
    (tmp_path / "index.html").write_text(SUBSCRIBER.format(api=web.url))
    page = await context.new_page()
    with static_site(tmp_path) as port:
        await page.goto(f"http://localhost:{port}/index.html#token={token}")
        out = page.locator("#out")
        await expect(out).to_contain_text('["acme",{"featureKey":"ai","cause":"CURRENT"')
        await expect(out).to_contain_text('["rival","FORBIDDEN"]')
        await events(api, "acme", ("2024-01-15T12:00:00Z", 5))
        await expect(out).to_contain_text('"cause":"INGEST","value":{"balance":65,"usage":35}')
    await page.close()
