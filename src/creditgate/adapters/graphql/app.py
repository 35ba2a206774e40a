"""The /graphql endpoint: authenticates, answers the hot reads (fastpath.py), else hands over to Strawberry."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse
from strawberry.types import ExecutionResult

from creditgate.adapters.graphql import fastpath
from creditgate.adapters.graphql.context import Context
from creditgate.adapters.graphql.errors import format_error
from creditgate.adapters.graphql.schema import schema
from creditgate.domain.errors import DomainError
from creditgate.services.auth import Principal, authenticate
from creditgate.services.runtime import Runtime

NOBODY = Principal(admin=False)


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
    def __init__(self) -> None:
        super().__init__(schema, graphql_ide="graphiql", allow_queries_via_get=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            request = Request(scope)
            wants_page = request.method == "GET" and "text/html" in request.headers.get("accept", "") \
                and "query" not in request.query_params
            if not wants_page:
                rt: Runtime = scope["app"].state.runtime
                try:
                    principal = scope.setdefault("state", {})["principal"] = authenticate(
                        rt, request.headers.get("authorization"))
                except DomainError as exc:
                    body = {"data": None, "errors": [{"message": exc.message, "extensions": {"code": exc.code}}]}
                    await Response(orjson.dumps(body), status_code=401, media_type="application/json",
                                   headers={"www-authenticate": "Bearer"})(scope, receive, send)
                    return
                if request.method == "POST" and _plain_json(request):
                    payload = await Request(scope, receive).body()
                    answer = await fastpath.answer(rt, principal, payload)
                    if answer is not None:
                        await Response(answer, media_type="application/json")(scope, receive, send)
                        return
                    receive = _replay(payload, receive)
        await super().__call__(scope, receive, send)

    async def get_context(self, request: Any, response: Any) -> Context:
        # The GraphiQL page is served without credentials; it never executes anything.
        principal = getattr(request.state, "principal", NOBODY)
        return Context(rt=request.app.state.runtime, principal=principal)

    async def process_result(self, request: Any, result: ExecutionResult) -> GraphQLHTTPResponse:
        data: GraphQLHTTPResponse = {"data": result.data}
        if result.errors:
            data["errors"] = [format_error(e) for e in result.errors]
        return data

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)
