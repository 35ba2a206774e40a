"""Event ingest (CloudEvents, deduplicated by (source, id)) and the event listing (docs/semantics.md §1).

A batch is checked as a whole in one pass (the usual batch: every event well formed), its text rule
once over the whole batch; anything unusual is checked again event by event, in order, so that the
first problem is the one reported. Aggregates are computed per (meter, subject, group, minute) in
Python (exact decimals) and stored with the events in one transaction (adapters/sql/events.py)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation, localcontext
from typing import Any

import orjson

from creditgate import metrics
from creditgate.adapters.sql import events as repo
from creditgate.adapters.sql import meters as meter_repo
from creditgate.adapters.sql.events import MinuteDelta, MinuteValue, NewEvents
from creditgate.amounts import LIMIT, PRECISION, SCALE, fit_stored
from creditgate.domain import floor_m
from creditgate.domain.errors import BadInput
from creditgate.records import Aggregation, Event, EventInput, IngestResult, Meter
from creditgate.services import invalidation, validation
from creditgate.services.invalidation import UsageTouch
from creditgate.services.jsonpath import Path, as_text, compile_path, is_missing, lookup
from creditgate.services.runtime import Runtime
from creditgate.timefmt import parse_rfc3339

MAX_BATCH = 10_000  # events per ingest call, whichever API
MAX_LIST = 1000
_COUNT, _UNIQUE_COUNT = Aggregation.COUNT, Aggregation.UNIQUE_COUNT  # compared per event: globals, not enum lookups
_MAX_TEXT = validation.MAX_TEXT
_ZERO = Decimal(0)

Getter = Callable[[dict[str, Any]], Any]


def _getter(path: Path) -> Getter:
    """`lookup` for one path; a plain dict read for the usual `$.name` (data is always an object)."""
    if len(path) == 1 and isinstance(path[0], str):
        name, missing = path[0], lookup({}, path)
        return lambda data: data.get(name, missing)
    return lambda data: lookup(data, path)


@dataclass(frozen=True, slots=True)
class _MeterReader:
    """A meter compiled for ingest: reads its value and groups from event data."""

    meter: Meter
    value: Getter | None  # None: COUNT (no value read)
    unique: bool  # UNIQUE_COUNT: the value is kept as text
    groups: tuple[tuple[str, Getter], ...]


def _reader(meter: Meter) -> _MeterReader:
    value = compile_path(meter.value_property) if meter.value_property and meter.aggregation != _COUNT else None
    groups = tuple((name, _getter(compile_path(path))) for name, path in sorted(meter.group_by.items()))
    return _MeterReader(meter, _getter(value) if value is not None else None, meter.aggregation == _UNIQUE_COUNT,
                        groups)


# ---------------------------------------------------------------------------------------------------
# Structural checks (§1.1, §1.2, §0.4)

def _required(index: int, name: str, value: Any) -> str:
    if not isinstance(value, str) or not value or value.isspace():
        raise BadInput(f"event {index}: {name} is required (a non-empty string)")
    if len(value) > _MAX_TEXT:
        raise BadInput(f"event {index}: {name} must be at most {_MAX_TEXT} characters")
    return value


def _check_one(index: int, e: EventInput, now: datetime) -> tuple[str, str, str, str, datetime, dict[str, Any]]:
    """One event, checked in the order the rules are listed: (id, source, type, subject, time, data), or
    BadInput naming its index."""
    event_id = _required(index, "id", e.id)
    source = _required(index, "source", e.source)
    type_ = _required(index, "type", e.type)
    subject = _required(index, "subject", e.subject)
    if (e.specversion if e.specversion is not None else "1.0") != "1.0":
        raise BadInput(f"event {index}: specversion must be \"1.0\"")
    try:
        time = parse_rfc3339(e.time) if e.time is not None else now
    except ValueError:
        raise BadInput(f"event {index}: time is not an RFC 3339 date-time: {e.time!r}") from None
    data = e.data if e.data is not None else {}
    if not isinstance(data, dict):
        raise BadInput(f"event {index}: data must be a JSON object")
    text = event_id + source + type_ + subject
    try:
        data_json = orjson.dumps(data).decode()
    except TypeError:  # integers beyond 64 bits, or text that is not valid Unicode
        data_json = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        text += data_json
    problem = validation.unstorable(text) if "\x00" in text or not text.isascii() else None
    if problem is None and "\\u0000" in data_json:
        problem = validation.json_problem(data)
    if problem is not None:
        raise BadInput(f"event {index}: text {problem}")
    return event_id, source, type_, subject, time, data


def _empty(now: datetime) -> NewEvents:
    return NewEvents([], [], [], [], [], [], [], now)


def _checked_slowly(events: Sequence[EventInput], now: datetime) -> NewEvents:
    """Event by event, in order: the first problem is the one reported."""
    out = _empty(now)
    seen: set[tuple[str, str]] = set()
    for i, e in enumerate(events):
        event_id, source, type_, subject, time, data = _check_one(i, e, now)
        if (source, event_id) not in seen:
            seen.add((source, event_id))
            _append(out, event_id, source, type_, subject, time, data)
    return out


def _append(out: NewEvents, event_id: str, source: str, type_: str, subject: str, time: datetime,
            data: dict[str, Any]) -> None:
    out.ids.append(event_id)
    out.sources.append(source)
    out.types.append(type_)
    out.subjects.append(subject)
    out.times.append(time)
    out.datas.append(data)


def _plain_texts(column: list[Any]) -> bool:
    """Every value a non-blank string of at most MAX_TEXT characters (column-wise, in C loops)."""
    return set(map(type, column)) == {str} and all(column) and not any(map(str.isspace, column)) \
        and max(map(len, column)) <= _MAX_TEXT


def _time(value: Any, now: datetime) -> datetime:
    """parse_rfc3339 (ValueError likewise), with the usual "...Z" text read without a conversion."""
    if value is None:
        return now
    if type(value) is str and value[-1:] == "Z":
        parsed = _fromisoformat(value)  # as parse_rfc3339 reads it; "Z" gives UTC itself
        if parsed.tzinfo is UTC:
            return parsed
    return parse_rfc3339(value)


_fromisoformat = datetime.fromisoformat


def _checked_quickly(events: Sequence[EventInput], now: datetime) -> NewEvents | None:
    """The usual batch, column by column, its text rule checked once for all of it; None when
    anything at all looks unusual (then _checked_slowly decides)."""
    if not events:
        return _empty(now)
    ids, sources = [e.id for e in events], [e.source for e in events]
    types, subjects = [e.type for e in events], [e.subject for e in events]
    if not (_plain_texts(ids) and _plain_texts(sources) and _plain_texts(types) and _plain_texts(subjects)):
        return None
    if any(e.specversion is not None and e.specversion != "1.0" for e in events):
        return None
    try:
        times = [_time(e.time, now) for e in events]
    except ValueError:
        return None
    datas = [{} if e.data is None else e.data for e in events]
    if set(map(type, datas)) != {dict}:
        return None
    if validation.unstorable("".join(ids) + "".join(sources) + "".join(types) + "".join(subjects)) is not None:
        return None
    try:  # orjson refuses lone surrogates (and integers beyond 64 bits: checked slowly, then stored)
        if b"\\u0000" in orjson.dumps(datas):  # NUL, or perhaps a literal backslash-u0000: look closely
            return None
    except TypeError:
        return None
    keys = list(zip(sources, ids, strict=True))
    if len(set(keys)) == len(keys):  # the usual batch: no (source, id) twice
        return NewEvents(ids, sources, types, subjects, times, datas, [], now)
    out, seen = _empty(now), set()
    for key, event_id, source, type_, subject, time, data in zip(keys, ids, sources, types, subjects, times, datas,
                                                                 strict=True):
        if key not in seen:
            seen.add(key)
            _append(out, event_id, source, type_, subject, time, data)
    return out


def check_batch(events: Sequence[EventInput], now: datetime) -> NewEvents:
    """The distinct events of a structurally valid batch, or BadInput naming the first bad event."""
    return _checked_quickly(events, now) or _checked_slowly(events, now)


# ---------------------------------------------------------------------------------------------------
# Feeding meters (§1.7, §1.8)

def numeric_value(raw: Any) -> Decimal:
    """A meter value: a JSON number or a numeric string; ValueError otherwise."""
    if type(raw) is int:  # the common case first (bool is not an int here)
        if -_LIMIT_INT < raw < _LIMIT_INT:
            return Decimal(raw)
        raise ValueError("is out of range")
    if type(raw) is float and -_LIMIT_FLOAT < raw < _LIMIT_FLOAT:  # finite and in range
        value = Decimal(repr(raw))
        if value.as_tuple().exponent >= -SCALE:  # type: ignore[operator]
            return value
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ValueError("must be a number or a numeric string")
    try:
        value = Decimal(repr(raw)) if isinstance(raw, float) else Decimal(str(raw).strip())
    except InvalidOperation:
        raise ValueError("must be a number or a numeric string") from None
    if not value.is_finite():
        raise ValueError("must be a finite number")
    return fit_stored(value)


_LIMIT_INT = int(LIMIT)
_LIMIT_FLOAT = float(LIMIT)  # 1e26 is a float exactly as repr writes it, so the bounds agree

_Groups = tuple[str, dict[str, str | None]]  # the canonical group key (JSON, sorted names) and the groups
_NO_GROUPS: _Groups = ("{}", {})
_HASHABLE = frozenset({int, float, str})


@dataclass(slots=True)
class _Fed:
    """What the events of one type give one of its meters, column by column (`at`: the events'
    positions in the batch): their groups and values (Decimal; text for UNIQUE_COUNT; None for COUNT)."""

    meter_id: str
    unique: bool
    at: list[int]
    groups: list[_Groups]
    values: list[Decimal | str | None]


class _Feeder:
    """Reads the meters of a batch's event types, one meter over all the events of its type at a
    time; caches what equal inputs give within the batch."""

    def __init__(self, readers: dict[str, list[_MeterReader]]) -> None:
        self.readers = readers
        self.group_cache: dict[tuple[str, tuple[str | None, ...]], _Groups] = {}
        self.numbers: dict[tuple[type, Any], Decimal | str] = {}  # raw value -> Decimal, or why it is unusable

    def groups(self, reader: _MeterReader, datas: list[dict[str, Any]]) -> list[_Groups]:
        if not reader.groups:
            return [_NO_GROUPS] * len(datas)
        cache, meter_id, getters = self.group_cache, reader.meter.id, reader.groups
        out: list[_Groups] = []
        for data in datas:
            texts = tuple([as_text(get(data)) for _, get in getters])
            found = cache.get((meter_id, texts))
            if found is None:
                groups = {name: text for (name, _), text in zip(getters, texts, strict=True)}
                found = cache[(meter_id, texts)] = (orjson.dumps(groups, option=orjson.OPT_SORT_KEYS).decode(), groups)
            out.append(found)
        return out

    def number(self, raw: Any) -> Decimal | str:
        key = (type(raw), raw) if type(raw) in _HASHABLE else None
        found = self.numbers.get(key) if key is not None else None
        if found is None:
            try:
                found = numeric_value(raw)
            except ValueError as exc:
                found = str(exc)
            if key is not None:
                self.numbers[key] = found
        return found

    def values(self, reader: _MeterReader, at: list[int], datas: list[dict[str, Any]],
               problems: dict[int, list[str]]) -> list[Decimal | str | None]:
        """Each event's value for the meter; why it is unusable goes to `problems` (§1.7)."""
        get = reader.value
        if get is None:
            return [None] * len(datas)
        meter = reader.meter
        out: list[Decimal | str | None] = []
        for j, data in zip(at, datas, strict=True):
            raw = get(data)
            value: Decimal | str | None
            if raw is None or is_missing(raw):
                problems.setdefault(j, []).append(
                    f"meter {meter.slug}: value {meter.value_property} is missing or null")
                value = None
            elif reader.unique:
                if isinstance(raw, bool) or not isinstance(raw, int | float | str):
                    problems.setdefault(j, []).append(
                        f"meter {meter.slug}: value {meter.value_property} must be a string or number")
                    value = None
                else:
                    value = as_text(raw)
            else:
                value = self.number(raw)
                if type(value) is str:
                    problems.setdefault(j, []).append(f"meter {meter.slug}: value {meter.value_property} {value}")
                    value = None
            out.append(value)
        return out

    def feed(self, batch: NewEvents) -> tuple[list[_Fed], list[str | None]]:
        """What each meter gets, and each event's validation error: an event whose value is unusable
        for any meter of its type counts toward none of them (§1.7)."""
        types, datas = batch.types, batch.datas
        if len(set(types)) == 1:  # the usual batch: one type
            by_type = {types[0]: list(range(len(types)))}
        else:
            by_type = {}
            for j, t in enumerate(types):
                by_type.setdefault(t, []).append(j)
        fed: list[_Fed] = []
        problems: dict[int, list[str]] = {}
        for type_, at in by_type.items():
            readers = self.readers.get(type_)
            if not readers:
                continue
            mine = datas if len(at) == len(datas) else [datas[j] for j in at]
            for reader in readers:  # in meter order, so that the problems of an event are listed in that order
                fed.append(_Fed(reader.meter.id, reader.unique, at, self.groups(reader, mine),
                                self.values(reader, at, mine, problems)))
        errors: list[str | None] = [None] * len(types)
        for j, found in problems.items():
            errors[j] = "; ".join(found)
        return fed, errors


