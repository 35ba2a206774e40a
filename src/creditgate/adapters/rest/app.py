"""The /api/v1 ASGI app: matches a route of the registry, authenticates, parses, calls, renders."""

from __future__ import annotations

from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from creditgate import metrics
from creditgate.adapters.rest import PREFIX
from creditgate.adapters.rest.errors import HttpProblem, error_response
from creditgate.adapters.rest.router import Call, Op, Registry, api
from creditgate.services import tokens as token_svc
from creditgate.services.auth import ADMIN, authenticate
from creditgate.services.runtime import Runtime


def route_segments(scope: Scope) -> list[str]:
    """The path below the mount point, split on the *raw* "/" so that an encoded %2F stays in its segment."""
    root = scope.get("root_path", "")
    path: str = scope["path"]
    route_path = path[len(root):] if root and path.startswith(root) else path
    raw = scope.get("raw_path")
    if raw:
        parts = raw.decode("latin-1").split("?", 1)[0].split("/")
        for i in range(len(parts)):
            if unquote("/" + "/".join(parts[i:])) == route_path:
                return parts[i:] if route_path != "/" else []
    return route_path.strip("/").split("/")


class RestApp:
    def __init__(self, registry: Registry = api) -> None:
        # Literal segments win over parameters ("/portal/tokens/invalidate" before "{x}" routes).
        self.ops = sorted(registry.ops, key=lambda o: -sum(not s.startswith("{") for s in o.segments))
        # the latency label of each operation: method and route template (adapters/http)
        self.labels = {op.op_id: f"{op.method} {PREFIX}{op.path}" for op in self.ops}

    def find(self, method: str, segments: list[str]) -> tuple[Op, dict[str, str]]:
        allowed = False
        for op in self.ops:
            params = op.match(segments)
            if params is None:
                continue
            if op.method == method or (method == "HEAD" and op.method == "GET"):
                return op, params
            allowed = True
        if allowed:
            raise HttpProblem(405, f"method {method} not allowed here")
        raise HttpProblem(404, "no such route")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        instance = request.url.path
        op_id = "unmatched"
        try:
            op, params = self.find(request.method, route_segments(scope))
            op_id = op.op_id
            scope.setdefault("state", {})["operation"] = self.labels[op_id]
            response = await self.run(op, params, request)
        except Exception as exc:  # the one place errors become problems
            response = error_response(exc, instance)
        metrics.count_request(op_id, response.status_code)
        await response(scope, receive, send)

    async def run(self, op: Op, params: dict[str, str], request: Request) -> Response:
        rt: Runtime = request.app.state.runtime
        principal = ADMIN if op.access == "public" else authenticate(rt, request.headers.get("authorization"))
        if op.access == "admin":
            principal.require_admin()
        elif not principal.admin:
            await token_svc.check_live(rt, principal)  # an invalidated token is refused at once
        query = op.parse_query(request.query_params) if op.query is not None else None
        body = None
        if op.body is not None:
            body = op.parse_body(request.headers.get("content-type", ""), await request.body())
        call = Call(rt=rt, principal=principal, path=params, query=query, body=body, request=request)
        return op.render(await op.handler(call))
