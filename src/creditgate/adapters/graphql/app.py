"""The /graphql endpoint: authenticates, answers the hot reads (fastpath.py), else hands over to Strawberry;
WebSockets on the same path speak graphql-transport-ws (subscriptions: ws.py, docs/semantics.md §10).

GraphQL over HTTP (docs/frontends.md): a client whose Accept prefers `application/graphql-response+json`
gets that media type, and request errors (parse, validation, variables) as 400 without a `data` entry;
`application/json` answers stay as they were (200, `"data": null`). Every request the endpoint refuses
(bad JSON, batching, unsupported content type, mutation over GET...) gets a GraphQL-shaped JSON error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

import orjson
from cross_web import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types import ExecutionResult
from strawberry.types.unset import UNSET, UnsetType

from creditgate import metrics
from creditgate.adapters.graphql import fastpath
from creditgate.adapters.graphql.context import Context
from creditgate.adapters.graphql.errors import format_error
from creditgate.adapters.graphql.labels import operation_label
from creditgate.adapters.graphql.schema import schema
from creditgate.adapters.graphql.ws import LiveHandler, TextFrames
from creditgate.domain.errors import DomainError
from creditgate.services.auth import Principal, authenticate
from creditgate.services.runtime import Runtime
from creditgate.services.tokens import check_live

NOBODY = Principal(admin=False)
GRAPHQL_RESPONSE = "application/graphql-response+json"
_MEDIA = {True: GRAPHQL_RESPONSE + "; charset=utf-8", False: "application/json"}


def prefers_graphql_response(accept: str) -> bool:
    """Whether an Accept header ranks application/graphql-response+json at least as high as JSON."""
    ranks = {GRAPHQL_RESPONSE: 0.0, "json": 0.0}
    for part in accept.lower().split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        key = GRAPHQL_RESPONSE if media == GRAPHQL_RESPONSE else \
            "json" if media in ("application/json", "application/*", "*/*") else None
        if key:
            ranks[key] = max(ranks[key], q)
    return ranks[GRAPHQL_RESPONSE] > 0 and ranks[GRAPHQL_RESPONSE] >= ranks["json"]


def refusal(status: int, message: str, code: str, graphql_response: bool,
            headers: dict[str, str] | None = None) -> Response:
    """A request error as GraphQL JSON; `"data": null` only in the legacy application/json shape."""
    body: dict[str, Any] = {"errors": [{"message": message, "extensions": {"code": code}}]}
    if not graphql_response:
        body = {"data": None, **body}
    return Response(orjson.dumps(body), status_code=status, media_type=_MEDIA[graphql_response], headers=headers)


class _SubResponse(Response):
    """Strawberry's per-request response stub, remembering the media type the client asked for."""

    def __init__(self, graphql_response: bool) -> None:
        super().__init__()
        self.status_code = None  # type: ignore[assignment]  # as Strawberry's: unset unless changed
        del self.headers["content-length"]
        self.graphql_response = graphql_response


def _plain_json(request: Request) -> bool:
    """A JSON POST that wants a plain JSON answer (not a multipart or event stream)."""
    accept = request.headers.get("accept", "")
    return "application/json" in request.headers.get("content-type", "") and "multipart" not in accept \
        and "event-stream" not in accept


def _replay(body: bytes, receive: Receive) -> Receive:
    """`receive` for the full path, after the fast path has read the body."""
    pending = True

    async def again() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()
    return again


