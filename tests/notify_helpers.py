"""A real webhook receiver for the notification tests: an HTTP server on a local port, in a thread, that records
every request and answers with the statuses it is told; signatures are checked with the `standardwebhooks`
package (a receiver's library), not with our code."""

from __future__ import annotations

import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from standardwebhooks.webhooks import Webhook


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]  # lower-case names
    body: bytes
    at: float  # time.monotonic() on arrival

    @property
    def json(self) -> dict[str, Any]:
        out: dict[str, Any] = orjson.loads(self.body)
        return out

    def verify(self, secret: str) -> dict[str, Any]:
        """The payload, once `standardwebhooks` accepts the signature (raises otherwise)."""
        out: dict[str, Any] = Webhook(secret).verify(self.body, self.headers)
        return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Receiver:
    """Answers each POST with the next queued status (200 when none is queued); `stop`/`start` make the port
    refuse connections and accept them again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.received: list[Received] = []
        self.statuses: deque[int] = deque()
        self.answer: Callable[[Received, int], int] | None = None  # (request, earlier ones with its id) -> status
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                got = Received({k.lower(): v for k, v in self.headers.items()}, body, time.monotonic())
                with receiver.lock:
                    seen = sum(1 for r in receiver.received if r.headers.get("webhook-id") == got.headers.get(
                        "webhook-id"))
                    receiver.received.append(got)
                    status = receiver.statuses.popleft() if receiver.statuses else 200
                    if receiver.answer is not None:
                        status = receiver.answer(got, seen)
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        # a listen backlog for bursts (two processes x 16 deliveries in flight): with socketserver's default
        # of 5, connections of a burst were reset before the handler saw them (httpx ReadError)
        ThreadingHTTPServer.request_queue_size = 128
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def wait_for(self, n: int, timeout: float = 20.0) -> list[Received]:
        """Blocks (in a thread-safe way) until at least n requests arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= n:
                    return list(self.received)
            time.sleep(0.02)
        raise AssertionError(f"expected {n} webhook requests, got {len(self.received)}")

    def by_id(self) -> dict[str, list[Received]]:
        out: dict[str, list[Received]] = {}
        with self.lock:
            for r in self.received:
                out.setdefault(r.headers["webhook-id"], []).append(r)
        return out
