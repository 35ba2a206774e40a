"""REST: portal tokens, which are creditgate's subject tokens (also valid on GraphQL)."""

from __future__ import annotations

import math

from creditgate.adapters.rest.models import InvalidateTokensIn, PortalTokenIn, PortalTokenListQuery, PortalTokenOut
from creditgate.adapters.rest.router import Call, api
from creditgate.domain.errors import BadInput
from creditgate.records import PortalToken
from creditgate.services import tokens as svc

TAG = "Portal"
DEFAULT_TTL = 3600


def token_out(t: PortalToken, c: Call, token: str | None = None) -> PortalTokenOut:
    expired = t.invalidated_at is not None or t.expires_at <= c.rt.now()
    return PortalTokenOut(id=t.id, subject=t.subject_key, token=token, expired=expired, expires_at=t.expires_at,
                          created_at=t.created_at, invalidated_at=t.invalidated_at)


@api.route("POST", "/portal/tokens", op_id="createPortalToken", tag=TAG,
           summary="Create a read-only token for one subject", body=PortalTokenIn, response=PortalTokenOut)
async def create_portal_token(c: Call) -> PortalTokenOut:
    b: PortalTokenIn = c.body
    if b.allowed_meter_slugs:
        raise BadInput("allowedMeterSlugs is not supported: a token reads every meter of its subject")
    ttl = DEFAULT_TTL if b.expires_at is None else math.ceil((b.expires_at - c.rt.now()).total_seconds())
    token, record = await svc.create_token(c.rt, b.subject, ttl)
    return token_out(record, c, token)


@api.route("GET", "/portal/tokens", op_id="listPortalTokens", tag=TAG, summary="List portal tokens, newest first",
           query=PortalTokenListQuery, response=list[PortalTokenOut])
async def list_portal_tokens(c: Call) -> list[PortalTokenOut]:
    q: PortalTokenListQuery = c.query
    if q.limit < 1:
        raise BadInput("limit must be >= 1")
    found = sorted(await svc.list_tokens(c.rt), key=lambda t: (t.created_at, t.id), reverse=True)
    return [token_out(t, c) for t in found[:q.limit]]


@api.route("POST", "/portal/tokens/invalidate", op_id="invalidatePortalTokens", tag=TAG,
           summary="Invalidate portal tokens by id and/or subject", status=204, body=InvalidateTokensIn)
async def invalidate_portal_tokens(c: Call) -> None:
    b: InvalidateTokensIn = c.body
    await svc.invalidate_tokens(c.rt, [b.id] if b.id is not None else None, b.subject)
