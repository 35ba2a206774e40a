"""The route registry: each REST operation is declared once, with its method, path, parameters and
request/response models. Dispatch, parameter parsing and the OpenAPI document are all built from it."""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote

import orjson
from pydantic import BaseModel, TypeAdapter
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response

from creditgate.adapters.rest.errors import HttpProblem
from creditgate.domain.errors import BadInput
from creditgate.services import subjects as subjects_svc
from creditgate.services import tokens as token_svc
from creditgate.services.auth import Principal
from creditgate.services.runtime import Runtime

ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")  # a subject id; anything else is a key
Access = Literal["admin", "subject", "public"]
JSON_TYPES = ("application/json",)


@dataclass
class Call:
    """What a handler gets: the runtime, the caller, and the parsed parameters and body."""

    rt: Runtime
    principal: Principal
    path: dict[str, str]
    query: Any
    body: Any
    request: Request

    async def subject_key(self, name: str = "subjectIdOrKey") -> str:
        """The subject key named by a path parameter (an id or a key), checked against the caller.

        A subject token may only name its own subject. An unknown key is kept as is (entitlements
        create their subject on first use)."""
        id_or_key = self.path[name]
        key = id_or_key
        if id_or_key != self.principal.subject_key and ULID.match(id_or_key):
            found = await subjects_svc.get_subject(self.rt, id_or_key)
            key = found.key if found else id_or_key
        await token_svc.authorize_subject_read(self.rt, self.principal, key)
        return key


Handler = Callable[[Call], Awaitable[Any]]


@dataclass
class Op:
    method: str
    path: str
    op_id: str
    handler: Handler
    status: int
    summary: str
    tag: str
    access: Access
    response: Any = None  # a type for TypeAdapter; None = no body
    body: Any = None
    raw_body: bool = False  # parse JSON only; the handler's service validates (the model documents it)
    body_types: tuple[str, ...] = JSON_TYPES
    query: type[BaseModel] | None = None
    response_types: tuple[str, ...] = ("application/json",)
    segments: tuple[str, ...] = ()
    body_adapter: TypeAdapter[Any] | None = None
    response_adapter: TypeAdapter[Any] | None = None
    list_fields: frozenset[str] = frozenset()
    dict_fields: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        self.segments = tuple(self.path.strip("/").split("/"))
        if self.body is not None:
            self.body_adapter = TypeAdapter(self.body)
        if self.response is not None:
            self.response_adapter = TypeAdapter(self.response)
        if self.query is not None:
            lists, dicts = set(), set()
            for name, f in self.query.model_fields.items():
                alias = f.alias or name
                origins = {typing.get_origin(a) for a in _flatten(f.annotation)}
                if list in origins:
                    lists.add(alias)
                elif dict in origins:
                    dicts.add(alias)
            self.list_fields, self.dict_fields = frozenset(lists), frozenset(dicts)

    @property
    def path_params(self) -> list[str]:
        return [s[1:-1] for s in self.segments if s.startswith("{")]

    def match(self, segments: list[str]) -> dict[str, str] | None:
        if len(segments) != len(self.segments):
            return None
        params: dict[str, str] = {}
        for want, got in zip(self.segments, segments, strict=True):
            if want.startswith("{"):
                value = unquote(got)
                if not value:
                    return None
                params[want[1:-1]] = value
            elif want != got:
                return None
        return params

    def parse_query(self, qp: QueryParams) -> Any:
        assert self.query is not None
        data: dict[str, Any] = {}
        for key, value in qp.multi_items():
            name, sep, rest = key.partition("[")
            if sep and name in self.dict_fields and rest.endswith("]"):
                data.setdefault(name, {})[rest[:-1]] = value
            elif key in self.list_fields:
                data.setdefault(key, []).append(value)
            elif key in self.query.model_fields or any(f.alias == key for f in self.query.model_fields.values()):
                if key in data:
                    raise BadInput(f"query parameter {key!r} given more than once")
                data[key] = value
        return self.query.model_validate(data)

    def parse_body(self, content_type: str, raw: bytes) -> Any:
        media = content_type.split(";", 1)[0].strip().lower()
        if media and media != "application/json" and not media.endswith("+json"):
            raise HttpProblem(415, f"send the body as one of: {', '.join(self.body_types)}")
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise BadInput("the request body is not valid JSON") from None
        if self.raw_body or self.body_adapter is None:
            return parsed
        return self.body_adapter.validate_python(parsed)

    def render(self, value: Any) -> Response:
        if isinstance(value, Response):
            return value
        if self.response_adapter is None:
            return Response(status_code=self.status)
        body = self.response_adapter.dump_json(value, by_alias=True, exclude_none=True)
        return Response(body, status_code=self.status, media_type=self.response_types[0])


def _flatten(annotation: Any) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return [a for arg in typing.get_args(annotation) for a in _flatten(arg)]
    if origin is typing.Annotated:
        return _flatten(typing.get_args(annotation)[0])
    return [annotation]


@dataclass
class Registry:
    ops: list[Op] = field(default_factory=list)

    def route(self, method: str, path: str, *, op_id: str, tag: str, summary: str, status: int = 200,
              response: Any = None, body: Any = None, raw_body: bool = False,
              body_types: tuple[str, ...] = JSON_TYPES, query: type[BaseModel] | None = None,
              access: Access = "admin",
              response_types: tuple[str, ...] = ("application/json",)) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.ops.append(Op(method=method, path=path, op_id=op_id, handler=handler, status=status,
                               summary=summary, tag=tag, access=access, response=response, body=body,
                               raw_body=raw_body, body_types=body_types, query=query,
                               response_types=response_types))
            return handler
        return register


api = Registry()
