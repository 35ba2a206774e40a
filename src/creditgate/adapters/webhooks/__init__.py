"""Webhook delivery over HTTP (docs/semantics.md §11.5): one httpx client per process, implementing the
`Sender` protocol of services/webhooks.py. It only transports: signing, retries and states are the service's."""

from __future__ import annotations

import asyncio

import httpx

from creditgate.services.webhooks import Attempt


class HttpSender:
    """POSTs with one pooled client; never raises for a receiver's failure (the outcome says what happened)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout  # seconds for the whole attempt (connect, send, answer)
        self._client = httpx.AsyncClient(follow_redirects=False, limits=httpx.Limits(max_connections=100))

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> Attempt:
        try:
            async with asyncio.timeout(self.timeout):
                resp = await self._client.post(url, content=body, headers=headers, timeout=self.timeout)
        except (httpx.TimeoutException, TimeoutError):
            return Attempt(None, f"timeout after {self.timeout:g} s")
        except httpx.HTTPError as exc:
            return Attempt(None, f"{type(exc).__name__}: {exc}"[:500] or type(exc).__name__)
        return Attempt(resp.status_code, None)

    async def close(self) -> None:
        await self._client.aclose()