def _aggregate(fed: Sequence[_Fed], subjects: Sequence[str], minutes: Sequence[datetime],
               counts_toward: Sequence[bool]) -> tuple[list[MinuteDelta], list[MinuteValue]]:
    """Per (meter, subject, group, minute): count, exact sum, min, max, and the distinct texts, over
    the events that count toward their meters (`counts_toward`, by position in the batch)."""
    counts: dict[tuple[str, str, str, datetime], int] = {}
    numbers: dict[tuple[str, str, str, datetime], list[Decimal]] = {}
    groups_of: dict[tuple[str, str, str, datetime], dict[str, str | None]] = {}
    texts: dict[tuple[str, str, str, datetime, str], dict[str, str | None]] = {}
    for f in fed:
        meter_id, numeric = f.meter_id, not f.unique
        for j, (group_key, groups), value in zip(f.at, f.groups, f.values, strict=True):
            if not counts_toward[j]:
                continue
            key = (meter_id, subjects[j], group_key, minutes[j])
            n = counts.get(key)
            if n is None:
                counts[key] = 1
                groups_of[key] = groups
                numbers[key] = [value] if value is not None and numeric else []  # type: ignore[list-item]
            else:
                counts[key] = n + 1
                if value is not None and numeric:
                    numbers[key].append(value)  # type: ignore[arg-type]
            if value is not None and not numeric:
                texts.setdefault((*key, value), groups)  # type: ignore[arg-type]
    deltas: list[MinuteDelta] = []
    with localcontext() as ctx:
        ctx.prec = 2 * PRECISION  # exact: the sums of a batch fit well within this
        for key, count in counts.items():
            values = numbers[key]
            deltas.append(MinuteDelta(*key, groups_of[key], sum(values, _ZERO), count,
                                      float(min(values)) if values else None, float(max(values)) if values else None))
    return deltas, [MinuteValue(*key, groups) for key, groups in texts.items()]


