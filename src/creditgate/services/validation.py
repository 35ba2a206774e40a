"""The input rules every service entry applies, whichever API called it (docs/semantics.md §0.4).

- Text (names, descriptions, keys, event attributes, JSONPaths, and every string inside metadata,
  config and event data, object keys included) must be storable: no NUL (U+0000) and no lone
  surrogates, which PostgreSQL text and JSONB cannot hold. Free text is at most MAX_TEXT characters.
- Lookups (an id, key or slug naming something to read, delete or check) follow the same rule: a
  lookup holding unstorable text, or longer than MAX_TEXT, is BAD_USER_INPUT (it could never name
  anything stored), never NOT_FOUND. A well-formed lookup that names nothing is NOT_FOUND (or null /
  NO_ENTITLEMENT where the API says so).
- Amounts are finite decimals that fit the stored scale; priorities 0-255; paging 1 <= limit <= MAX_LIMIT,
  offset >= 0.
Every refusal is `BadInput` (GraphQL BAD_USER_INPUT, REST 400).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from creditgate.amounts import fit_stored
from creditgate.domain.errors import BadInput

MAX_TEXT = 4096
MAX_KEY = 256  # subject keys
MAX_LIMIT = 1000


def unstorable(value: str) -> str | None:
    """Why text cannot be stored, or None when it can."""
    if "\x00" in value:
        return "must not contain NUL (\\u0000) characters"
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            return "must be valid Unicode (no lone surrogates)"
    return None


def storable(value: str, what: str) -> str:
    problem = unstorable(value)
    if problem is not None:
        raise BadInput(f"{what} {problem}")
    return value


def text(value: Any, what: str, *, max_len: int = MAX_TEXT) -> str:
    """Required free text: a non-blank storable string of at most max_len characters."""
    if not isinstance(value, str):
        raise BadInput(f"{what} must be a string")
    storable(value, what)
    if not value.strip():
        raise BadInput(f"{what} must not be empty")
    if len(value) > max_len:
        raise BadInput(f"{what} must be at most {max_len} characters")
    return value


def optional_text(value: Any, what: str, *, max_len: int = MAX_TEXT) -> str | None:
    """Optional free text: None, or a storable string (possibly empty) of at most max_len characters."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadInput(f"{what} must be a string")
    storable(value, what)
    if len(value) > max_len:
        raise BadInput(f"{what} must be at most {max_len} characters")
    return value


def lookup(value: str, what: str) -> str:
    """An id, key or slug to look something up by: storable and at most MAX_TEXT characters."""
    if value.isascii() and "\x00" not in value and len(value) <= MAX_TEXT:  # the usual case, first (hot path)
        return value
    if len(value) > MAX_TEXT:
        raise BadInput(f"{what} must be at most {MAX_TEXT} characters")
    return storable(value, what)


def lookups(values: Any, what: str) -> None:
    for v in values:
        lookup(v, what)


def subject_key(key: str, what: str = "subject key") -> str:
    """A subject key as stored: 1-MAX_KEY storable, non-blank characters."""
    if not key or not key.strip() or len(key) > MAX_KEY:
        raise BadInput(f"{what} must be 1-{MAX_KEY} non-blank characters")
    return storable(key, what)


def json_problem(value: Any) -> str | None:
    """Why a JSON value holds unstorable text (in a string or an object key), or None."""
    if isinstance(value, str):
        return unstorable(value)
    if isinstance(value, dict):
        for k, v in value.items():
            problem = (unstorable(k) if isinstance(k, str) else None) or json_problem(v)
            if problem is not None:
                return problem
    elif isinstance(value, list):
        for v in value:
            problem = json_problem(v)
            if problem is not None:
                return problem
    return None


def json_value(value: Any, what: str) -> Any:
    problem = json_problem(value)
    if problem is not None:
        raise BadInput(f"{what}: text {problem}")
    return value


def json_object(value: Any, what: str) -> dict[str, Any]:
    """An optional JSON object (metadata): {} when absent."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadInput(f"{what} must be a JSON object")
    return json_value(value, what)  # type: ignore[no-any-return]


def string_map(value: Any, what: str) -> dict[str, str]:
    """An optional object of string values (group-by filters): {} when absent."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise BadInput(f"{what} must be an object of string values")
    return json_value(dict(value), what)  # type: ignore[no-any-return]


def amount(value: float | Decimal | int, what: str) -> Decimal:
    """A finite amount that fits the stored scale (a float is read as its shortest repr)."""
    try:
        out = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except (InvalidOperation, ValueError, TypeError):
        raise BadInput(f"{what} must be a number") from None
    if not out.is_finite():
        raise BadInput(f"{what} must be a finite number")
    try:
        return fit_stored(out)
    except ValueError:
        raise BadInput(f"{what} is out of range (at most 26 integer digits)") from None


def priority(value: int, what: str = "priority") -> int:
    if not 0 <= value <= 255:
        raise BadInput(f"{what} must be between 0 and 255")
    return value


def page(limit: int, offset: int, max_limit: int = MAX_LIMIT) -> None:
    if not 1 <= limit <= max_limit:
        raise BadInput(f"limit must be between 1 and {max_limit}")
    if offset < 0:
        raise BadInput("offset must be >= 0")
