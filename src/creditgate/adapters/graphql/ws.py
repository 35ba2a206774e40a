"""graphql-transport-ws on /graphql (docs/semantics.md §10), on top of Strawberry's handler:

- credentials in the connection_init payload (`{"Authorization": "Bearer ..."}`): missing or bad ones close
  the socket with 4403 (GraphQLApp.on_ws_connect), and a subject token's socket is closed with 4403 when
  the token expires (or is found invalidated by a subscription's read);
- at most MAX_SUBSCRIPTIONS operations per connection: the next one gets an `error` with BAD_USER_INPUT;
- errors carry `extensions.code` as over HTTP (errors.format_error);
- a client that takes longer than `send_timeout` to take a message is disconnected (its updates are never
  queued: a subscription computes its next values only once the previous ones are sent, coalescing the
  changes meanwhile);
- the server pings every `ping_interval` seconds, so proxies keep idle sockets open (uvicorn also sends
  WebSocket-level pings).
The legacy `graphql-ws` protocol (subscriptions-transport-ws) is not offered: its handshake is refused with
4406 (the client library it belongs to is unmaintained; the portal and graphiql use graphql-transport-ws).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson
from graphql import GraphQLError
from starlette.websockets import WebSocketDisconnect
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler, Operation
from strawberry.subscriptions.protocols.graphql_transport_ws.types import Message, SubscribeMessage
from strawberry.types.execution import PreExecutionError

from creditgate import metrics
from creditgate.adapters.graphql.context import Context
from creditgate.adapters.graphql.errors import format_error
from creditgate.services.live import MAX_SUBSCRIPTIONS

REFUSED = 4403  # graphql-transport-ws: Forbidden (bad credentials, expired token)


class _Formatted:
    """An error already in its wire shape (what Strawberry reads: `.formatted`)."""

    def __init__(self, formatted: dict[str, Any]) -> None:
        self.formatted = formatted


def _formatted(errors: list[GraphQLError]) -> list[Any]:
    return [_Formatted(format_error(e)) for e in errors]


class TextFrames(ASGIWebSocketAdapter):
    """Messages as text frames, as the protocol wants (the view's encode_json gives bytes, for HTTP)."""

    async def send_json(self, message: Mapping[str, object]) -> None:
        try:
            await self.ws.send_text(orjson.dumps(message).decode())
        except WebSocketDisconnect as exc:
            raise WebSocketDisconnected from exc


class LiveHandler(BaseGraphQLTransportWSHandler[Context, None]):
    ping_interval = 15.0
    send_timeout = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.closing = False
        self._main: asyncio.Task[Any] | None = None
        self._timers: list[asyncio.TimerHandle | asyncio.Task[Any]] = []

    async def handle(self) -> None:
        self._main = asyncio.current_task()
        self.context.connection = self
        metrics.ws_connections.inc()
        pinger = asyncio.create_task(self._ping())
        try:
            await super().handle()
        except asyncio.CancelledError:
            if not self.closing:  # dropped for not reading (slow): the socket goes with the app's return
                raise
        finally:
            metrics.ws_connections.dec()
            pinger.cancel()
            for t in self._timers:
                t.cancel()

    async def _ping(self) -> None:
        while True:
            await asyncio.sleep(self.ping_interval)
            if self.connection_acknowledged:
                await self.send_message({"type": "ping"})

    def expire_at(self, when: datetime) -> None:
        """Close with 4403 once a subject token expires."""
        delay = max(0.0, (when - self.context.rt.now()).total_seconds())
        loop = asyncio.get_running_loop()
        self._timers.append(loop.call_later(
            delay, lambda: self._timers.append(asyncio.create_task(self.refuse("token expired")))))

    async def refuse(self, reason: str) -> None:
        """Close the socket with 4403 (credentials no longer good)."""
        if self.closing:
            return
        self.closing = True
        metrics.count_ws_closed("expired")
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.send_timeout):
                await self.websocket.close(code=REFUSED, reason=reason)

    async def send_message(self, message: Message) -> None:
        # Once the socket is closing, the task sending (an operation, the pinger) ends here: raising also
        # keeps a cancellation that races with the timeout from being lost.
        if self.closing:
            raise asyncio.CancelledError
        try:
            async with asyncio.timeout(self.send_timeout):
                await self.websocket.send_json(message)
        except TimeoutError:
            self._drop_slow()
            raise asyncio.CancelledError from None

    def _drop_slow(self) -> None:
        if self.closing:
            return
        self.closing = True
        metrics.count_ws_closed("slow")
        if self._main is not None:
            self._main.cancel()  # ends the app's handling: the server drops the connection

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        if self.connection_acknowledged and message["id"] not in self.operations \
                and len(self.operations) >= MAX_SUBSCRIPTIONS:
            error = GraphQLError(f"at most {MAX_SUBSCRIPTIONS} subscriptions per connection",
                                 extensions={"code": "BAD_USER_INPUT"})
            await self.send_message({"id": message["id"], "type": "error", "payload": [error.formatted]})
            return
        await super().handle_subscribe(message)

    async def _handle_pre_execution_error(self, operation: Operation[Context, None],
                                          result: PreExecutionError) -> None:
        errors = result.errors or []
        if errors and self._get_pre_execution_close_reason(errors[0]):  # a syntax error: Strawberry closes
            await super()._handle_pre_execution_error(operation, result)
            return
        await operation.send_initial_errors(_formatted(errors))

    async def _send_result_stream(self, operation: Operation[Context, None], result_source: Any) -> None:
        async def formatted() -> Any:
            async for result in result_source:
                if getattr(result, "errors", None) and not isinstance(result, PreExecutionError):
                    result.errors = _formatted(result.errors)
                yield result
        await super()._send_result_stream(operation, formatted())
