"""Entitlement values and access checks, through the value cache (docs/semantics.md §6.3, §8).

Cache layout (one group per subject, see services/invalidation.py):
- ("s:<subject>", "a:<ref>")        the access answer for an id or feature key, now
- ("s:<subject>", "a:<ref>@<t>")    the same at a past instant t (kept until a write)
- ("s:<subject>", "e:<id>")         the value of one entitlement, now
- ("s:<subject>", "e:<id>@<t>")     the same at a past instant
A "now" entry carries the instant it stops being true (the engine's next change, or
the next minute holding stored future usage); it is a miss from then on, even if the
cache still holds it. The cache token is read before the database, so a write that
commits in between makes the later put a no-op (the adapter's guard).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

import orjson

from creditgate.adapters.sql import entitlements as ent_repo
from creditgate.adapters.sql.db import Session
from creditgate.domain import Value, ceil_m, floor_m, next_change, value_at
from creditgate.records import AccessReason, Entitlement, EntitlementType
from creditgate.services import validation
from creditgate.services.balances import Bundle, Op, load_bundles, run_ops
from creditgate.services.cache import Hit, PutItem, subject_group
from creditgate.services.entitlements import resolve
from creditgate.services.runtime import Runtime
from creditgate.services.snapshots import persist_snapshots, snapshot_wishes

MINUTE = timedelta(minutes=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_METERED = EntitlementType.METERED  # compared per item on read paths: a global, not an enum lookup


@dataclass(frozen=True, slots=True)
class EntValue:
    has_access: bool
    balance: Decimal | None = None
    usage: Decimal | None = None
    overage: Decimal | None = None
    config: Any = None


class Access(NamedTuple):
    """One answer of check_access. A NamedTuple: a checkAccess batch builds one per pair, and a frozen
    dataclass costs about 1 µs more to build (docs/benchmarks.md, Access checks, round two)."""

    subject_key: str
    feature_key: str
    entitlement_id: str | None
    type: str | None
    value: EntValue | None

    @property
    def has_access(self) -> bool:
        return self.value is not None and self.value.has_access

    @property
    def reason(self) -> AccessReason:
        v = self.value
        if v is None:
            return AccessReason.NO_ENTITLEMENT
        if self.type != _METERED or (v.balance is not None and v.balance > 0):
            return AccessReason.GRANTED
        return AccessReason.SOFT_LIMIT if v.has_access else AccessReason.NO_BALANCE


# A cache entry: (entitlement id, type, value); all None when there is no entitlement.
Entry = tuple[str | None, str | None, EntValue | None]
_NO_ENTRY: Entry = (None, None, None)


def _dec(x: Decimal | None) -> str | None:
    return None if x is None else str(x)


def _undec(x: str | None) -> Decimal | None:
    return None if x is None else Decimal(x)


def encode(expires: datetime | None, ent_id: str | None, typ: str | None, v: EntValue | None) -> bytes:
    exp = None if expires is None else int(expires.timestamp() * 1_000_000)
    if v is None:
        return orjson.dumps([exp, None])
    return orjson.dumps([exp, ent_id, typ, v.has_access, _dec(v.balance), _dec(v.usage), _dec(v.overage), v.config])


def _micros(t: datetime) -> int:
    return int(t.timestamp() * 1_000_000)


# Decoded entries by their bytes. Cached reads decode the same entries over and over (orjson, three
# Decimals and an EntValue: about 3 µs each, most of a cached check's own work); an entry's bytes
# decide its meaning, so one decoding serves them all. Entries with a `config` (mutable JSON) are not
# kept. Bounded: emptied when full.
_DECODED: dict[bytes, tuple[int | None, Entry]] = {}
DECODED_MAX = 10_000


def _decode(raw: bytes) -> tuple[int | None, Entry]:
    """(expiry in µs since the epoch or None, entry)."""
    got = _DECODED.get(raw)
    if got is not None:
        return got
    data = orjson.loads(raw)
    if data[1] is None:
        got = (data[0], _NO_ENTRY)
    else:
        exp, ent_id, typ, has, bal, usage, ovg, cfg = data
        got = (exp, (ent_id, typ, EntValue(has, _undec(bal), _undec(usage), _undec(ovg), cfg)))
        if cfg is not None:
            return got
    if len(_DECODED) >= DECODED_MAX:
        _DECODED.clear()
    _DECODED[raw] = got
    return got


def decode(raw: bytes, now: datetime | int) -> Entry | None:
    """(entitlement id, type, value), or None when the entry has expired; `now` also as µs (_micros)."""
    exp, entry = _decode(raw)
    if exp is not None and (now if isinstance(now, int) else _micros(now)) >= exp:
        return None
    return entry


def _expiry(raw: bytes) -> datetime | None:
    exp = _decode(raw)[0]
    return None if exp is None else EPOCH + timedelta(microseconds=exp)


def _suffix(at: datetime | None) -> str:
    return "" if at is None else "@" + at.isoformat()


def _cacheable(at: datetime | None, now: datetime) -> bool:
    return at is None or at < now


@dataclass(slots=True)
class Computed:
    value: EntValue
    expires: datetime | None  # for "now" reads: when it stops being true with no write


def _static_value(ent: Entitlement) -> EntValue:
    return EntValue(True, config=ent.config if ent.type == EntitlementType.STATIC else None)


def _from_engine(v: Value) -> EntValue:
    return EntValue(v.has_access, v.balance, v.usage, v.overage)


async def compute(rt: Runtime, items: Sequence[tuple[Entitlement, datetime]], *,
                  persist: bool = True) -> list[Computed]:
    """Values of entitlements at instants, from the database (a fixed number of statements)."""
    if not any(ent.type == _METERED for ent, _ in items):
        return _compute_static(items)
    async with rt.db.read() as s:
        out, wishes = await _compute_in(rt, s, items)
    if persist and wishes:
        await persist_snapshots(rt, wishes)
    return out


def _compute_static(items: Sequence[tuple[Entitlement, datetime]]) -> list[Computed]:
    return [Computed(_static_value(ent), None) for ent, _ in items]


async def _compute_in(rt: Runtime, s: Session, items: Sequence[tuple[Entitlement, datetime]]
                      ) -> tuple[list[Computed], list[tuple[str, datetime]]]:
    """`compute` in an open read session: the values, and the snapshots worth storing."""
    now = rt.now()
    out: list[Computed | None] = [None] * len(items)
    metered: list[int] = []
    for k, (ent, _t) in enumerate(items):
        if ent.type == _METERED:
            metered.append(k)
        else:
            out[k] = Computed(_static_value(ent), None)
    wishes: list[tuple[str, datetime]] = []
    if metered:
        limits: dict[str, datetime] | None = None
        if rt.settings.snapshots:
            limits = {}
            for k in metered:
                ent, t = items[k]
                limits[ent.id] = min(limits.get(ent.id, ceil_m(t)), ceil_m(t))
        ents = [items[k][0] for k in metered]
        bundles = await load_bundles(s, ents, limits)
        ops: list[tuple[Bundle, Op[Any]]] = []
        for k in metered:
            ent, t = items[k]
            b = bundles[ent.id]
            ops.append((b, _value_op(b, t)))
        outcomes = await run_ops(s, ops)
        for k, o in zip(metered, outcomes, strict=True):
            ent, t = items[k]
            b = bundles[ent.id]
            assert b.metered is not None
            expires = next_change(b.metered, b.engine_grants, t)
            bound = o.next_minute if o.probed else floor_m(t) + MINUTE
            if bound is not None and (expires is None or bound < expires):
                expires = bound
            out[k] = Computed(_from_engine(o.result), expires)
        if limits:
            wishes = [(i, at) for i, at in snapshot_wishes(bundles.values(), now) if limits[i] >= at]
    return [c for c in out if c is not None], wishes


def _value_op(b: Bundle, t: datetime) -> Op[Value]:
    assert b.metered is not None
    metered, grants, snap = b.metered, b.engine_grants, b.snapshot
    return lambda usage: value_at(metered, grants, usage, t, start=snap)


async def _put(rt: Runtime, puts: list[PutItem]) -> None:
    if puts and rt.cache is not None:
        with contextlib.suppress(Exception):  # a cache that is down only makes reads slower
            await rt.cache.put_many(puts)


async def _get(rt: Runtime, keys: list[tuple[str, str]]) -> list[Hit | None]:
    if rt.cache is None or not keys:
        return [None] * len(keys)
    try:
        return list(await rt.cache.get_many(keys))
    except Exception:
        return [None] * len(keys)


def _ttl(expires: datetime | None, now: datetime) -> float | bool | None:
    """Seconds to keep an entry; None = forever; False = do not cache."""
    if expires is None:
        return None
    left = (expires - now).total_seconds()
    return left if left > 0 else False


# What a miss loads: the entry, and for "now" reads the instant it stops being true (None: never).
Loaded = tuple[Entry, datetime | None]


async def _read_through(rt: Runtime, now: datetime, keys: Sequence[tuple[str, str] | None],
                        load: Callable[[list[int]], Awaitable[list[Loaded]]], *,
                        need_value: bool = False, expiries: list[datetime | None] | None = None) -> list[Entry]:
    """Entries for `keys` (None: not cached) from the value cache, the misses (by index) from `load`.
    A loaded entry is put back with the token read before `load` ran, so a write committed meanwhile
    keeps it out (the adapter's guard); `need_value`: an entry without a value is a miss. `expiries`
    (same length as `keys`) receives the instant each "now" entry stops being true."""
    asked = [k for k in keys if k is not None]
    got_hits = await _get(rt, asked)
    if len(asked) != len(keys):  # hits in step with keys (None where not cached)
        it = iter(got_hits)
        got_hits = [next(it) if key is not None else None for key in keys]
    now_us = _micros(now)
    memo = _DECODED.get
    out: list[Entry] = [_NO_ENTRY] * len(keys)
    missing: list[int] = []
    missing_hits: list[Hit | None] = []
    got: Entry | None
    for i, hit in enumerate(got_hits):
        raw = hit.value if hit is not None else None
        if raw is None:
            got = None
        else:  # decode(raw, now_us), the memo inline (once per pair of a batch)
            exp, got = memo(raw) or _decode(raw)
            if exp is not None and now_us >= exp:
                got = None
        if got is None or (need_value and got[2] is None):
            missing.append(i)
            missing_hits.append(hit)
        else:
            out[i] = got
            if expiries is not None and raw is not None:
                expiries[i] = _expiry(raw)
    if missing:
        puts: list[PutItem] = []
        for i, hit, (entry, expires) in zip(missing, missing_hits, await load(missing), strict=True):
            out[i] = entry
            if expiries is not None:
                expiries[i] = expires
            ttl = _ttl(expires, now)
            key = keys[i]
            if hit is not None and key is not None and ttl is not False:
                puts.append((key[0], key[1], encode(expires, *entry), hit.token,
                             ttl if isinstance(ttl, float) else None))
        await _put(rt, puts)
    return out


async def check_access(rt: Runtime, checks: Sequence[tuple[str, str]], at: datetime | None = None) -> list[Access]:
    """Answers for (subject, entitlement id or feature key) pairs at one instant, in input order."""
    return await _check_access(rt, checks, at, rt.now(), None)


async def access_now_until(rt: Runtime, checks: Sequence[tuple[str, str]]
                           ) -> tuple[datetime, list[tuple[Access, datetime | None]]]:
    """`check_access` now (through the cache), with the instant it is for and, per answer, the instant
    it stops being true with no write (None: never). Live updates' read (services/live.py)."""
    now = rt.now()
    unique = list(dict.fromkeys(checks))
    expiries: list[datetime | None] = [None] * len(unique)
    answers = await _check_access(rt, unique, None, now, expiries)
    until = dict(zip(unique, expiries, strict=True))
    return now, [(a, until[(a.subject_key, a.feature_key)]) for a in answers]


async def _check_access(rt: Runtime, checks: Sequence[tuple[str, str]], at: datetime | None, now: datetime,
                        expiries: list[datetime | None] | None) -> list[Access]:
    """check_access; `expiries` (with `checks` free of duplicates) receives each answer's end."""
    unique = list(dict.fromkeys(checks))
    refs: set[str] = set()  # a batch usually asks for one feature key: check it once
    for sub, ref in unique:  # (the first bad pair of `checks` is the first bad one of `unique`)
        validation.lookup(sub, "subject key")
        if ref not in refs:
            validation.lookup(ref, "entitlement id or feature key")
            refs.add(ref)
    t = now if at is None else at
    suffix = _suffix(at)
    keys: list[tuple[str, str] | None] = (
        [(subject_group(sub), "a:" + ref + suffix) for sub, ref in unique] if _cacheable(at, now)
        else [None] * len(unique))

    async def load(missing: list[int]) -> list[Loaded]:
        pairs = [unique[i] for i in missing]
        async with rt.db.read() as s:  # one session (one connection checkout) for the whole read
            candidates = await ent_repo.by_refs(s, [p[0] for p in pairs], [p[1] for p in pairs])
            resolved = [resolve(candidates, sub, ref, t) for sub, ref in pairs]
            done, wishes = await _compute_in(rt, s, [(e, t) for e in resolved if e is not None])
        if wishes:
            await persist_snapshots(rt, wishes)
        computed = iter(done)
        out: list[Loaded] = []
        for ent in resolved:
            if ent is None:
                out.append((_NO_ENTRY, None))
            else:
                c = next(computed)
                out.append(((ent.id, ent.type, c.value), c.expires if at is None else None))
        return out

    entries = await _read_through(rt, now, keys, load, expiries=expiries)
    answers = [Access(sub, ref, eid, typ, v) for (sub, ref), (eid, typ, v) in zip(unique, entries, strict=True)]
    if len(unique) == len(checks):  # no pair asked twice: `unique` is `checks`
        return answers
    found = dict(zip(unique, answers, strict=True))
    return [found[c] for c in checks]


async def entitlement_value(rt: Runtime, subject_key: str, ref: str, at: datetime | None = None) -> Access:
    return (await check_access(rt, [(subject_key, ref)], at))[0]


async def values_of(rt: Runtime, items: Sequence[tuple[Entitlement, datetime | None]]) -> list[EntValue]:
    """Values of known entitlements (the `Entitlement.value` field), batched."""
    now = rt.now()
    unique = list(dict.fromkeys((e.id, at) for e, at in items))
    by_id = {e.id: e for e, _ in items}
    keys = [(subject_group(by_id[i].subject_key), "e:" + i + _suffix(at)) if _cacheable(at, now) else None
            for i, at in unique]

    async def load(missing: list[int]) -> list[Loaded]:
        asked = [(by_id[unique[i][0]], unique[i][1]) for i in missing]
        computed = await compute(rt, [(ent, at or now) for ent, at in asked])
        return [((ent.id, ent.type, c.value), c.expires if at is None else None)
                for (ent, at), c in zip(asked, computed, strict=True)]

    entries = await _read_through(rt, now, keys, load, need_value=True)
    found: dict[tuple[str, datetime | None], EntValue] = {}
    for u, (_, _, v) in zip(unique, entries, strict=True):
        assert v is not None  # need_value
        found[u] = v
    return [found[(e.id, at)] for e, at in items]
