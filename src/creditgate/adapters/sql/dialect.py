"""Small helpers that hide the differences between PostgreSQL and SQLite."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession


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
