"""Who is calling: an admin (API key, or open mode) or one subject (a signed subject token)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from creditgate.domain.errors import Forbidden, Unauthenticated
from creditgate.services.runtime import Runtime

TOKEN_PREFIX = "cgt_"
# Ids of invalidated subject tokens known to this process (services/tokens.py keeps it fresh).
INVALIDATED_KEY = "invalidated_token_ids"


@dataclass(frozen=True, slots=True)
class Principal:
    admin: bool
    subject_key: str | None = None
    token_id: str | None = None
    expires_at: datetime | None = None  # a subject token's end (a WebSocket is closed then)

    def require_admin(self) -> None:
        if not self.admin:
            raise Forbidden("this operation needs an API key")

    def require_subject(self, subject_key: str) -> None:
        if not self.admin and self.subject_key != subject_key:
            raise Forbidden("a subject token may only read its own subject")


ADMIN = Principal(admin=True)


def token_secret(rt: Runtime) -> bytes:
    secret = rt.settings.token_secret
    if not secret:
        # No configured secret: one per process (tokens die with it; `serve` says so).
        secret = rt.extras.setdefault("token_secret", secrets.token_urlsafe(32))
    return secret.encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_token(rt: Runtime, token_id: str, subject_key: str, expires_at: datetime) -> str:
    body = _b64(orjson.dumps({"i": token_id, "s": subject_key, "e": int(expires_at.timestamp())}))
    mac = hmac.new(token_secret(rt), body.encode(), hashlib.sha256).digest()
    return f"{TOKEN_PREFIX}{body}.{_b64(mac)}"


def verify_token(rt: Runtime, token: str, now: datetime) -> Principal:
    """The subject principal of a valid token; UNAUTHENTICATED if tampered or expired."""
    try:
        body, mac = token.removeprefix(TOKEN_PREFIX).split(".", 1)
        expected = hmac.new(token_secret(rt), body.encode(), hashlib.sha256).digest()
        if not token.startswith(TOKEN_PREFIX) or not hmac.compare_digest(expected, _unb64(mac)):
            raise ValueError("bad signature")
        claims = orjson.loads(_unb64(body))
        expires = datetime.fromtimestamp(int(claims["e"]), UTC)
        subject, token_id = str(claims["s"]), str(claims["i"])
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise Unauthenticated("invalid token") from None
    if expires <= now:
        raise Unauthenticated("token expired")
    if token_id in rt.extras.get(INVALIDATED_KEY, ()):
        raise Unauthenticated("token invalidated")
    return Principal(admin=False, subject_key=subject, token_id=token_id, expires_at=expires)


def authenticate(rt: Runtime, authorization: str | None) -> Principal:
    """The caller from an `Authorization: Bearer ...` header (API key or subject token)."""
    keys = rt.settings.api_key_set
    if not authorization:
        if keys:
            raise Unauthenticated("missing credentials: send Authorization: Bearer <key>")
        return ADMIN
    scheme, _, credential = authorization.partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise Unauthenticated("use Authorization: Bearer <key or token>")
    if any(hmac.compare_digest(credential, k) for k in keys):
        return ADMIN
    if credential.startswith(TOKEN_PREFIX):
        return verify_token(rt, credential, rt.now())
    if keys:
        raise Unauthenticated("invalid API key")
    return ADMIN
