"""Notification channels, rules and events (docs/semantics.md §11): the use cases both APIs call.

Evaluation (when a threshold is reached) is services/thresholds.py; delivery (the webhook queue) is
services/webhooks.py. Only API keys may call these: adapters check `principal.require_admin()` first (FORBIDDEN).
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from creditgate.adapters.sql import features as feature_repo
from creditgate.adapters.sql import notifications as repo
from creditgate.domain.errors import BadInput, Conflict, NotFound
from creditgate.records import (
    BALANCE_THRESHOLD,
    NotificationChannel,
    NotificationEvent,
    NotificationRule,
    Threshold,
    ThresholdType,
    new_id,
)
from creditgate.services import thresholds, validation
from creditgate.services.runtime import Runtime

T = TypeVar("T")
WEBHOOK = "WEBHOOK"
MAX_THRESHOLDS = 10
MIN_SECRET_BYTES = 24
SECRET_PREFIX = "whsec_"
MAX_HEADERS = 50
MAX_LIST = validation.MAX_LIMIT


@dataclass(frozen=True, slots=True)
class Paged(Generic[T]):
    """One page of a listing and the number of items on every page."""

    items: list[T]
    total: int


@dataclass(frozen=True, slots=True)
class ThresholdInput:
    value: Any  # a number (> 0)
    type: Any  # "NUMBER" | "PERCENT" (ThresholdType)


# ---- checks ---------------------------------------------------------------------------------------------

def check_url(url: Any) -> str:
    validation.text(url, "url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in url):
        raise BadInput("url must be an absolute http or https URL")
    return str(url)


def check_headers(headers: Any) -> dict[str, str]:
    out = validation.string_map(headers, "customHeaders")
    if len(out) > MAX_HEADERS:
        raise BadInput(f"customHeaders may hold at most {MAX_HEADERS} headers")
    for name, value in out.items():
        if not name or not all(33 <= ord(c) <= 126 and c not in "()<>@,;:\\\"/[]?={}" for c in name):
            raise BadInput(f"customHeaders: {name!r} is not a valid header name")
        if any(c in value for c in "\r\n\x00"):
            raise BadInput(f"customHeaders: the value of {name!r} must not contain line breaks")
    return out


def check_secret(secret: Any) -> str:
    """A given signing secret: "whsec_" + base64 of at least 24 bytes."""
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        raise BadInput(f"signingSecret must be \"{SECRET_PREFIX}\" followed by base64")
    try:
        raw = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise BadInput(f"signingSecret must be \"{SECRET_PREFIX}\" followed by base64") from None
    if len(raw) < MIN_SECRET_BYTES:
        raise BadInput(f"signingSecret must encode at least {MIN_SECRET_BYTES} bytes")
    return secret


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a signing secret (its base64-decoded bytes)."""
    return base64.b64decode(secret[len(SECRET_PREFIX):])


def check_thresholds(thresholds: Any) -> tuple[Threshold, ...]:
    if not isinstance(thresholds, Sequence) or isinstance(thresholds, str):
        raise BadInput("thresholds must be a list")
    if not 1 <= len(thresholds) <= MAX_THRESHOLDS:
        raise BadInput(f"a rule has 1 to {MAX_THRESHOLDS} thresholds")
    out: list[Threshold] = []
    seen: set[tuple[ThresholdType, Decimal]] = set()
    for i, t in enumerate(thresholds):
        kind, raw = (t.type, t.value) if isinstance(t, ThresholdInput | Threshold) else (None, None)
        if isinstance(t, dict):
            kind, raw = t.get("type"), t.get("value")
        try:
            typ = ThresholdType(str(getattr(kind, "value", kind)).upper())
        except ValueError:
            raise BadInput(f"threshold {i}: type must be NUMBER or PERCENT") from None
        if isinstance(raw, bool) or not isinstance(raw, int | float | Decimal):
            raise BadInput(f"threshold {i}: value must be a number")
        value = validation.amount(raw, f"threshold {i}: value")
        if value <= 0:
            raise BadInput(f"threshold {i}: value must be greater than 0")
        key = (typ, value.normalize())
        if key in seen:
            raise BadInput(f"threshold {i}: {typ.value} {repo.threshold_text(value)} is given twice")
        seen.add(key)
        out.append(Threshold(value, typ))
    return tuple(out)


def _check_name(name: Any, what: str) -> str:
    return validation.text(name, what, max_len=validation.MAX_TEXT)


# ---- channels -------------------------------------------------------------------------------------------

async def create_channel(rt: Runtime, name: str, url: str, custom_headers: Any = None,
                         signing_secret: str | None = None, disabled: bool = False) -> NotificationChannel:
    name = _check_name(name, "channel name")
    url = check_url(url)
    headers = check_headers(custom_headers)
    secret = check_secret(signing_secret) if signing_secret is not None else new_secret()
    now = rt.now()
    ch = NotificationChannel(id=new_id(), type=WEBHOOK, name=name, url=url, custom_headers=headers,
                             signing_secret=secret, disabled=bool(disabled), created_at=now, updated_at=now,
                             deleted_at=None)
    async with rt.db.transaction() as s:
        await repo.insert_channel(s, ch)
    _wake(rt)
    return ch