class GraphQLApp(GraphQL[Context, None]):
    websocket_adapter_class = TextFrames
    def __init__(self, ide: Callable[[Request], Awaitable[Response]] | None = None,
                 origin_allowed: Callable[[str], bool] | None = None, *,
                 ping_interval: float = 15.0, send_timeout: float = 10.0) -> None:
        # Subscriptions: graphql-transport-ws only, on this same path (ws.py).
        super().__init__(schema, graphql_ide="graphiql", allow_queries_via_get=True,
                         subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,))
        self.ide = ide  # GraphiQL with its assets served by creditgate itself (adapters/web)
        self.origin_allowed = origin_allowed  # WebSocket origins: CREDITGATE_CORS_ORIGINS (adapters/web)
        self.graphql_transport_ws_handler_class = type(
            "ConfiguredLiveHandler", (LiveHandler,), {"ping_interval": ping_interval, "send_timeout": send_timeout})

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """connection_init: the payload's Authorization, as the header over HTTP; refused: close 4403."""
        rt = context.rt
        params = context.connection_params or {}
        raw = params.get("Authorization", params.get("authorization"))
        try:
            principal = authenticate(rt, raw if isinstance(raw, str) else None)
            await check_live(rt, principal)
        except DomainError:
            metrics.count_ws_closed("refused")
            raise ConnectionRejectionError from None
        context.principal = principal
        if principal.expires_at is not None and isinstance(context.connection, LiveHandler):
            context.connection.expire_at(principal.expires_at)
        return cast(UnsetType, UNSET)

    def is_websocket_origin_allowed(self, request: Any, origin: str) -> bool:
        if self.origin_allowed is None:
            return super().is_websocket_origin_allowed(request, origin)
        return self.origin_allowed(origin)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope)
        gr = scope.setdefault("state", {})["graphql_response"] = prefers_graphql_response(
            request.headers.get("accept", ""))
        wants_page = request.method == "GET" and "text/html" in request.headers.get("accept", "") \
            and "query" not in request.query_params
        if not wants_page:
            rt: Runtime = scope["app"].state.runtime
            try:
                principal = scope["state"]["principal"] = authenticate(rt, request.headers.get("authorization"))
            except DomainError as exc:
                await refusal(401, exc.message, exc.code, gr, {"www-authenticate": "Bearer"})(scope, receive, send)
                return
            if request.method == "POST" and "application/json" not in request.headers.get("content-type", ""):
                await refusal(415, "send the request as application/json", "BAD_USER_INPUT", gr,
                              {"accept-post": "application/json"})(scope, receive, send)
                return
            if request.method == "POST" and _plain_json(request):
                payload = await Request(scope, receive).body()
                answer = await fastpath.answer(rt, principal, payload, scope["state"])
                if answer is not None:
                    await Response(answer, media_type=_MEDIA[gr])(scope, receive, send)
                    return
                receive = _replay(payload, receive)
        try:
            response = await self.run(Request(scope, receive))
        except HTTPException as exc:
            headers = {"allow": "GET, POST"} if exc.status_code == 405 else None
            if isinstance(exc.__cause__, InvalidOperationTypeError):  # a mutation over GET
                exc.status_code, headers = 405, {"allow": "POST"}
            response = refusal(exc.status_code, exc.reason, "BAD_USER_INPUT", gr, headers)
        await response(scope, receive, send)

    async def render_graphql_ide(self, request: Request) -> Response:
        return await self.ide(request) if self.ide else await super().render_graphql_ide(request)

    async def get_sub_response(self, request: Request | Any) -> Response:
        sub = _SubResponse(bool(getattr(request.state, "graphql_response", False)))
        request.state.sub_response = sub
        return sub

    def create_response(self, response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
                        sub_response: Response) -> Response:
        response = super().create_response(response_data, sub_response)
        if isinstance(sub_response, _SubResponse) and sub_response.graphql_response:
            response.headers["content-type"] = _MEDIA[True]
        return response

    async def execute_operation(self, request: Any, request_adapter: Any, request_data: Any, context: Any,
                                root_value: Any, sub_response: Any) -> Any:
        # the latency label (adapters/http); Strawberry has parsed the body into request_data
        request.state.operation = "(batch)" if isinstance(request_data, list) else \
            operation_label(request_data.operation_name, request_data.query)
        return await super().execute_operation(request, request_adapter, request_data, context, root_value,
                                               sub_response)

    async def get_context(self, request: Any, response: Any) -> Context:
        # The GraphiQL page is served without credentials; it never executes anything.
        principal = getattr(request.state, "principal", NOBODY)
        return Context(rt=request.app.state.runtime, principal=principal)

    async def process_result(self, request: Any, result: ExecutionResult) -> GraphQLHTTPResponse:
        data: GraphQLHTTPResponse = {"data": result.data}
        if result.errors:
            formatted = [format_error(e) for e in result.errors]
            data["errors"] = list[object](formatted)
            for error in formatted:
                metrics.count_error("graphql", str((error.get("extensions") or {}).get("code", "INTERNAL")))
            request.state.errors_counted = True  # adapters/http counts the others by status
            sub = getattr(request.state, "sub_response", None)
            if isinstance(sub, _SubResponse) and sub.graphql_response and result.data is None \
                    and all(e.path is None for e in result.errors):
                # a request error (nothing was executed): 400 and no `data` entry
                del data["data"]
                sub.status_code = 400
        return data

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)
