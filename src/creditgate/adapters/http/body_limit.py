"""Request bodies over `max_body_bytes` are refused with 413 without reading the rest.

A Content-Length over the limit is refused before any byte of the body is read. A body without one
(chunked) is counted as the app reads it; the read that passes the limit stops the app (TooLarge,
which no `except Exception` of the APIs catches) and the edge answers 413. A body with an acceptable
Content-Length passes untouched: the server never delivers more bytes than it announced.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from creditgate.adapters.http.answers import refuse

CODE = "PAYLOAD_TOO_LARGE"


class TooLarge(BaseException):  # a control-flow signal that no `except Exception` of the APIs catches
    """The body passed the limit while the app was reading it."""


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.message = f"the request body is larger than {max_bytes} bytes (CREDITGATE_MAX_BODY_BYTES)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    break  # the server refuses such a request itself; count the body anyway
                if length > self.max_bytes:
                    await refuse(scope, send, 413, self.message, CODE)
                else:
                    await self.app(scope, receive, send)
                return
        await self._counted(scope, receive, send)

    async def _counted(self, scope: Scope, receive: Receive, send: Send) -> None:
        seen = 0
        started = False

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise TooLarge
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited, watched)
        except TooLarge:
            if started:  # an app that answered before reading its body: nothing more to say
                return
            await refuse(scope, send, 413, self.message, CODE)
