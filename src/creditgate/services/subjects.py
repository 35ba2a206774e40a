"""Subjects: the customer keys that events and entitlements name (docs/semantics.md §2)."""

from __future__ import annotations

from typing import Any

from creditgate.adapters.sql import subjects as repo
from creditgate.domain.errors import NotFound
from creditgate.records import Subject
from creditgate.services import validation
from creditgate.services.runtime import Runtime

MAX_KEY = validation.MAX_KEY


def check_subject_key(key: str) -> None:
    validation.subject_key(key)


def check_metadata(metadata: Any) -> dict[str, Any]:
    return validation.json_object(metadata, "metadata")


async def upsert_subject(rt: Runtime, key: str, display_name: str | None, metadata: Any) -> Subject:
    check_subject_key(key)
    display_name = validation.optional_text(display_name, "displayName")
    meta = check_metadata(metadata)
    async with rt.db.transaction() as s:
        return await repo.upsert_subject(s, key, display_name, meta, rt.now())


async def get_subject(rt: Runtime, id_or_key: str) -> Subject | None:
    validation.lookup(id_or_key, "subject id or key")
    async with rt.db.read() as s:
        return await repo.get_subject(s, id_or_key)


async def list_subjects(rt: Runtime, limit: int | None = None, offset: int = 0) -> list[Subject]:
    async with rt.db.read() as s:
        return await repo.list_subjects(s, limit, offset)


async def delete_subject(rt: Runtime, id_or_key: str) -> None:
    validation.lookup(id_or_key, "subject id or key")
    async with rt.db.transaction() as s:
        found = await repo.get_subject(s, id_or_key)
        if found is None:
            raise NotFound(f"subject {id_or_key!r} not found")
        await repo.delete_subject(s, found.id)