async def update_channel(rt: Runtime, channel_id: str, name: str, url: str, custom_headers: Any = None,
                         signing_secret: str | None = None, disabled: bool = False) -> NotificationChannel:
    """Replace a live channel's fields; an absent signing secret keeps the current one."""
    validation.lookup(channel_id, "channel id")
    name = _check_name(name, "channel name")
    url = check_url(url)
    headers = check_headers(custom_headers)
    secret = check_secret(signing_secret) if signing_secret is not None else None
    async with rt.db.transaction() as s:
        ch = await repo.get_channel(s, channel_id, lock=True)
        if ch is None or ch.deleted_at is not None:
            raise NotFound(f"notification channel {channel_id!r} not found")
        ch = replace(ch, name=name, url=url, custom_headers=headers, signing_secret=secret or ch.signing_secret,
                     disabled=bool(disabled), updated_at=rt.now())
        await repo.save_channel(s, ch)
    _wake(rt)
    return ch


async def delete_channel(rt: Runtime, channel_id: str) -> None:
    """Soft-delete a channel; CONFLICT while an enabled rule sends to it."""
    validation.lookup(channel_id, "channel id")
    async with rt.db.transaction() as s:
        ch = await repo.get_channel(s, channel_id, lock=True)
        if ch is None or ch.deleted_at is not None:
            raise NotFound(f"notification channel {channel_id!r} not found")
        users = await repo.enabled_rules_using(s, channel_id)
        if users:
            raise Conflict(f"notification channel {channel_id!r} is used by enabled rule(s): {', '.join(users)}",
                           conflicting_entity_id=users[0])
        now = rt.now()
        await repo.save_channel(s, replace(ch, deleted_at=now, updated_at=now))


async def get_channel(rt: Runtime, channel_id: str) -> NotificationChannel | None:
    """A channel by id (a deleted one too, with deleted_at set)."""
    validation.lookup(channel_id, "channel id")
    async with rt.db.read() as s:
        return await repo.get_channel(s, channel_id)


async def channels_by_ids(rt: Runtime, ids: Sequence[str]) -> dict[str, NotificationChannel]:
    """Channels (deleted ones too) by id, for rules' and deliveries' channels."""
    validation.lookups(ids, "channel id")
    async with rt.db.read() as s:
        return await repo.channels_by_ids(s, ids)


async def list_channels(rt: Runtime, include_deleted: bool = False, include_disabled: bool = True,
                        limit: int = MAX_LIST, offset: int = 0) -> Paged[NotificationChannel]:
    """Channels in creation order."""
    validation.page(limit, offset)
    async with rt.db.read() as s:
        items, total = await repo.list_channels(s, include_deleted, include_disabled, limit, offset)
    return Paged(items, total)


# ---- rules ----------------------------------------------------------------------------------------------

async def _rule_refs(rt: Runtime, s: Any, features: Sequence[str] | None,
                     channels: Sequence[str]) -> tuple[tuple[str, ...] | None, tuple[str, ...]]:
    """Feature ids (from ids or keys of live metered features) and channel ids, checked (NOT_FOUND)."""
    feature_ids: tuple[str, ...] | None = None
    if features is not None:
        if isinstance(features, str):
            raise BadInput("features must be a list")
        validation.lookups(features, "feature id or key")
        found: list[str] = []
        for ref in dict.fromkeys(features):
            f = await feature_repo.get_feature(s, ref)
            if f is None:
                raise NotFound(f"feature {ref!r} not found")
            if not f.meter_slug:
                raise BadInput(f"feature {f.key!r} has no meter: a balance threshold rule needs metered features")
            found.append(f.id)
        feature_ids = tuple(dict.fromkeys(found))
    if isinstance(channels, str) or not channels:
        raise BadInput("a rule needs at least one channel")
    validation.lookups(channels, "channel id")
    chans = await repo.channels_by_ids(s, channels)
    for cid in channels:
        ch = chans.get(cid)
        if ch is None or ch.deleted_at is not None:
            raise NotFound(f"notification channel {cid!r} not found")
    return feature_ids, tuple(dict.fromkeys(channels))


async def create_rule(rt: Runtime, name: str, thresholds: Sequence[Any], channels: Sequence[str],
                      features: Sequence[str] | None = None, disabled: bool = False) -> NotificationRule:
    """A balance-threshold rule. Once it is enabled, the entitlements it covers are evaluated at once."""
    name = _check_name(name, "rule name")
    ts = check_thresholds(thresholds)
    now = rt.now()
    async with rt.db.transaction() as s:
        feature_ids, channel_ids = await _rule_refs(rt, s, features, channels)
        rule = NotificationRule(id=new_id(), type=BALANCE_THRESHOLD, name=name, thresholds=ts,
                                feature_ids=feature_ids, channel_ids=channel_ids, disabled=bool(disabled),
                                created_at=now, updated_at=now, deleted_at=None)
        await repo.insert_rule(s, rule)
        if not rule.disabled:
            await repo.mark_covered_pending(s, feature_ids)
    _wake(rt)
    return rule


