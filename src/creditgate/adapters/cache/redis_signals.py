"""The change signal between processes (services/changes.py: a SignalBus) over Redis pub/sub.

One channel per installation, `{ns}changes` in the value cache's namespace (redis_cache.namespace), so two
databases sharing a Redis never see each other's signals. Pub/sub is best effort; what may have been lost
becomes a gap:
- the listener's connection drops (Redis restarted, network): it reconnects every `retry` seconds, and once
  subscribed again reports a gap (subscriptions then re-send their values, cause RESYNC);
- a publish fails: once a publish works again (the next one, or the listener's reconnect) a gap message
  goes out first, so every process resyncs.
The listener checks its connection every `health` seconds (a PING), so a silent loss is found too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from creditgate.adapters.cache.redis_cache import namespace

GAP = b""  # the message that makes every process resync (services/changes.py)

log = logging.getLogger("creditgate.changes")


class RedisSignals:
    def __init__(self, url: str, prefix: str, *, installation: str, retry: float = 0.5, health: float = 5.0,
                 timeout: float = 1.0) -> None:
        self.url = url
        self.channel = namespace(prefix, installation) + "changes"
        self.retry = retry
        self.health = health
        self.timeout = timeout
        self._pub = self._client()
        self._owed = False  # a publish failed: a gap message is due
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()  # the listener is subscribed (tests wait for it)

    def _client(self) -> Redis:
        return Redis.from_url(self.url, socket_connect_timeout=self.timeout, socket_timeout=self.timeout,
                              retry=Retry(NoBackoff(), 0), socket_keepalive=True)

    def start(self, deliver: Callable[[bytes], Awaitable[None]], gap: Callable[[], Awaitable[None]]) -> None:
        self._task = asyncio.create_task(self._listen(deliver, gap))

    async def publish(self, message: bytes) -> None:
        try:
            if self._owed and message != GAP:
                await self._pub.publish(self.channel, GAP)
            self._owed = False
            await self._pub.publish(self.channel, message)
        except (RedisError, OSError) as exc:
            if not self._owed:
                log.warning("change signal not published (%s): every process resyncs once Redis answers", exc)
            self._owed = True

    async def _listen(self, deliver: Callable[[bytes], Awaitable[None]], gap: Callable[[], Awaitable[None]]) -> None:
        lost = False
        while True:
            client = self._client()
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                if lost:
                    log.info("change signals: listening again on %s", self.channel)
                    lost = False
                    await gap()
                if self._owed:
                    await self.publish(GAP)  # a gap message, then nothing more is owed
                self.connected.set()
                await self._read(pubsub, deliver)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self.connected.clear()
                if not lost:
                    log.warning("change signals: lost the Redis connection (%s); retrying", exc)
                lost = True
                await asyncio.sleep(self.retry)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                with contextlib.suppress(Exception):
                    await client.aclose()

    async def _read(self, pubsub: object, deliver: Callable[[bytes], Awaitable[None]]) -> None:
        from redis.asyncio.client import PubSub

        assert isinstance(pubsub, PubSub)
        idle = 0.0
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is None:
                idle += 1.0
                if idle >= self.health:  # a PING: a silent loss raises here (socket timeout)
                    idle = 0.0
                    await pubsub.ping()
                continue
            idle = 0.0
            if message.get("type") == "message":
                data = message["data"]
                await deliver(data if isinstance(data, bytes) else str(data).encode())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        with contextlib.suppress(Exception):
            await self._pub.aclose()