def _touches(types: Sequence[str], subjects: Sequence[str], minutes: Sequence[datetime]) -> list[UsageTouch]:
    first: dict[tuple[str, str], datetime] = {}
    for key, minute in zip(zip(types, subjects, strict=True), minutes, strict=True):
        at = first.get(key)
        if at is None or minute < at:
            first[key] = minute
    return [UsageTouch(event_type=t, subject=s, first_minute=m) for (t, s), m in sorted(first.items())]


def _readers(meters: Sequence[Meter]) -> dict[str, list[_MeterReader]]:
    readers: dict[str, list[_MeterReader]] = {}
    for m in meters:
        readers.setdefault(m.event_type, []).append(_reader(m))
    return readers


async def ingest_events(rt: Runtime, events: Sequence[EventInput]) -> IngestResult:
    """Stores a batch: all or nothing for structural errors; duplicates of (source, id) skipped."""
    if len(events) > MAX_BATCH:
        raise BadInput(f"a batch may hold at most {MAX_BATCH} events")
    now = rt.now()
    batch = check_batch(events, now)
    if not batch.ids:
        return IngestResult(accepted=0, duplicates=0)
    minutes = [floor_m(t) for t in batch.times]
    async with rt.db.transaction() as s:
        feeder = _Feeder(_readers(await meter_repo.meters_for_types(s, sorted(set(batch.types)))))
        batch.errors = [None] * len(batch.ids)  # known once the meters are fed: set below where there are any
        storing = await repo.start_storing(s, batch)
        try:  # while the database stores the events: what the meters get, as if every event is new (the usual case)
            fed, errors = feeder.feed(batch)
            valid = [e is None for e in errors]
            deltas, values = _aggregate(fed, batch.subjects, minutes, valid)
            types, subjects = batch.types, batch.subjects
            touches = _touches(types, subjects, minutes)
        finally:
            known = await storing
        stored = [True] * len(errors) if known is None else \
            [key in known for key in zip(batch.sources, batch.ids, strict=True)]
        failed = {j: e for j, e in enumerate(errors) if e is not None and stored[j]}
        if failed:
            await repo.set_errors(s, batch, failed)
        if known is not None:  # some were stored before: only the others count
            deltas, values = _aggregate(fed, subjects, minutes, [a and b for a, b in zip(valid, stored, strict=True)])
            new = [j for j, is_new in enumerate(stored) if is_new]
            types, subjects, minutes = [types[j] for j in new], [subjects[j] for j in new], [minutes[j] for j in new]
            touches = _touches(types, subjects, minutes)
        await repo.add_minutes(s, deltas, values)
        # The one place, after the events are stored and in their transaction, for what else a
        # write must record (snapshots dropped, notification evaluations): services/invalidation.py.
        if touches:
            await invalidation.usage_changed_in_tx(s, touches)
    if touches:
        await invalidation.usage_changed(rt, touches)
    accepted = len(subjects)
    metrics.count_events(accepted, len(events) - accepted)
    return IngestResult(accepted=accepted, duplicates=len(events) - accepted)


async def list_events(rt: Runtime, *, limit: int = 100, from_: datetime | None = None, to: datetime | None = None,
                      subject: str | None = None, event_id: str | None = None,
                      ingested_from: datetime | None = None, ingested_to: datetime | None = None,
                      has_error: bool | None = None) -> list[Event]:
    """Stored events, newest (by event time) first."""
    validation.page(limit, 0, MAX_LIST)
    for value, what in ((subject, "subject"), (event_id, "id")):
        if value is not None:
            validation.lookup(value, what)
    if from_ is not None and to is not None and to <= from_:
        raise BadInput("to must be after from")
    async with rt.db.read() as s:
        return await repo.list_events(s, limit=limit, from_=from_, to=to, subject=subject, event_id=event_id,
                                      ingested_from=ingested_from, ingested_to=ingested_to, has_error=has_error)