async def update_rule(rt: Runtime, rule_id: str, name: str, thresholds: Sequence[Any], channels: Sequence[str],
                      features: Sequence[str] | None = None, disabled: bool = False) -> NotificationRule:
    """Replace a live rule's fields. Thresholds already reached in the current period stay reached."""
    validation.lookup(rule_id, "rule id")
    name = _check_name(name, "rule name")
    ts = check_thresholds(thresholds)
    now = rt.now()
    async with rt.db.transaction() as s:
        rule = await repo.get_rule(s, rule_id, lock=True)
        if rule is None or rule.deleted_at is not None:
            raise NotFound(f"notification rule {rule_id!r} not found")
        feature_ids, channel_ids = await _rule_refs(rt, s, features, channels)
        rule = replace(rule, name=name, thresholds=ts, feature_ids=feature_ids, channel_ids=channel_ids,
                       disabled=bool(disabled), updated_at=now)
        await repo.save_rule(s, rule)
        if not rule.disabled:
            await repo.mark_covered_pending(s, feature_ids)
    _wake(rt)
    return rule


async def delete_rule(rt: Runtime, rule_id: str) -> None:
    validation.lookup(rule_id, "rule id")
    async with rt.db.transaction() as s:
        rule = await repo.get_rule(s, rule_id, lock=True)
        if rule is None or rule.deleted_at is not None:
            raise NotFound(f"notification rule {rule_id!r} not found")
        now = rt.now()
        await repo.save_rule(s, replace(rule, deleted_at=now, updated_at=now))


async def get_rule(rt: Runtime, rule_id: str) -> NotificationRule | None:
    """A rule by id (a deleted one too, with deleted_at set)."""
    validation.lookup(rule_id, "rule id")
    async with rt.db.read() as s:
        return await repo.get_rule(s, rule_id)


async def rules_by_ids(rt: Runtime, ids: Sequence[str]) -> dict[str, NotificationRule]:
    validation.lookups(ids, "rule id")
    async with rt.db.read() as s:
        return await repo.rules_by_ids(s, ids)


async def list_rules(rt: Runtime, include_deleted: bool = False, include_disabled: bool = True,
                     features: Sequence[str] | None = None, channels: Sequence[str] | None = None,
                     limit: int = MAX_LIST, offset: int = 0) -> Paged[NotificationRule]:
    """Rules in creation order; `features` (ids or keys): rules covering any of them; `channels`: rules sending
    to any of them. A feature naming nothing matches no feature-specific rule."""
    validation.page(limit, offset)
    validation.lookups(features or (), "feature id or key")
    validation.lookups(channels or (), "channel id")
    async with rt.db.read() as s:
        feature_ids: list[str] | None = None
        if features is not None:
            feature_ids = []
            for ref in features:
                f = await feature_repo.get_feature(s, ref, include_archived_id=True)
                if f is not None:
                    feature_ids.append(f.id)
        items, total = await repo.list_rules(s, include_deleted, include_disabled, feature_ids, channels, limit,
                                             offset)
    return Paged(items, total)


# ---- events ---------------------------------------------------------------------------------------------

async def get_event(rt: Runtime, event_id: str) -> NotificationEvent | None:
    validation.lookup(event_id, "event id")
    async with rt.db.read() as s:
        return await repo.get_event(s, event_id)


async def list_events(rt: Runtime, *, subjects: Sequence[str] | None = None, features: Sequence[str] | None = None,
                      rules: Sequence[str] | None = None, channels: Sequence[str] | None = None,
                      from_: datetime | None = None, to: datetime | None = None, limit: int = 100,
                      offset: int = 0) -> Paged[NotificationEvent]:
    """Events, newest first: of any of `subjects` (keys), `features` (ids or keys), `rules`, `channels`;
    created in [from_, to)."""
    validation.page(limit, offset)
    for values, what in ((subjects, "subject key"), (features, "feature id or key"), (rules, "rule id"),
                         (channels, "channel id")):
        validation.lookups(values or (), what)
    if from_ is not None and to is not None and to <= from_:
        raise BadInput("to must be after from")
    async with rt.db.read() as s:
        items, total = await repo.list_events(s, subject_keys=subjects, feature_keys=features, rule_ids=rules,
                                              channel_ids=channels, from_=from_, to=to, limit=limit, offset=offset)
    return Paged(items, total)


async def test_rule(rt: Runtime, rule_id: str) -> NotificationEvent:
    """A sample event of the rule (annotations {"test": true}), sent to its enabled channels now."""
    validation.lookup(rule_id, "rule id")
    event = await thresholds.test_event(rt, rule_id)
    _wake(rt)
    return event


def _wake(rt: Runtime) -> None:
    """Tell this process's notification worker to look for work now (a no-op without one)."""
    wake = rt.extras.get("notifications_wake")
    if callable(wake):
        wake()
