"""Notifications across `creditgate serve` processes (docs/semantics.md §11.4, §11.5): two processes on one
PostgreSQL make each delivery attempt once; an ingest acknowledged right before a `kill -9` still leads to its
event, created and delivered after a restart."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from creditgate.records import DeliveryState
from creditgate.services import notifications as svc
from creditgate.services.runtime import Runtime
from tests.conftest import GQL, Backend
from tests.ent_helpers import events, feature, grant, meter, metered
from tests.live_helpers import API_KEY, api
from tests.notify_helpers import Received, Receiver, free_port

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.start()
    try:
        yield r
    finally:
        r.stop()


def serve(backend: Backend, tmp_path: Path, name: str, **env: str) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CREDITGATE_DATABASE_URL": backend.database_url,
            "CREDITGATE_REDIS_PREFIX": backend.redis_prefix, "CREDITGATE_API_KEYS": API_KEY,
            "CREDITGATE_TOKEN_SECRET": "serve-secret", "CREDITGATE_ACCESS_LOG": "false",
            "CREDITGATE_NOTIFICATIONS_POLL_INTERVAL": "0.2", **env}
    if backend.redis_url:
        full["CREDITGATE_REDIS_URL"] = backend.redis_url
    port = free_port()
    log = tmp_path / f"{name}.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "creditgate.cli", "serve", "--port", str(port)],
                                env=full, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=sink)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, log.read_text()
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"{name} did not start: " + log.read_text())


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()


def now_text() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


async def test_two_processes_make_each_attempt_once(backend: Backend, rt: Runtime, tmp_path: Path,
                                                    receiver: Receiver) -> None:
    if backend.name != "postgres":
        pytest.skip("several processes share PostgreSQL (SQLite runs one process)")

    def first_fails(got: Received, seen: int) -> int:
        return 503 if seen == 0 else 200  # every event: one failed attempt, then a retry

    receiver.answer = first_fails
    procs: list[subprocess.Popen[bytes]] = []
    try:
        a, a_url = serve(backend, tmp_path, "a", CREDITGATE_NOTIFICATIONS_RETRY_DELAYS="300ms")
        procs.append(a)
        b, b_url = serve(backend, tmp_path, "b", CREDITGATE_NOTIFICATIONS_RETRY_DELAYS="300ms")
        procs.append(b)
        subjects = [f"cust-{i}" for i in range(30)]
        async with api(a_url) as ca, api(b_url) as cb:
            ga, gb = GQL(ca), GQL(cb)
            await meter(ga)
            await feature(ga, "ai")
            for s in subjects:
                await metered(ga, s, "ai")
                await grant(ga, s, "ai", 100, now_text())
            ch = await svc.create_channel(rt, "hook", receiver.url)
            await svc.create_rule(rt, "limits", [svc.ThresholdInput(50, "NUMBER"), svc.ThresholdInput(90, "PERCENT")],
                                  [ch.id])
            for i, s in enumerate(subjects):  # writes on both processes
                await events(ga if i % 2 else gb, s, (now_text(), 60))
            # Each crossing evaluated before the next write: crossings that one evaluation finds together
            # make one event, for the highest threshold (docs/semantics.md §11.4).
            receiver.wait_for(2 * len(subjects), timeout=60)
            for i, s in enumerate(subjects):
                await events(gb if i % 2 else ga, s, (now_text(), 35))
            receiver.wait_for(4 * len(subjects), timeout=60)
            await asyncio.sleep(1.0)  # anything sent twice would arrive meanwhile
        found = (await svc.list_events(rt, limit=1000)).items
        assert len(found) == 2 * len(subjects)
        by_id = receiver.by_id()
        assert sorted(by_id) == sorted(e.id for e in found)
        for e in found:
            assert len(by_id[e.id]) == 2, e.id  # two attempts, each made once
            [d] = e.deliveries
            assert (d.state, d.attempts) == (DeliveryState.SUCCESS, 2)
            for r in by_id[e.id]:
                assert r.verify(ch.signing_secret) == e.payload
    finally:
        stop(procs)


async def test_kill_after_an_acknowledged_crossing_still_delivers(backend: Backend, rt: Runtime, tmp_path: Path,
                                                                  receiver: Receiver) -> None:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        # the first process evaluates nothing (its worker is off), so the event can only come from what the
        # ingest transaction recorded
        first, url = serve(backend, tmp_path, "first", CREDITGATE_NOTIFICATIONS_WORKER="false")
        procs.append(first)
        async with api(url) as client:
            gq = GQL(client)
            await meter(gq)
            await feature(gq, "ai")
            await metered(gq, "acme", "ai")
            await grant(gq, "acme", "ai", 100, now_text())
            ch = await svc.create_channel(rt, "hook", receiver.url)
            await svc.create_rule(rt, "limits", [svc.ThresholdInput(80, "PERCENT")], [ch.id])
            assert (await events(gq, "acme", (now_text(), 85)))["accepted"] == 1  # acknowledged
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        assert (await svc.list_events(rt)).items == []

        def slow_first(got: Received, seen: int) -> int:
            if seen == 0:
                time.sleep(3)  # the process delivering this is killed meanwhile
            return 200

        receiver.answer = slow_first
        second, _ = serve(backend, tmp_path, "second", CREDITGATE_NOTIFICATIONS_TIMEOUT="2")
        procs.append(second)
        [got] = receiver.wait_for(1, timeout=30)
        [ev] = (await svc.list_events(rt)).items
        assert got.verify(ch.signing_secret) == ev.payload
        assert ev.value.usage == 85 and ev.threshold.value == 80
        second.send_signal(signal.SIGKILL)  # mid-attempt: its outcome is never recorded
        second.wait(10)
        third, _ = serve(backend, tmp_path, "third", CREDITGATE_NOTIFICATIONS_TIMEOUT="2")
        procs.append(third)
        again = receiver.wait_for(2, timeout=30)[1]  # once the dead worker's lease ended
        assert again.headers["webhook-id"] == ev.id and again.verify(ch.signing_secret) == ev.payload
        for _ in range(100):
            stored = await svc.get_event(rt, ev.id)
            assert stored is not None
            if stored.deliveries[0].state is DeliveryState.SUCCESS:
                break
            await asyncio.sleep(0.1)
        assert (stored.deliveries[0].state, stored.deliveries[0].attempts) == (DeliveryState.SUCCESS, 2)
    finally:
        stop(procs)
