"""The operation label of a GraphQL request, for the latency histogram (adapters/http).

The name comes from the client, so the set is bounded: a name must be a GraphQL name of at most 64
characters that the document defines; the first MAX_LABELS distinct names are kept, later ones
become "(other)". Unnamed operations are "anonymous"; documents that do not parse, "(invalid)".
"""

from __future__ import annotations

import re
from functools import lru_cache

from graphql import GraphQLError, OperationDefinitionNode, parse

from creditgate.adapters.graphql.limits import MAX_TOKENS

MAX_LABELS = 200
NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]{0,63}")
ANONYMOUS, INVALID, OTHER = "anonymous", "(invalid)", "(other)"
_known: set[str] = set()


def bounded(name: str | None) -> str:
    """A name as a label value, from a set of at most MAX_LABELS names."""
    if not name:
        return ANONYMOUS
    if name in _known:
        return name
    if len(_known) >= MAX_LABELS or not NAME.fullmatch(name):
        return OTHER
    _known.add(name)
    return name


@lru_cache(maxsize=1024)
def _document_name(query: str, name: str | None) -> str | None:
    """The name of the operation a request runs; INVALID when the document or the name is wrong."""
    try:
        doc = parse(query, no_location=True, max_tokens=MAX_TOKENS)
    except GraphQLError:
        return INVALID
    names = [d.name.value if d.name else None for d in doc.definitions if isinstance(d, OperationDefinitionNode)]
    if name is not None:
        return name if name in names else INVALID
    return names[0] if len(names) == 1 else INVALID


def operation_label(name: object, query: object) -> str:
    if not isinstance(query, str) or not isinstance(name, str | None):
        return INVALID
    found = _document_name(query, name)
    return INVALID if found == INVALID else bounded(found)
