"""Small helpers that hide the differences between PostgreSQL and SQLite."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from creditgate.domain.errors import Conflict


def dialect_name(session: AsyncSession) -> str:
    bind = session.get_bind()
    return bind.dialect.name


def upsert(session: AsyncSession, table: Any) -> Any:
    """An INSERT that supports `.on_conflict_do_update/nothing` on both databases."""
    if dialect_name(session) == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def is_unique_violation(exc: IntegrityError, index: str) -> bool:
    """True when `exc` was raised by the unique index (or constraint) named `index`."""
    orig = exc.orig
    diag = getattr(orig, "diag", None)
    if diag is not None and getattr(diag, "constraint_name", None):
        return bool(diag.constraint_name == index)
    text = str(orig)
    return "UNIQUE constraint failed" in text or index in text


async def insert_unique(session: AsyncSession, row: Any, index: str,
                        conflict: Callable[[], Awaitable[Conflict]]) -> None:
    """Insert `row`; a violation of the unique index `index` raises the CONFLICT `conflict()` builds.

    The database decides (partial unique indexes), so concurrent inserts cannot both win."""
    try:
        async with session.begin_nested():
            session.add(row)
            await session.flush()
    except IntegrityError as exc:
        if not is_unique_violation(exc, index):
            raise
        raise await conflict() from None
