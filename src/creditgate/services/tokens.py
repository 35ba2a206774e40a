"""Subject (portal) tokens: mint, list, invalidate (read-only credentials for one subject: docs/semantics.md §12).

A token is signed (services/auth.py) and also stored, so that it can be listed and
invalidated. `authenticate` refuses invalidated tokens: the ids are kept in the
process (refreshed at most every REFRESH seconds by `refresh_invalidated`, and updated
at once by invalidations made in this process).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import timedelta

from creditgate.adapters.sql import tokens as repo
from creditgate.domain.errors import BadInput, Unauthenticated
from creditgate.records import PortalToken, new_id
from creditgate.services import validation
from creditgate.services.auth import INVALIDATED_KEY, Principal, sign_token
from creditgate.services.runtime import Runtime
from creditgate.services.subjects import check_subject_key

MAX_TTL = 30 * 24 * 3600
REFRESH = 1.0
_LOADED_AT = "invalidated_tokens_loaded_at"


async def create_token(rt: Runtime, subject_key: str, ttl_seconds: int = 3600) -> tuple[str, PortalToken]:
    check_subject_key(subject_key)
    if not 1 <= ttl_seconds <= MAX_TTL:
        raise BadInput(f"ttlSeconds must be between 1 and {MAX_TTL} (30 days)")
    now = rt.now()
    token = PortalToken(id=new_id(), subject_key=subject_key, expires_at=now + timedelta(seconds=ttl_seconds),
                        invalidated_at=None, created_at=now)
    async with rt.db.transaction() as s:
        await repo.insert_token(s, token)
    return sign_token(rt, token.id, subject_key, token.expires_at), token


async def list_tokens(rt: Runtime, subject_key: str | None = None) -> list[PortalToken]:
    if subject_key is not None:
        validation.lookup(subject_key, "subject key")
    async with rt.db.read() as s:
        return await repo.list_tokens(s, subject_key)


async def invalidate_tokens(rt: Runtime, ids: Sequence[str] | None = None, subject_key: str | None = None) -> int:
    """Invalidate tokens by id and/or subject; returns how many were invalidated now."""
    if ids is None and subject_key is None:
        raise BadInput("name token ids or a subject")
    validation.lookups(ids or (), "token id")
    if subject_key is not None:
        validation.lookup(subject_key, "subject key")
    async with rt.db.transaction() as s:
        done = await repo.invalidate(s, ids, subject_key, rt.now())
    rt.extras.setdefault(INVALIDATED_KEY, set()).update(done)
    return len(done)


async def refresh_invalidated(rt: Runtime, force: bool = False) -> None:
    """Reload the invalidated token ids if the process copy is older than REFRESH seconds."""
    loaded = rt.extras.get(_LOADED_AT)
    if not force and loaded is not None and time.monotonic() - loaded < REFRESH:
        return
    async with rt.db.read() as s:
        ids = await repo.invalidated_ids(s, rt.now())
    rt.extras[INVALIDATED_KEY] = ids | set(rt.extras.get(INVALIDATED_KEY, set()))
    rt.extras[_LOADED_AT] = time.monotonic()


async def check_live(rt: Runtime, principal: Principal) -> None:
    """For a subject token: UNAUTHENTICATED once it has been invalidated (any process)."""
    if principal.admin or principal.token_id is None:
        return
    await refresh_invalidated(rt)
    if principal.token_id in rt.extras.get(INVALIDATED_KEY, ()):
        raise Unauthenticated("token invalidated")


async def authorize_subject_read(rt: Runtime, principal: Principal, subject_keys: str | Iterable[str]) -> None:
    """The one guard of every read of subjects' data (both APIs and the GraphQL fast path): an admin, or a
    live token of that very subject. FORBIDDEN for another subject, UNAUTHENTICATED once invalidated."""
    for key in (subject_keys,) if isinstance(subject_keys, str) else subject_keys:
        principal.require_subject(key)
    await check_live(rt, principal)
