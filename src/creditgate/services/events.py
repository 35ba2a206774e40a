"""Event ingest (CloudEvents, deduplicated by (source, id)) and the event listing (docs/semantics.md §1)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from creditgate import metrics
from creditgate.adapters.sql import events as repo
from creditgate.adapters.sql import meters as meter_repo
from creditgate.adapters.sql.events import MinuteDelta, MinuteValue, NewEvent
from creditgate.amounts import LIMIT, SCALE, fit_stored
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
    value: Getter | None
    groups: tuple[tuple[str, Getter], ...]


def _reader(meter: Meter) -> _MeterReader:
    value = compile_path(meter.value_property) if meter.value_property and meter.aggregation != _COUNT else None
    groups = tuple((name, _getter(compile_path(path))) for name, path in sorted(meter.group_by.items()))
    return _MeterReader(meter, _getter(value) if value is not None else None, groups)


def _required(index: int, name: str, value: Any) -> str:
    if not isinstance(value, str) or not value or value.isspace():
        raise BadInput(f"event {index}: {name} is required (a non-empty string)")
    if len(value) > validation.MAX_TEXT:
        raise BadInput(f"event {index}: {name} must be at most {validation.MAX_TEXT} characters")
    return value


def check_event(index: int, e: EventInput, now: datetime) -> NewEvent:
    """A structurally valid event, or BadInput naming its index."""
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
    # the text rule (services/validation.py), cheaply: most events are ASCII with no NUL
    problem = validation.unstorable(text) if "\x00" in text or not text.isascii() else None
    if problem is None and "\\u0000" in data_json:
        problem = validation.json_problem(data)
    if problem is not None:
        raise BadInput(f"event {index}: text {problem}")
    return NewEvent(event_id=event_id, source=source, type=type_, subject=subject, time=time, data=data,
                    ingested_at=now, validation_error=None, data_json=data_json)


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

# What one event adds to one meter: (reader, group key, groups, numeric value, UNIQUE_COUNT text).
_Contribution = tuple[_MeterReader, str, dict[str, str | None], Decimal | None, str | None]
_NO_GROUPS: tuple[str, dict[str, str | None]] = ("{}", {})


def _group_key(reader: _MeterReader, data: dict[str, Any],
               cache: dict[tuple[str, tuple[str | None, ...]], tuple[str, dict[str, str | None]]]
               ) -> tuple[str, dict[str, str | None]]:
    """The canonical group key (JSON, sorted names) and the groups, shared by equal groups in a batch."""
    if not reader.groups:
        return _NO_GROUPS
    texts = tuple([as_text(get(data)) for _, get in reader.groups])
    key = (reader.meter.id, texts)
    found = cache.get(key)
    if found is None:
        groups = {name: text for (name, _), text in zip(reader.groups, texts, strict=True)}
        found = cache[key] = (orjson.dumps(groups, option=orjson.OPT_SORT_KEYS).decode(), groups)
    return found


def _contribute(reader: _MeterReader, data: dict[str, Any],
                cache: dict[tuple[str, tuple[str | None, ...]], tuple[str, dict[str, str | None]]]
                ) -> _Contribution:
    """What one event adds to one meter; ValueError when its value is unusable."""
    group_key, groups = _group_key(reader, data, cache)
    agg = reader.meter.aggregation
    if agg == _COUNT or reader.value is None:
        return (reader, group_key, groups, None, None)
    raw = reader.value(data)
    if is_missing(raw) or raw is None:
        raise ValueError(f"meter {reader.meter.slug}: value {reader.meter.value_property} is missing or null")
    if agg == _UNIQUE_COUNT:
        if isinstance(raw, bool) or not isinstance(raw, int | float | str):
            raise ValueError(f"meter {reader.meter.slug}: value {reader.meter.value_property} "
                             "must be a string or number")
        return (reader, group_key, groups, None, as_text(raw))
    try:
        return (reader, group_key, groups, numeric_value(raw), None)
    except ValueError as exc:
        raise ValueError(f"meter {reader.meter.slug}: value {reader.meter.value_property} {exc}") from None


@dataclass(slots=True)
class _Fed:
    """An event with its minute and what it adds to its type's meters (nothing when invalid)."""

    event: NewEvent
    minute: datetime
    contributions: list[_Contribution]


