"""What the HTTP benchmarks share: wrk runs (blocking or from an event loop), the one-worker uvicorn
command line, free ports, waiting for and stopping a server. Used by bench_access.py, bench_live.py, bench_memory.py.

wrk posts one body over and over; its Lua `done` hook prints one RESULT line (requests, seconds, p50,
p95, p99 in ms, errors), which `parse` reads.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from typing import IO

import httpx

LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = %s
done = function(summary, latency, requests)
  io.write(string.format("RESULT %%d %%f %%f %%f %%f %%d\\n", summary.requests, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.timeout))
end
"""

# One uvicorn worker as the benchmarks run it: uvloop, httptools, uvicorn's own access log off.
UVICORN = [sys.executable, "-m", "uvicorn", "--workers", "1", "--host", "127.0.0.1", "--log-level", "warning",
           "--no-access-log", "--loop", "uvloop", "--http", "httptools"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str) -> None:
    for _ in range(400):
        try:
            httpx.get(url, timeout=0.5)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not start")


def memory(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of `pid` in MB."""
    fields: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(rest.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def stop_server(proc: subprocess.Popen[bytes] | None, log: IO[bytes], show_log: bool) -> None:
    """Stops a benchmark's server (SIGTERM, then SIGKILL after 30 s); prints the end of its log (`log`, its
    stderr) when `show_log`, i.e. when the run failed."""
    if proc is not None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    if show_log:
        log.seek(0)
        sys.stderr.write(log.read()[-5000:].decode(errors="replace"))


def script(body: bytes) -> str:
    """A Lua file posting `body`; the caller removes it."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(LUA % ("[==[" + body.decode() + "]==]"))
        return f.name


def command(url: str, path: str, seconds: int, conns: int) -> list[str]:
    return ["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "-s", path, url]


def parse(out: str) -> dict[str, float]:
    line = next(x for x in out.splitlines() if x.startswith("RESULT"))
    n, dur, p50, p95, p99, errors = line.split()[1:]
    return {"rps": int(n) / float(dur), "p50": float(p50), "p95": float(p95), "p99": float(p99),
            "errors": int(errors)}


def wrk(url: str, body: bytes, seconds: int, conns: int = 32) -> dict[str, float]:
    path = script(body)
    try:
        return parse(subprocess.run(command(url, path, seconds, conns), capture_output=True, text=True,
                                    check=True).stdout)
    finally:
        os.unlink(path)


async def wrk_async(url: str, body: bytes, seconds: int, conns: int = 32) -> dict[str, float]:
    """wrk in a subprocess, without blocking the running event loop (bench_live keeps sockets on it)."""
    path = script(body)
    try:
        proc = await asyncio.create_subprocess_exec(*command(url, path, seconds, conns),
                                                    stdout=asyncio.subprocess.PIPE)
        return parse((await proc.communicate())[0].decode())
    finally:
        os.unlink(path)
