"""kill -9 of `creditgate serve` during a stream of 1000-event ingest batches (docs/semantics.md §1.2,
§1.3, §1.9): every batch is stored whole or not at all, the minute aggregates match the stored events
exactly, and sending every batch again after a restart stores each event once."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from creditgate.services.runtime import Runtime
from tests.conftest import Backend
from tests.test_serve import KEY, start

BATCH = 1000
AUTH = {"authorization": f"Bearer {KEY}"}


def events(batch: int) -> list[dict[str, Any]]:
    return [{"id": f"{batch}-{j}", "source": "kill9", "type": "prompt", "subject": f"s{j % 7}",
             "time": f"2024-01-15T12:{batch % 60:02d}:{j % 60:02d}Z", "data": {"tokens": j % 5 + 0.5}}
            for j in range(BATCH)]


def _kill_tree(pid: int) -> None:
    """SIGKILL the server and its worker processes (children first, so none is left serving)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(c) for c in (task / "children").read_text().split()]
    for child in children:
        os.kill(child, signal.SIGKILL)
    os.kill(pid, signal.SIGKILL)


def stream_and_kill(backend: Backend, tmp_path: Path) -> tuple[list[int], list[int]]:
    """Streams batches; kill -9 while one is in flight after three were acknowledged."""
    (tmp_path / "first").mkdir()
    proc, url, _ = start(backend, tmp_path / "first")
    acked: list[int] = []
    sent: list[int] = []
    try:
        with httpx.Client(base_url=url, headers=AUTH, timeout=15) as client:
            created = client.post("/api/v1/meters", json={"slug": "kill_tokens", "eventType": "prompt",
                                                         "aggregation": "SUM", "valueProperty": "$.tokens"})
            assert created.status_code in (200, 201), created.text
        in_flight = threading.Event()

        def stream() -> None:
            with httpx.Client(base_url=url, headers=AUTH, timeout=15) as client:
                for i in range(200):
                    sent.append(i)
                    if len(acked) >= 3:
                        in_flight.set()
                    try:
                        resp = client.post("/api/v1/events", json=events(i))
                    except httpx.HTTPError:
                        return
                    if resp.status_code != 204:
                        return
                    acked.append(i)

        worker = threading.Thread(target=stream)
        worker.start()
        in_flight.wait(120)
        time.sleep(0.005)  # the request is on its way or being stored
        _kill_tree(proc.pid)
        proc.wait(30)
        worker.join(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return acked, sent


def resend(backend: Backend, tmp_path: Path, batches: list[int]) -> None:
    (tmp_path / "second").mkdir()
    proc, url, _ = start(backend, tmp_path / "second")
    try:
        with httpx.Client(base_url=url, headers=AUTH, timeout=30) as client:
            for i in batches:
                assert client.post("/api/v1/events", json=events(i)).status_code == 204
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


async def stored(rt: Runtime) -> tuple[Counter[int], int, float]:
    """Events per batch, and the meter's minute count and sum over all minutes."""
    async with rt.db.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT event_id FROM events WHERE source = 'kill9'"))).all()
        count, total = (await conn.execute(text(
            "SELECT coalesce(sum(m.count), 0), coalesce(sum(CAST(m.sum AS float)), 0) FROM meter_minutes m "
            "JOIN meters ON meters.id = m.meter_id WHERE meters.slug = 'kill_tokens'"))).one()
    return Counter(int(r[0].split("-")[0]) for r in rows), int(count), float(total)


PER_BATCH_SUM = sum(j % 5 + 0.5 for j in range(BATCH))


async def test_kill_9_mid_batch_loses_and_doubles_nothing(rt: Runtime, backend: Backend, tmp_path: Path) -> None:
    acked, sent = await asyncio.to_thread(stream_and_kill, backend, tmp_path)
    assert len(acked) >= 3 and len(sent) > len(acked)
    per_batch, count, total = await stored(rt)
    assert all(per_batch[i] == BATCH for i in acked), (acked, per_batch)  # acknowledged: whole
    assert all(n == BATCH for n in per_batch.values()), per_batch  # never part of a batch
    assert count == sum(per_batch.values()) and total == PER_BATCH_SUM * len(per_batch)  # aggregates with them

    await asyncio.to_thread(resend, backend, tmp_path, sent)  # the producer retries everything
    per_batch, count, total = await stored(rt)
    assert per_batch == Counter({i: BATCH for i in sent})  # each event once
    assert count == BATCH * len(sent) and total == PER_BATCH_SUM * len(sent)
