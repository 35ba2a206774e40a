"""`creditgate serve --workers 2` as operators run it (docs/operations.md): metrics summed over the workers,
JSON logs, and SIGTERM during a stream of ingest calls: every acknowledged batch stored whole, none partly."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from creditgate.services.runtime import Runtime
from tests.conftest import Backend

KEY = "serve-key"
BATCH = 300
PROBES = 12


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start(backend: Backend, tmp_path: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_999999.db").write_bytes(b"not a metrics file: serve must empty the directory")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CREDITGATE_DATABASE_URL": backend.database_url,
           "CREDITGATE_REDIS_PREFIX": backend.redis_prefix, "CREDITGATE_API_KEYS": KEY,
           "CREDITGATE_TOKEN_SECRET": "serve-secret", "CREDITGATE_LOG_FORMAT": "json",
           "CREDITGATE_SHUTDOWN_TIMEOUT": "30", "CREDITGATE_MAX_BODY_BYTES": "1000000",
           "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    if backend.redis_url:
        env["CREDITGATE_REDIS_URL"] = backend.redis_url
    port = _free_port()
    log = tmp_path / "stderr.log"
    with log.open("wb") as sink:  # the child keeps its own descriptor
        proc = subprocess.Popen([sys.executable, "-m", "creditgate.cli", "serve", "--port", str(port),
                                 "--workers", "2"], env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=sink)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return proc, url, log
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, log.read_text()
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("server did not start: " + log.read_text())


def events(batch: int) -> list[dict[str, Any]]:
    return [{"specversion": "1.0", "id": f"{batch}-{j}", "source": "sigterm", "type": "prompt", "subject": "s",
             "time": "2024-01-15T12:00:00Z", "data": {"tokens": 1}} for j in range(BATCH)]


def drive(backend: Backend, tmp_path: Path) -> tuple[list[int], list[int], Path]:
    """Serves, scrapes, streams ingest calls and sends SIGTERM: (acknowledged batches, sent batches, log)."""
    proc, url, log = start(backend, tmp_path)
    try:
        auth = {"authorization": f"Bearer {KEY}"}
        for _ in range(PROBES):  # a new connection each: the workers share them out
            with httpx.Client(base_url=url, headers=auth) as client:
                resp = client.post("/graphql", json={"query": "query Probe { features { id } }"})
                assert resp.status_code == 200 and resp.json() == {"data": {"features": []}}
        assert httpx.get(url + "/metrics").status_code == 401
        scraped = httpx.get(url + "/metrics", headers=auth)
        assert scraped.status_code == 200
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for f in text_string_to_metric_families(scraped.text) for s in f.samples}
        assert samples[("creditgate_request_duration_seconds_count",
                        (("api", "graphql"), ("operation", "Probe")))] == PROBES  # summed over both workers
        assert ("creditgate_db_pool_in_use", ()) in samples
        host, port = url.removeprefix("http://").split(":")
        for framing in (b"content-length: 104857600", b"transfer-encoding: chunked"):
            with socket.create_connection((host, int(port)), timeout=20) as conn:
                conn.sendall(b"POST /graphql HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                             b"authorization: Bearer " + KEY.encode() + b"\r\n" + framing + b"\r\n\r\n")
                if b"chunked" in framing:  # the limit in chunks, then one byte more; the body never ends
                    for size in [100_000] * 10 + [1]:
                        conn.sendall(b"%x\r\n%s\r\n" % (size, b" " * size))
                answer = b""  # 100 MB announced, none sent: answered at once, then the connection closes
                while part := conn.recv(65536):
                    answer += part
                assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
                assert b"PAYLOAD_TOO_LARGE" in answer and b"connection: close" in answer.lower()

        # A stream of ingest calls; SIGTERM once three are acknowledged.
        acked: list[int] = []
        sent: list[int] = []
        failures: list[str] = []
        terminated = threading.Event()

        def stream() -> None:
            with httpx.Client(base_url=url, headers=auth, timeout=15) as client:
                for i in range(400):
                    if terminated.is_set() and i > acked[-1] + 5:
                        return
                    sent.append(i)
                    try:
                        resp = client.post("/api/v1/events", json=events(i))
                    except httpx.HTTPError as exc:
                        failures.append(type(exc).__name__)
                        return
                    if resp.status_code != 204:
                        failures.append(f"{resp.status_code} {resp.text[:200]}")
                        return
                    acked.append(i)

        worker = threading.Thread(target=stream)
        worker.start()
        while len(acked) < 3 and worker.is_alive():
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        terminated.set()
        worker.join(60)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert len(acked) >= 3, failures
    return acked, sent, log


async def test_serve_workers_metrics_logs_and_sigterm(rt: Runtime, backend: Backend, tmp_path: Path) -> None:
    acked, sent, log = await asyncio.to_thread(drive, backend, tmp_path)
    async with rt.db.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT event_id FROM events WHERE source = 'sigterm'"))).all()
    stored = Counter(int(r[0].split("-")[0]) for r in rows)
    assert all(stored[i] == BATCH for i in acked), (acked, stored)  # acknowledged: whole
    assert all(n == BATCH for n in stored.values()), stored  # never part of a batch
    assert set(stored) <= set(sent)

    lines = [orjson.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    access = [entry for entry in lines if entry["logger"] == "creditgate.access"]
    assert sum(1 for a in access if a["operation"] == "Probe" and a["status"] == 200) == PROBES
    ingests = [a for a in access if a["path"] == "/api/v1/events" and a["status"] == 204]
    assert len(ingests) == len(acked) and all(len(a["request_id"]) == 16 for a in ingests)
    assert any(entry["logger"].startswith("uvicorn") for entry in lines)  # uvicorn's own lines: JSON too
    assert not any(entry["logger"] == "uvicorn.access" for entry in lines)  # its access log is off
    assert not (tmp_path / "metrics" / "counter_999999.db").exists()
