"""Live updates over graphql-transport-ws (docs/semantics.md §10), against live servers on both backends:
every cause, subscriptions to every entitlement, credentials (4403, FORBIDDEN), the bounds."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio
from websockets.asyncio.client import connect

from creditgate import metrics
from creditgate.services import live
from creditgate.services.runtime import Runtime
from tests.conftest import GQL, Backend
from tests.ent_helpers import CREATE_ENT, events, feature, grant, meter, metered
from tests.live_helpers import API_KEY, START, SUBSCRIBE, WAIT, LiveServer, api, live_server, socket_to

MONTH = {"anchor": "2024-01-01T00:00:00Z", "measureUsageFrom": "2024-01-01T00:00:00Z"}
NO_VALUE = {"hasAccess": False, "balance": None, "usage": None, "overage": None, "config": None}
TOKEN = "mutation($s: String!, $ttl: Int!) { createSubjectToken(subjectKey: $s, ttlSeconds: $ttl) { token } }"


@pytest.fixture(scope="session")
def live_srv(backend: Backend) -> Iterator[LiveServer]:
    with live_server(backend, ws_ping_interval=0.5) as server:
        yield server


@pytest.fixture
def srv(live_srv: LiveServer, rt: Runtime) -> LiveServer:
    """The live server on an empty database (emptied by `rt` afterwards), clock at START."""
    live_srv.clock.set(START)
    return live_srv


@pytest_asyncio.fixture(loop_scope="session")
async def gq(srv: LiveServer) -> AsyncIterator[GQL]:
    async with api(srv.url) as client:
        yield GQL(client)


async def token_for(gq: GQL, subject: str, ttl: int = 3600) -> str:
    return str((await gq.ok(TOKEN, s=subject, ttl=ttl))["createSubjectToken"]["token"])


async def seed(gq: GQL) -> dict[str, Any]:
    """acme: metered `ai` (a 100 grant, 30 used); features `sso` and `plan` without entitlements."""
    await meter(gq)
    await feature(gq, "ai")
    await feature(gq, "sso", meter_slug=None)
    await feature(gq, "plan", meter_slug=None)
    ent = await metered(gq, "acme", "ai", **MONTH)
    await grant(gq, "acme", "ai", 100, "2024-01-01T00:00:00Z")
    await events(gq, "acme", ("2024-01-10T10:00:00Z", 30))
    return ent


def metered_value(balance: float, usage: float) -> dict[str, Any]:
    return {"hasAccess": balance > 0, "balance": balance, "usage": usage, "overage": 0.0, "config": None}


async def test_every_cause(srv: LiveServer, gq: GQL) -> None:
    ent = await seed(gq)
    async with socket_to(srv.ws_url) as sock:
        op = await sock.subscribe("acme", ["ai", "sso"])
        first = await sock.updates(op, 2)
        assert first["ai"] == {"subjectKey": "acme", "featureKey": "ai", "entitlementId": ent["id"],
                               "asOf": "2024-01-15T12:00:30Z", "cause": "CURRENT", "value": metered_value(70, 30)}
        assert first["sso"] == {"subjectKey": "acme", "featureKey": "sso", "entitlementId": None,
                                "asOf": "2024-01-15T12:00:30Z", "cause": "CURRENT", "value": NO_VALUE}
        seen = [first["ai"]["asOf"]]

        async def next_ai(cause: str) -> dict[str, Any]:
            u = await sock.update(op)
            assert (u["featureKey"], u["cause"]) == ("ai", cause), u
            assert u["asOf"] >= seen[-1]  # asOf order
            seen.append(u["asOf"])
            return u

        await events(gq, "acme", ("2024-01-15T12:00:00Z", 5))
        assert (await next_ai("INGEST"))["value"] == metered_value(65, 35)
        extra = await grant(gq, "acme", "ai", 10, "2024-01-15T12:00:00Z")
        assert (await next_ai("GRANT"))["value"] == metered_value(75, 35)
        await gq.ok("mutation($id: ID!) { voidGrant(id: $id) { id } }", id=extra["id"])
        assert (await next_ai("VOID"))["value"] == metered_value(65, 35)
        await gq.ok("mutation($s: String!, $e: ID!) { resetEntitlement(subjectKey: $s, entitlementId: $e) { id } }",
                    s="acme", e=ent["id"])
        assert (await next_ai("RESET"))["value"]["usage"] == 5  # the usage since the reset (12:00, floored)

        sso = (await gq.ok(CREATE_ENT, s="acme", input={"type": "BOOLEAN", "featureKey": "sso"}))["createEntitlement"]
        u = await sock.update(op)
        assert (u["featureKey"], u["cause"], u["entitlementId"], u["value"]["hasAccess"]) == \
            ("sso", "ENTITLEMENT", sso["id"], True)
        await gq.ok("mutation($s: String!, $e: ID!) { deleteEntitlement(subjectKey: $s, entitlementId: $e) }",
                    s="acme", e=sso["id"])
        u = await sock.update(op)
        assert (u["featureKey"], u["cause"], u["entitlementId"], u["value"]) == ("sso", "ENTITLEMENT", None, NO_VALUE)

        # A grant starting later changes nothing now, then changes the value at its start: TIME. The grant
        # wakes the subscription, whose read must be over before the clock moves (else that read already
        # sees 12:05, cause GRANT): a write after it is reported once that read is done (one read at a time
        # per subscription, §10.2), with the value as it stands without the grant.
        value_q = 'query { entitlementValue(subjectKey: "acme", entitlementIdOrFeatureKey: "ai") ' \
            "{ hasAccess balance usage overage config } }"
        await grant(gq, "acme", "ai", 10, "2024-01-15T12:05:00Z")
        # The read the grant woke must start before the ingest commits, else it already sees the event and
        # reports it under the grant's cause; ingest now commits faster than that read starts, now and then.
        # No signal tells a test that the read is done: give it time.
        await asyncio.sleep(0.3)
        await events(gq, "acme", ("2024-01-15T12:00:00Z", 1))
        before = (await gq.ok(value_q))["entitlementValue"]
        assert (await next_ai("INGEST"))["value"] == before
        srv.clock.set(START + timedelta(minutes=5))
        srv.clock_moved()
        u = await next_ai("TIME")
        after = (await gq.ok(value_q))["entitlementValue"]
        assert (u["asOf"], u["value"]) == ("2024-01-15T12:05:30Z", after)
        assert after["balance"] > before["balance"]

        srv.gap()  # signals may have been lost: every value again, as it stands
        again = await sock.updates(op, 2)
        assert {k: (v["cause"], v["value"]) for k, v in again.items()} == {
            "ai": ("RESYNC", u["value"]), "sso": ("RESYNC", NO_VALUE)}
        assert sock.pending(op) == 0


async def test_every_entitlement_of_the_subject(srv: LiveServer, gq: GQL) -> None:
    ent = await seed(gq)
    plan = (await gq.ok(CREATE_ENT, s="acme", input={"type": "STATIC", "featureKey": "plan",
                                                     "config": {"seats": 5}}))["createEntitlement"]
    async with socket_to(srv.ws_url) as sock:
        op = await sock.subscribe("acme")  # featureKeys null: every entitlement, as they come and go
        first = await sock.updates(op, 2)
        assert {k: (v["cause"], v["entitlementId"]) for k, v in first.items()} == {
            "ai": ("CURRENT", ent["id"]), "plan": ("CURRENT", plan["id"])}
        assert first["plan"]["value"] == {"hasAccess": True, "balance": None, "usage": None, "overage": None,
                                          "config": {"seats": 5}}
        sso = (await gq.ok(CREATE_ENT, s="acme", input={"type": "BOOLEAN", "featureKey": "sso"}))["createEntitlement"]
        u = await sock.update(op)
        assert (u["featureKey"], u["cause"], u["entitlementId"]) == ("sso", "ENTITLEMENT", sso["id"])
        await gq.ok("mutation($s: String!, $e: ID!) { deleteEntitlement(subjectKey: $s, entitlementId: $e) }",
                    s="acme", e=plan["id"])
        u = await sock.update(op)
        assert (u["featureKey"], u["cause"], u["value"]) == ("plan", "ENTITLEMENT", NO_VALUE)
        await events(gq, "acme", ("2024-01-15T12:00:00Z", 5))
        u = await sock.update(op)  # only the value that changed
        assert (u["featureKey"], u["cause"], u["value"]["balance"]) == ("ai", "INGEST", 65)
        # archiving a feature leaves its entitlements working (docs/semantics.md §2): the value does not
        # change, so no update; the next ones are the gap's
        await gq.ok("mutation($id: ID!) { archiveFeature(id: $id) { id } }", id="sso")
        srv.gap()
        again = await sock.updates(op, 2)
        assert {k: v["cause"] for k, v in again.items()} == {"ai": "RESYNC", "sso": "RESYNC"}  # plan: said once
        assert sock.pending(op) == 0


async def test_a_burst_is_coalesced_never_lost(srv: LiveServer, gq: GQL) -> None:
    await seed(gq)
    async with socket_to(srv.ws_url) as sock:
        op = await sock.subscribe("acme", ["ai"])
        await sock.update(op)
        await asyncio.gather(*(events(gq, "acme", ("2024-01-15T12:00:00Z", 1)) for _ in range(20)))
        last = None
        while last is None or last["value"]["usage"] < 50:
            last = await sock.update(op)
            assert last["cause"] == "INGEST"
        assert last["value"] == metered_value(50, 50)  # the newest value always arrives


async def test_subject_tokens_forbidden_and_refused(srv: LiveServer, gq: GQL) -> None:
    await seed(gq)
    token = await token_for(gq, "acme")
    async with socket_to(srv.ws_url, token) as sock:
        rival = await sock.subscribe("rival", ["ai"])
        own = await sock.subscribe("acme", ["ai"])
        assert await sock.error_code(rival) == "FORBIDDEN"  # that subscription only
        assert (await sock.update(own))["value"] == metered_value(70, 30)
        await events(gq, "acme", ("2024-01-15T12:00:00Z", 5))
        assert (await sock.update(own))["cause"] == "INGEST"

    for bad in ("not-a-key", token[:-3] + "AAA", None):  # wrong key, tampered token, no credentials
        async with socket_to(srv.ws_url, bad, ack=False) as sock:
            assert (await sock.closed())[0] == 4403, bad

    short = await token_for(gq, "acme", ttl=1)
    srv.clock.set(START + timedelta(seconds=5))  # already expired at connection_init
    async with socket_to(srv.ws_url, short, ack=False) as sock:
        assert await sock.closed() == (4403, "Forbidden")
    srv.clock.set(START)
    expiring = await token_for(gq, "acme", ttl=1)  # expires mid-connection
    async with socket_to(srv.ws_url, expiring) as sock:
        op = await sock.subscribe("acme", ["ai"])
        assert (await sock.update(op))["cause"] == "CURRENT"
        assert await sock.closed() == (4403, "token expired")


async def test_bounds_and_pings(srv: LiveServer, gq: GQL) -> None:
    await seed(gq)
    async with socket_to(srv.ws_url) as sock:
        many = await sock.subscribe("acme", [f"f{i}" for i in range(26)])
        assert await sock.error_code(many) == "BAD_USER_INPUT"
        dupes = await sock.subscribe("acme", ["ai"] * 30)  # 25 distinct at most: once each
        assert (await sock.update(dupes))["featureKey"] == "ai"
        ops = [dupes] + [await sock.subscribe("acme", ["ai"]) for _ in range(49)]
        for op in ops[1:]:
            assert (await sock.update(op))["cause"] == "CURRENT"
        extra = await sock.subscribe("acme", ["ai"])
        assert await sock.error_code(extra) == "BAD_USER_INPUT"  # the 51st
        await sock.ws.send('{"id": "' + ops[0] + '", "type": "complete"}')
        await asyncio.sleep(0.1)
        again = await sock.subscribe("acme", ["ai"])  # room again
        assert (await sock.update(again))["cause"] == "CURRENT"
        bad = await sock.subscribe("acme", ["ai"], query="subscription { nope }")
        assert await sock.error_code(bad) == "BAD_USER_INPUT"
        await asyncio.wait_for(sock.pinged.wait(), WAIT)  # the server pings idle sockets (every 0.5 s here)


async def test_the_legacy_protocol_is_not_offered(srv: LiveServer) -> None:
    async with connect(srv.ws_url, subprotocols=["graphql-ws"], open_timeout=WAIT) as ws:  # type: ignore[list-item]
        await asyncio.wait_for(ws.wait_closed(), WAIT)
        assert ws.close_code == 4406


async def test_a_client_that_does_not_read_is_disconnected(backend: Backend, rt: Runtime) -> None:
    slow = metrics.ws_closed.labels("slow")
    dropped = slow._value.get()
    with live_server(backend, ws_send_timeout=0.5) as server:
        async with api(server.url) as client:
            gq = GQL(client)
            keys = [f"k{i}" for i in range(25)]
            big = {"blob": "x" * 8000}  # each value about 8 kB
            for k in keys:
                await feature(gq, k, meter_slug=None)
                await gq.ok(CREATE_ENT, s="acme", input={"type": "STATIC", "featureKey": k, "config": big})
            # A client that never reads, with a small receive buffer: the first values of 50 x 25 subscriptions
            # (about 10 MB) are more than the socket's buffers hold (at most 4 MB by default on Linux), whatever
            # the pace of a loaded server.
            raw = socket.socket()
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            raw.connect(("127.0.0.1", int(server.url.rsplit(":", 1)[1])))
            raw.sendall(b"GET /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                        b"Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                head += raw.recv(1)  # the handshake answer only; nothing after it is ever read
            assert head.startswith(b"HTTP/1.1 101"), head
            raw.sendall(_frame({"type": "connection_init", "payload": {"Authorization": f"Bearer {API_KEY}"}}))
            for i in range(50):
                raw.sendall(_frame({"id": str(i), "type": "subscribe",
                                    "payload": {"query": SUBSCRIBE, "variables": {"s": "acme", "f": keys}}}))
            try:
                hub = live.hub(server.runtime)
                deadline = time.monotonic() + DISCONNECT_WAIT  # a bound, not a timing assertion
                while not (slow._value.get() > dropped and len(hub) == 0):
                    assert time.monotonic() < deadline, "a client that does not read is still connected"
                    await asyncio.sleep(0.1)
                assert slow._value.get() == dropped + 1  # disconnected for not reading
                assert len(hub) == 0  # and its subscriptions ended
            finally:
                raw.close()


DISCONNECT_WAIT = 120.0


def _frame(message: dict[str, Any]) -> bytes:
    """A masked client text frame."""
    data = json.dumps(message).encode()
    mask = os.urandom(4)
    n = len(data)
    size = bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big")
    return b"\x81" + size + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


async def test_an_invalidated_token_is_refused_at_the_next_read(srv: LiveServer, gq: GQL) -> None:
    await seed(gq)
    token = await token_for(gq, "acme")
    async with socket_to(srv.ws_url, token) as sock:
        op = await sock.subscribe("acme", ["ai"])
        assert (await sock.update(op))["cause"] == "CURRENT"
        resp = await gq.http.post("/api/v1/portal/tokens/invalidate", json={"subject": "acme"})
        assert resp.status_code == 204, resp.text
        await events(gq, "acme", ("2024-01-15T12:00:00Z", 5))  # the subscription reads again: refused
        assert await sock.closed() == (4403, "token invalidated")
        assert sock.pending(op) == 0  # the new value was not sent
