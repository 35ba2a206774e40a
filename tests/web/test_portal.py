"""The customer usage page (/portal) in a real browser: the right figures for a subject token, clear
messages for expired, wrong and other subjects' tokens, phone width, nothing loaded from elsewhere."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from playwright.async_api import expect

from tests.conftest import GQL
from tests.ent_helpers import CREATE_ENT, events, feature, grant, meter, metered
from tests.rest.conftest import START, Server
from tests.web.conftest import Watched

TOKEN = "mutation($s: String!, $ttl: Int) { createSubjectToken(subjectKey: $s, ttlSeconds: $ttl) { token } }"
HISTORY = """query($id: ID!) { entitlement(id: $id) { ... on MeteredEntitlement {
  history(windowSize: DAY) { windowedHistory { period { from } usage balanceAtStart } } } } }"""


async def token_for(api: GQL, subject: str, ttl: int = 3600) -> str:
    return str((await api.ok(TOKEN, s=subject, ttl=ttl))["createSubjectToken"]["token"])


async def seed(api: GQL) -> dict[str, Any]:
    """acme: metered `ai` (100 a month, 30 used), boolean `sso`, static `plan`; rival: metered `ai`."""
    await meter(api)
    await feature(api, "ai")
    await feature(api, "sso", meter_slug=None)
    await feature(api, "plan", meter_slug=None)
    month = {"anchor": "2024-01-01T00:00:00Z", "measureUsageFrom": "2024-01-01T00:00:00Z", "issueAfterReset": 100}
    ent = await metered(api, "acme", "ai", **month)
    await api.ok(CREATE_ENT, s="acme", input={"type": "BOOLEAN", "featureKey": "sso"})
    await api.ok(CREATE_ENT, s="acme", input={"type": "STATIC", "featureKey": "plan",
                                              "config": {"seats": 5, "tier": "pro"}})
    await events(api, "acme", ("2024-01-10T10:00:00Z", 12), ("2024-01-12T09:00:00Z", 18))
    await metered(api, "rival", "ai", **month)
    await grant(api, "rival", "ai", 5, "2024-01-02T00:00:00Z")
    return ent


async def open_portal(page: Watched, web: Server, fragment: str) -> None:
    await page.page.goto(f"{web.url}/portal#{fragment}")


async def test_portal_shows_the_subjects_figures(page: Watched, web: Server, api: GQL) -> None:
    ent = await seed(api)
    await open_portal(page, web, "token=" + await token_for(api, "acme"))
    p = page.page
    ai = p.locator('[data-feature="ai"]')
    await expect(ai.locator(".balance")).to_have_text("70")
    await expect(ai.locator(".usage")).to_have_text("30")
    await expect(ai.locator(".percent")).to_have_text("30%")
    await expect(ai.locator(".state")).to_have_text("On")
    await expect(ai.locator(".limit")).to_contain_text("Hard limit")
    await expect(ai.locator(".reset")).to_contain_text("resets in 16 days")  # Feb 1, from Jan 15 noon
    # the chart: one bar per window of the history query (the days with usage), with its usage
    windows = (await api.ok(HISTORY, id=ent["id"]))["entitlement"]["history"]["windowedHistory"]
    assert [(w["period"]["from"], w["usage"]) for w in windows] == [
        ("2024-01-10T00:00:00Z", 12.0), ("2024-01-12T00:00:00Z", 18.0)]
    await expect(ai.locator("rect.bar title")).to_have_text(["Jan 10: 12 used", "Jan 12: 18 used"])
    assert await ai.locator("polyline.balance-line").count() == 1
    # boolean and static: on/off, with the config
    await expect(p.locator('[data-feature="sso"] .state')).to_have_text("On")
    plan = p.locator('[data-feature="plan"]')
    await expect(plan.locator(".config dd")).to_have_text(["5", "pro"])
    await expect(plan.locator(".config dt")).to_have_text(["seats", "tier"])
    # only acme's entitlements, nothing loaded from elsewhere, no script error
    assert await p.locator(".card").count() == 3
    await expect(p.locator("#title")).to_have_text("Usage · acme")
    assert page.outside == [] and page.errors == []


async def test_portal_at_phone_width(page: Watched, web: Server, api: GQL) -> None:
    await seed(api)
    await page.page.set_viewport_size({"width": 375, "height": 740})
    await open_portal(page, web, "token=" + await token_for(api, "acme"))
    ai = page.page.locator('[data-feature="ai"]')
    await expect(ai.locator(".balance")).to_have_text("70")
    # nothing wider than the screen: no horizontal scrolling
    width = await page.page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375
    box = await ai.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375


async def test_expired_token(page: Watched, web: Server, api: GQL) -> None:
    await seed(api)
    token = await token_for(api, "acme", ttl=60)
    web.clock.set(START + timedelta(minutes=5))  # the server says expired; the browser's clock does not know
    await open_portal(page, web, "token=" + token)
    notice = page.page.locator("#notice")
    await expect(notice).to_contain_text("This link has expired")
    await expect(page.page.locator(".card")).to_have_count(0)
    await expect(page.page.locator("body")).to_have_attribute("data-state", "expired")


async def test_token_expiring_while_open(page: Watched, web: Server, api: GQL) -> None:
    await seed(api)
    await open_portal(page, web, "token=" + await token_for(api, "acme", ttl=60))
    await expect(page.page.locator('[data-feature="ai"] .balance')).to_have_text("70")
    await page.page.clock.fast_forward(61_000)  # the page's expiry timer fires
    await expect(page.page.locator("#notice")).to_contain_text("This link has expired")
    await expect(page.page.locator("#notice")).to_contain_text("no longer updated")


async def test_another_subjects_token(page: Watched, web: Server, api: GQL) -> None:
    await seed(api)
    await open_portal(page, web, "subject=acme&token=" + await token_for(api, "rival"))
    await expect(page.page.locator("#notice")).to_contain_text("This link is for another account")
    await expect(page.page.locator(".card")).to_have_count(0)


async def test_wrong_and_missing_tokens(page: Watched, web: Server, api: GQL) -> None:
    await seed(api)
    good = await token_for(api, "acme")
    tampered = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
    await open_portal(page, web, "token=" + tampered)
    await expect(page.page.locator("#notice")).to_contain_text("This link is not valid")
    await open_portal(page, web, "token=nonsense")
    await page.page.reload()
    await expect(page.page.locator("#notice")).to_contain_text("This link is not valid")
    await open_portal(page, web, "")
    await page.page.reload()
    await expect(page.page.locator("#notice")).to_contain_text("No access token")
    assert page.outside == []
