"""The OpenAPI 3.1 document, generated from the route registry and the pydantic models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, TypeAdapter

from creditgate.adapters.rest.errors import PROBLEM, TITLES
from creditgate.adapters.rest.models import Problem
from creditgate.adapters.rest.router import Call, Op, Registry, api

REF = "#/components/schemas/{model}"
ERRORS = (400, 401, 403, 404, 409, 500)


def _schema(tp: Any, mode: str, defs: dict[str, Any], *, inline: bool = False) -> dict[str, Any]:
    """The JSON schema of a type; named models go to components and are referenced."""
    schema = TypeAdapter(tp).json_schema(mode=mode, ref_template=REF)  # type: ignore[arg-type]
    defs.update(schema.pop("$defs", {}))
    if not inline and isinstance(tp, type) and issubclass(tp, BaseModel):
        defs[tp.__name__] = schema
        return {"$ref": REF.format(model=tp.__name__)}
    return schema


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent rather than null: drop the null branch and the null default."""
    branches = [b for b in schema.get("anyOf", []) if b != {"type": "null"}]
    if "anyOf" in schema and len(branches) == 1:
        rest = {k: v for k, v in schema.items() if k != "anyOf"}
        schema = {**branches[0], **rest}
    if schema.get("default", 0) is None:
        del schema["default"]
    schema.pop("title", None)
    return schema


def _parameters(op: Op, defs: dict[str, Any]) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                                    for p in op.path_params]
    if op.query is not None:
        schema = _schema(op.query, "validation", defs, inline=True)
        required = set(schema.get("required", []))
        for name, prop in schema["properties"].items():
            param: dict[str, Any] = {"name": name, "in": "query", "required": name in required,
                                     "schema": _not_null(prop)}
            if name in op.list_fields:
                param.update(style="form", explode=True)
            elif name in op.dict_fields:
                param.update(style="deepObject", explode=True)
            params.append(param)
    return params


def _operation(op: Op, defs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": op.op_id, "summary": op.summary, "tags": [op.tag]}
    params = _parameters(op, defs)
    if params:
        out["parameters"] = params
    if op.body is not None:
        body = _schema(op.body, "validation", defs)
        out["requestBody"] = {"required": True, "content": {t: {"schema": body} for t in op.body_types}}
    ok: dict[str, Any] = {"description": "Success"}
    if op.response is not None:
        schema = _schema(op.response, "serialization", defs)
        ok["content"] = {t: {"schema": schema if "json" in t else {"type": "string"}} for t in op.response_types}
    responses: dict[str, Any] = {str(op.status): ok}
    problem = {"content": {PROBLEM: {"schema": {"$ref": REF.format(model="Problem")}}}}
    for status in ERRORS:
        responses.setdefault(str(status), {"description": TITLES[status], **problem})
    if op.access == "public":
        out["security"] = []
    out["responses"] = responses
    return out


def build_document(registry: Registry = api) -> dict[str, Any]:
    defs: dict[str, Any] = {}
    _schema(Problem, "serialization", defs)
    paths: dict[str, dict[str, Any]] = {}
    for op in registry.ops:
        paths.setdefault("/api/v1" + op.path, {})[op.method.lower()] = _operation(op, defs)
    return {
        "openapi": "3.1.0",
        "info": {"title": "creditgate REST API (OpenMeter v1 compatible)", "version": "1.0.0"},
        "paths": paths,
        "components": {
            "schemas": dict(sorted(defs.items())),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "An API key, or a subject (portal) token"}},
        },
        "security": [{"bearer": []}],
    }


_document: dict[str, Any] | None = None


@api.route("GET", "/openapi.json", op_id="getOpenApi", tag="Meta", summary="This document",
           response=dict[str, Any], access="public")
async def openapi_json(c: Call) -> dict[str, Any]:
    global _document
    if _document is None:
        _document = build_document()
    return _document
