"""Batches of writes (createEntitlements, createGrants): the size cap and the index of a failing item.

A batch is checked whole before anything is written and written in one transaction: every item or none
(docs/semantics.md §3.7). An item's error is the error the single write would give, its message prefixed
with `inputs[i]: ` and its index carried along (GraphQL `extensions.index`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from creditgate.domain.errors import BadInput, DomainError

MAX_BATCH = 1000  # items per batch (the GraphQL list bound is the same)


def check_size(n: int) -> None:
    if n > MAX_BATCH:
        raise BadInput(f"a batch may hold at most {MAX_BATCH} inputs, got {n}")


def at_index(i: int, exc: DomainError) -> DomainError:
    """`exc` as the error of item i of a batch."""
    return type(exc)(f"inputs[{i}]: {exc.message}", conflicting_entity_id=exc.conflicting_entity_id, index=i)


@contextmanager
def item(i: int) -> Iterator[None]:
    """Errors raised inside are the errors of item i."""
    try:
        yield
    except DomainError as exc:
        if exc.index is not None:
            raise
        raise at_index(i, exc) from None
