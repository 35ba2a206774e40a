"""The practical JSONPath subset meters use: `$`, `.name`, `['name']`, `["name"]`, `[0]`."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from creditgate.domain.errors import BadInput

Path = tuple[str | int, ...]

_NAME = re.compile(r"\.([A-Za-z_$][\w$-]*)")
_QUOTED = re.compile(r"""\[\s*(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")\s*\]""")
_INDEX = re.compile(r"\[\s*(\d+)\s*\]")
_MISSING = object()


def compile_path(text: str) -> Path:
    """The steps of a JSONPath; BadInput when it is outside the supported subset."""
    if not isinstance(text, str) or not text.startswith("$"):
        raise BadInput(f"JSONPath must start with '$': {text!r}")
    steps: list[str | int] = []
    pos = 1
    while pos < len(text):
        for pattern in (_NAME, _QUOTED, _INDEX):
            m = pattern.match(text, pos)
            if m:
                break
        else:
            raise BadInput(f"unsupported JSONPath {text!r} at position {pos}")
        if pattern is _INDEX:
            steps.append(int(m.group(1)))
        elif pattern is _QUOTED:
            raw = m.group(1) if m.group(1) is not None else m.group(2)
            steps.append(re.sub(r"\\(.)", r"\1", raw))
        else:
            steps.append(m.group(1))
        pos = m.end()
    return tuple(steps)


def lookup(data: Any, path: Path) -> Any:
    """The value at `path`, or MISSING."""
    for step in path:
        if isinstance(step, int):
            if not isinstance(data, list) or step >= len(data):
                return _MISSING
            data = data[step]
        else:
            if not isinstance(data, dict) or step not in data:
                return _MISSING
            data = data[step]
    return data


def is_missing(value: Any) -> bool:
    return value is _MISSING


def as_text(value: Any) -> str | None:
    """A group-by value: strings as they are, other JSON as JSON writes it; absent or null: None."""
    if value is _MISSING or value is None:
        return None
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # integers beyond 64 bits
        return json.dumps(value, separators=(",", ":"))
