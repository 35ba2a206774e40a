"""GraphiQL offline, and a page on another origin calling the API with a subject token, in chromium."""

from __future__ import annotations

import asyncio
import json
import pathlib

from playwright.async_api import BrowserContext, expect

from tests.conftest import GQL
from tests.ent_helpers import events, feature, meter, metered
from tests.rest.conftest import API_KEY, Server
from tests.web.conftest import Watched, static_site
from tests.web.test_portal import token_for


async def test_graphiql_runs_a_query_offline(page: Watched, web: Server, api: GQL) -> None:
    await feature(api, "sso", meter_slug=None)
    p = page.page
    resp = await p.goto(f"{web.url}/graphql")
    assert resp is not None and "default-src 'self'" in (await resp.header_value("content-security-policy") or "")
    await expect(p.locator(".graphiql-container")).to_be_visible()
    # typed as a user does: the headers tab (open by default), then the query
    for editor, text in [(".graphiql-editor-tool .CodeMirror", json.dumps({"Authorization": f"Bearer {API_KEY}"})),
                         (".graphiql-query-editor .CodeMirror", "{ flags: features { key ")]:
        await p.locator(editor).locator("visible=true").first.click()
        await p.keyboard.press("Control+A")
        await p.keyboard.press("Delete")
        await p.keyboard.type(text)
        await p.keyboard.press("Escape")  # close the completion list
    result = p.locator(".graphiql-response")
    for _ in range(5):  # GraphiQL takes edits in after a short debounce: run again until it has them
        await p.locator(".graphiql-execute-button").click()
        try:
            await expect(result).to_contain_text('"flags"', timeout=2000)
            break
        except AssertionError:
            continue
    await expect(result).to_contain_text('"key": "sso"')
    # every asset came from creditgate: nothing outside its origin was even attempted
    assert page.outside == [] and page.errors == []
    # the API key stays out of localStorage (headers are persisted only when asked to), the history not
    stored = dict(await p.evaluate("Object.entries(localStorage)"))
    assert API_KEY not in json.dumps(stored)
    assert "features" in stored["graphiql:queries"]


PAGE = """<!doctype html><meta charset="utf-8"><title>shop</title><pre id="out">running</pre>
<script>
const args = new URLSearchParams(location.hash.slice(1));
async function call(subject) {
  const resp = await fetch(args.get('api') + '/graphql', {method: 'POST', headers: {
      'content-type': 'application/json', 'authorization': 'Bearer ' + args.get('token'),
      'traceparent': '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', 'tracestate': 'shop=1',
      'x-request-id': 'shop-req-' + subject, 'apollographql-client-name': 'shop',
      'apollographql-client-version': '1.2.3'},
    body: JSON.stringify({query: 'query($s: String!) { entitlementValue(subjectKey: $s, ' +
      'entitlementIdOrFeatureKey: "ai") { hasAccess balance usage } }', variables: {s: subject}})});
  return {status: resp.status, requestId: resp.headers.get('x-request-id'), body: await resp.json()};
}
(async () => {
  try {
    const own = await call('acme');
    const other = await call('rival');
    document.getElementById('out').textContent = JSON.stringify({own, other});
  } catch (e) {
    document.getElementById('out').textContent = 'blocked: ' + e.name;
  }
})();
</script>"""


async def test_page_on_another_origin_with_a_subject_token(context: BrowserContext, web: Server, api: GQL,
                                                          tmp_path: pathlib.Path) -> None:
    await meter(api)
    await feature(api, "ai")
    await metered(api, "acme", "ai", issueAfterReset=10, anchor="2024-01-01T00:00:00Z",
                  measureUsageFrom="2024-01-01T00:00:00Z")
    await metered(api, "rival", "ai")
    await events(api, "acme", ("2024-01-15T10:00:00Z", 4))
    token = await token_for(api, "acme")
    (tmp_path / "index.html").write_text(PAGE)
    page = await context.new_page()
    with static_site(tmp_path) as port:  # http://localhost:* is an allowed origin pattern
        await page.goto(f"http://localhost:{port}/index.html#api={web.url}&token={token}")
        out = page.locator("#out")
        await expect(out).not_to_have_text("running", timeout=15000)
        got = json.loads(await out.text_content() or "")
    own, other = got["own"], got["other"]
    assert own["status"] == 200
    assert own["body"] == {"data": {"entitlementValue": {"hasAccess": True, "balance": 6.0, "usage": 4.0}}}
    assert own["requestId"] == "shop-req-acme"  # an exposed header
    assert other["body"]["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    # the same page on an origin outside CREDITGATE_CORS_ORIGINS is refused by the browser
    with static_site(tmp_path, host="127.0.0.2") as port:
        await page.goto(f"http://127.0.0.2:{port}/index.html#api={web.url}&token={token}")
        await expect(page.locator("#out")).to_have_text("blocked: TypeError", timeout=15000)
    await page.close()


async def test_graphiql_subscription_sends_the_header_in_connection_init(page: Watched, web: Server) -> None:
    """A subscription typed in GraphiQL goes over graphql-transport-ws with the Headers tab's
    Authorization in connection_init (a scripted server answers here)."""
    from tests.web.test_live import ScriptedServer

    server = ScriptedServer()
    p = page.page
    await p.route_web_socket("**/graphql", server.handle)
    await p.goto(f"{web.url}/graphql")
    for editor, text in [(".graphiql-editor-tool .CodeMirror", json.dumps({"Authorization": f"Bearer {API_KEY}"})),
                         (".graphiql-query-editor .CodeMirror",
                          'subscription { entitlementValues(subjectKey: "acme") { featureKey cause ')]:
        await p.locator(editor).locator("visible=true").first.click()
        await p.keyboard.press("Control+A")
        await p.keyboard.press("Delete")
        await p.keyboard.type(text)
        await p.keyboard.press("Escape")
    for _ in range(5):  # as above: until GraphiQL has taken the edits in
        await p.locator(".graphiql-execute-button").click()
        try:
            await asyncio.wait_for(server.subscribed.wait(), 2)
            break
        except TimeoutError:
            continue
    subscribe = [m for m in server.received if m["type"] == "subscribe"][-1]
    init = [m for m in server.received if m["type"] == "connection_init"][-1]
    assert init["payload"] == {"Authorization": f"Bearer {API_KEY}"}
    assert "entitlementValues" in subscribe["payload"]["query"]
    server.next("ai", "01ENT", {"hasAccess": True, "balance": 7.0, "usage": 3.0, "overage": 0.0, "config": None},
                "INGEST")
    await expect(p.locator(".graphiql-response")).to_contain_text('"cause": "INGEST"')
    assert page.outside == [] and page.errors == []