def _feed(events: Sequence[NewEvent], readers: dict[str, list[_MeterReader]]) -> list[_Fed]:
    """Each event's contributions; an event with a value error gets it and counts toward no meter."""
    cache: dict[tuple[str, tuple[str | None, ...]], tuple[str, dict[str, str | None]]] = {}
    fed: list[_Fed] = []
    for event in events:
        contributions: list[_Contribution] = []
        errors: list[str] | None = None
        for reader in readers.get(event.type, ()):
            try:
                contributions.append(_contribute(reader, event.data, cache))
            except ValueError as exc:
                errors = [*(errors or []), str(exc)]
        if errors:
            event.validation_error = "; ".join(errors)
            contributions = []
        fed.append(_Fed(event, floor_m(event.time), contributions))
    return fed


def _aggregate(fed: Sequence[_Fed]) -> tuple[list[MinuteDelta], list[MinuteValue]]:
    deltas: dict[tuple[str, str, str, datetime], MinuteDelta] = {}
    values: dict[tuple[str, str, str, datetime, str], MinuteValue] = {}
    for f in fed:
        subject, minute = f.event.subject, f.minute
        for reader, group_key, groups, value, text in f.contributions:
            meter_id = reader.meter.id
            key = (meter_id, subject, group_key, minute)
            d = deltas.get(key)
            if d is None:
                d = deltas[key] = MinuteDelta(meter_id, subject, group_key, minute, groups, Decimal(0), 0, None, None)
            d.count += 1
            if value is not None:
                d.sum += value
                v = float(value)
                if d.min is None or v < d.min:
                    d.min = v
                if d.max is None or v > d.max:
                    d.max = v
            if text is not None:
                vkey = (*key, text)
                if vkey not in values:
                    values[vkey] = MinuteValue(meter_id, subject, group_key, minute, text, groups)
    return list(deltas.values()), list(values.values())


def _touches(fed: Sequence[_Fed]) -> list[UsageTouch]:
    first: dict[tuple[str, str], datetime] = {}
    for f in fed:
        key = (f.event.type, f.event.subject)
        at = first.get(key)
        if at is None or f.minute < at:
            first[key] = f.minute
    return [UsageTouch(event_type=t, subject=s, first_minute=m) for (t, s), m in sorted(first.items())]


async def ingest_events(rt: Runtime, events: Sequence[EventInput]) -> IngestResult:
    """Stores a batch: all or nothing for structural errors; duplicates of (source, id) skipped."""
    if len(events) > MAX_BATCH:
        raise BadInput(f"a batch may hold at most {MAX_BATCH} events")
    now = rt.now()
    unique: dict[tuple[str, str], NewEvent] = {}
    for i, e in enumerate(events):
        checked = check_event(i, e, now)
        unique.setdefault((checked.source, checked.event_id), checked)
    if not unique:
        return IngestResult(accepted=0, duplicates=0)
    new = list(unique.values())
    async with rt.db.transaction() as s:
        meters = await meter_repo.meters_for_types(s, sorted({e.type for e in new}))
        readers: dict[str, list[_MeterReader]] = {}
        for m in meters:
            readers.setdefault(m.event_type, []).append(_reader(m))
        fed = _feed(new, readers)
        # Aggregated as if every event is new: the usual case, stored in one go.
        deltas, values = _aggregate(fed)
        stored = await repo.store_batch(s, new, deltas, values)
        if stored is not None:  # some were stored before: only the others count
            fed = [f for f in fed if (f.event.source, f.event.event_id) in stored]
            await repo.add_minutes(s, *_aggregate(fed))
        touches = _touches(fed)
        if touches:
            await invalidation.usage_changed_in_tx(s, touches)
    if touches:
        await invalidation.usage_changed(rt, touches)
    metrics.count_events(len(fed), len(events) - len(fed))
    return IngestResult(accepted=len(fed), duplicates=len(events) - len(fed))


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
