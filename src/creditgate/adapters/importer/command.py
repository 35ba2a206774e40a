"""`creditgate import --from URL`: phases with progress bars, one service call per item, a summary (docs/import.md).

Reading the source's lists is all or nothing (without them nothing can be imported); after that an item
that fails (a conflict, a bad value, a failed usage query) is reported and skipped, and the next one goes on.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
from rich.text import Text

from creditgate.adapters.importer.source import Source
from creditgate.records import Entitlement, EntitlementType, Feature, Grant, Meter, Subject
from creditgate.services import imports as svc
from creditgate.services.imports import EntitlementImport, Tally, Usage, UsageMinute
from creditgate.services.runtime import Runtime

T = TypeVar("T")
SUBJECT_BATCH = 500
FETCHERS = 4  # threads reading the source while entitlements are written
AHEAD = 32
USAGE_BATCH = 50  # subjects per meter query of the usage reads (_UsageReads)
WRITE_BATCH = 20  # entitlements per transaction (services/imports.py import_entitlements)
PHASES = ("meters", "features", "subjects", "entitlements", "usage")
LIMITS = (
    "What the v1 API cannot give exactly (docs/import.md):",
    "- manual resets are not listed: only the last one shows (lastReset), so balances are exact from each",
    "  entitlement's current usage period (lastReset) on; earlier periods follow the imported anchor;",
    "- AVG, MIN, MAX and UNIQUE_COUNT meters are imported as their minute values (marked imported), not as",
    "  events: minute windows are exact, a coarser AVG is the mean of minutes and a coarser UNIQUE_COUNT the",
    "  sum of minute counts;",
    "- meters carry no creation time in the v1 API: they are created at the import's time.",
)


class SourceUnreadable(Exception):
    """The source's lists could not be read: nothing was imported."""


@dataclass(frozen=True, slots=True)
class Options:
    subjects: frozenset[str] | None = None  # only these subject keys (entitlements, grants, usage)
    dry_run: bool = False


@dataclass(slots=True)
class Summary:
    dry_run: bool
    tallies: dict[str, Tally] = field(default_factory=lambda: {p: Tally() for p in PHASES})
    seconds: float = 0.0
    phase_seconds: dict[str, float] = field(default_factory=dict)  # reading and each phase, in order

    @property
    def failed(self) -> int:
        return sum(t.failed for t in self.tallies.values())

    def lines(self) -> list[str]:
        verb = "would import" if self.dry_run else "imported"
        out = [f"{'dry run' if self.dry_run else 'import'} finished in {self.seconds:.1f}s"]
        for name, t in self.tallies.items():
            out.append(f"  {name:<13} {verb} {t.imported:>7}   already there {t.skipped:>7}   failed {t.failed:>5}")
        for name, t in self.tallies.items():
            out.extend(f"  error ({name}): {e}" for e in t.errors)
        return [*out, *LIMITS]


class RateColumn(ProgressColumn):
    """Items per second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f}/s" if speed else "", style="progress.data.speed")


def _progress(console: Console | None) -> Progress:
    return Progress(TextColumn("{task.description:<13}"), BarColumn(), MofNCompleteColumn(), RateColumn(),
                    TimeElapsedColumn(), console=console, disable=console is None)


def _error(tally: Tally, what: str, exc: BaseException) -> None:
    tally.failed += 1
    text = str(exc).splitlines()[0] if str(exc) else ""
    tally.errors.append(f"{what}: {type(exc).__name__}: {text}"[:500])


@dataclass(slots=True)
class _Listing:
    meters: list[Meter]
    features: list[Feature]
    subjects: list[Subject]
    entitlements: list[tuple[Entitlement, datetime | None]]
    grants: dict[str, list[Grant]]


def _read(source: Source, options: Options, progress: Progress) -> _Listing:
    task = progress.add_task("reading", total=5)
    try:
        meters = source.meters()
        progress.advance(task)
        features = source.features()
        progress.advance(task)
        subjects = source.subjects()
        progress.advance(task)
        entitlements = source.entitlements()
        progress.advance(task)
        grants: dict[str, list[Grant]] = {}
        for g in source.grants():
            grants.setdefault(g.entitlement_id, []).append(g)
        progress.advance(task)
    except Exception as exc:
        raise SourceUnreadable(f"{type(exc).__name__}: {exc}") from exc
    if options.subjects is not None:
        subjects = [s for s in subjects if s.key in options.subjects]
        entitlements = [(e, r) for e, r in entitlements if e.subject_key in options.subjects]
    return _Listing(meters, features, subjects, entitlements, grants)


async def run_import(rt: Runtime, source: Source, options: Options, *, console: Console | None = None,
                     after_entitlement: Callable[[int], None] | None = None) -> Summary:
    """Imports the source into rt's database. `after_entitlement(n)` runs after the n-th entitlement written
    (tests stop an import half-way with it)."""
    started = time.perf_counter()
    summary = Summary(dry_run=options.dry_run)
    tallies = summary.tallies
    mark = started

    def lap(phase: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        summary.phase_seconds[phase] = now - mark
        mark = now

    with _progress(console) as progress:
        listing = _read(source, options, progress)
        lap("reading")
        meters_by_slug = {m.slug: m for m in listing.meters}
        features = {f.id: f for f in listing.features}
        await _meters(rt, listing.meters, options, progress, tallies["meters"])
        lap("meters")
        await _features(rt, listing.features, options, progress, tallies["features"])
        lap("features")
        await _subjects(rt, listing.subjects, options, progress, tallies["subjects"])
        lap("subjects")
        done: set[tuple[str, str]] = set()  # (meter id, subject) whose usage this run imported or found
        await _entitlements(rt, source, listing, features, meters_by_slug, options, progress,
                            tallies["entitlements"], done, after_entitlement)
        lap("entitlements")
        await _usage(rt, source, listing.meters, options, progress, tallies["usage"], done)
        lap("usage")
    summary.seconds = time.perf_counter() - started
    return summary


async def _each(progress: Progress, phase: str, items: Sequence[T], tally: Tally, what: Callable[[T], str],
                there: Callable[[T], Awaitable[bool]], write: Callable[[T], Awaitable[bool]] | None) -> None:
    """One phase, item by item under its progress bar: an item stored already is skipped, another is written
    (`write` says False when it found the item there after all; None is a dry run: counted, not written);
    an item that fails is reported and the next one goes on."""
    task = progress.add_task(phase, total=len(items))
    for item in items:
        try:
            if await there(item):
                tally.skipped += 1
            elif write is None or await write(item):
                tally.imported += 1
            else:
                tally.skipped += 1
        except Exception as exc:
            _error(tally, what(item), exc)
        progress.advance(task)


def _among(ids: set[str]) -> Callable[[Meter | Feature], Awaitable[bool]]:
    async def there(item: Meter | Feature) -> bool:
        return item.id in ids
    return there


async def _meters(rt: Runtime, meters: Sequence[Meter], options: Options, progress: Progress, tally: Tally) -> None:
    there = await svc.existing(rt, "meter", [m.id for m in meters])
    await _each(progress, "meters", meters, tally, lambda m: f"meter {m.slug} ({m.id})", _among(there),
                None if options.dry_run else partial(svc.import_meter, rt))


async def _features(rt: Runtime, features: Sequence[Feature], options: Options, progress: Progress,
                    tally: Tally) -> None:
    there = await svc.existing(rt, "feature", [f.id for f in features])
    # archived ones first: a live feature may reuse an archived one's key
    ordered = sorted(features, key=lambda f: (f.archived_at is None, f.created_at, f.id))
    await _each(progress, "features", ordered, tally, lambda f: f"feature {f.key} ({f.id})", _among(there),
                None if options.dry_run else partial(svc.import_feature, rt))


async def _subjects(rt: Runtime, subjects: Sequence[Subject], options: Options, progress: Progress,
                    tally: Tally) -> None:
    task = progress.add_task("subjects", total=len(subjects))
    for i in range(0, len(subjects), SUBJECT_BATCH):
        batch = subjects[i:i + SUBJECT_BATCH]
        if options.dry_run:
            tally.imported += len(batch)
        else:
            try:
                written = await svc.import_subjects(rt, batch)
                tally.imported += written
                tally.skipped += len(batch) - written
            except Exception as exc:
                _error(tally, f"subjects {batch[0].key}..{batch[-1].key}", exc)
        progress.advance(task, len(batch))


class _UsageReads:
    """Usage of (meter, subject) units read USAGE_BATCH subjects of a meter per source request
    (`Source.usage_of`), in the order the units are given: the source's cost is mostly per request (its
    routing, auth, a few statements), so one request per subject made most of an import's reads. A batch
    is requested when one of its units is first asked for, with the next one; a batch that fails is read
    again subject by subject, so that only a subject whose own read fails is reported."""

    def __init__(self, source: Source, pool: ThreadPoolExecutor, units: Sequence[tuple[Meter, str]]) -> None:
        self.source, self.pool = source, pool
        self.batch_of: dict[tuple[str, str], int] = {}
        self.batches: list[tuple[Meter, list[str]]] = []
        self.left: list[int] = []  # units of each batch not consumed yet (its answer is let go at 0)
        self.futures: dict[int, Future[dict[str, list[UsageMinute]]]] = {}
        filling: dict[str, int] = {}
        for meter, subject in units:
            if (meter.id, subject) in self.batch_of:
                continue
            k = filling.get(meter.id)
            if k is None or len(self.batches[k][1]) >= USAGE_BATCH:
                k = filling[meter.id] = len(self.batches)
                self.batches.append((meter, []))
                self.left.append(0)
            self.batches[k][1].append(subject)
            self.left[k] += 1
            self.batch_of[(meter.id, subject)] = k

    def _start(self, k: int) -> Future[dict[str, list[UsageMinute]]] | None:
        if k >= len(self.batches) or self.left[k] == 0:
            return None
        future = self.futures.get(k)
        if future is None:
            meter, subjects = self.batches[k]
            future = self.futures[k] = self.pool.submit(self.source.usage_of, meter, subjects)
        return future

    def start(self, meter: Meter, subject: str) -> None:
        """Request the unit's batch (and the next) now, to be read by `minutes` later."""
        k = self.batch_of[(meter.id, subject)]
        self._start(k)
        self._start(k + 1)

    async def minutes(self, meter: Meter, subject: str) -> list[UsageMinute]:
        k = self.batch_of[(meter.id, subject)]
        future = self._start(k)
        self._start(k + 1)
        assert future is not None
        try:
            try:
                return (await asyncio.wrap_future(future))[subject]
            except Exception:
                return await asyncio.wrap_future(self.pool.submit(self.source.usage, meter, subject))
        finally:
            self.left[k] -= 1
            if self.left[k] == 0:
                self.futures.pop(k, None)

    def cancel(self) -> None:
        for future in self.futures.values():
            future.cancel()


@dataclass(slots=True)
class _Planned:
    """An entitlement to write; its source reads (balances at lastReset in a thread, its usage through
    _UsageReads when it brings it) start when it is planned."""

    ent: Entitlement
    last_reset: datetime | None
    meter: Meter | None = None  # set when this entitlement brings the usage of (meter, its subject)
    balances: Future[dict[str, Decimal] | None] | None = None
    error: Exception | None = None


def _balances(source: Source, ent: Entitlement, last_reset: datetime | None) -> dict[str, Decimal] | None:
    if (ent.type == EntitlementType.METERED and ent.deleted_at is None and last_reset is not None
            and ent.measure_usage_from is not None and last_reset > ent.measure_usage_from):
        return source.balances_at(ent, last_reset)
    return None


async def _stored_usage(rt: Runtime, units: Sequence[tuple[Meter, str]]) -> set[tuple[str, str]]:
    """Which (meter, subject) units have imported minutes stored already (one statement per meter)."""
    by_meter: dict[str, list[str]] = {}
    for meter, subject in units:
        by_meter.setdefault(meter.id, []).append(subject)
    out: set[tuple[str, str]] = set()
    for meter_id, subjects in by_meter.items():
        out.update((meter_id, s) for s in await svc.usage_imported_of(rt, meter_id, subjects))
    return out


async def _entitlements(rt: Runtime, source: Source, listing: _Listing, features: dict[str, Feature],
                        meters_by_slug: dict[str, Meter], options: Options, progress: Progress, tally: Tally,
                        done: set[tuple[str, str]], after_entitlement: Callable[[int], None] | None) -> None:
    """Entitlements in the source's order, WRITE_BATCH per transaction (one by one when a batch fails); the
    source reads of the next ones run meanwhile in FETCHERS threads (the SDK is synchronous), at most AHEAD
    entitlements ahead. The usage of each (meter, subject) comes with the first entitlement of the run that
    needs it, unless it is stored already."""
    items = listing.entitlements
    task = progress.add_task("entitlements", total=len(items))
    there = await svc.existing(rt, "entitlement", [e.id for e, _ in items])
    todo = [_Planned(e, r) for e, r in items if e.id not in there]
    tally.skipped += len(items) - len(todo)
    progress.advance(task, len(items) - len(todo))
    wanted: list[tuple[Meter, str]] = []
    for planned in todo:
        ent = planned.ent
        if ent.type != EntitlementType.METERED:
            continue
        feature = features.get(ent.feature_id)
        meter = meters_by_slug.get(feature.meter_slug or "") if feature is not None else None
        if meter is None:
            planned.error = LookupError(f"the meter of feature {ent.feature_key!r} is not at the source")
            continue
        unit = (meter.id, ent.subject_key)
        if unit not in done:
            planned.meter = meter  # the first entitlement of the unit brings its usage
            wanted.append((meter, ent.subject_key))
        done.add(unit)
    stored = set() if options.dry_run else await _stored_usage(rt, wanted)
    for planned in todo:
        if planned.meter is not None and (options.dry_run or (planned.meter.id, planned.ent.subject_key) in stored):
            planned.meter = None  # its usage is there
    written = 0
    queue: deque[_Planned] = deque()
    pending = iter(todo)
    with ThreadPoolExecutor(FETCHERS) as pool:
        reads = _UsageReads(source, pool, [(p.meter, p.ent.subject_key) for p in todo if p.meter is not None])

        def plan_next() -> bool:
            planned = next(pending, None)
            if planned is None:
                return False
            queue.append(planned)
            if planned.error is None and not options.dry_run:
                planned.balances = pool.submit(_balances, source, planned.ent, planned.last_reset)
                if planned.meter is not None:
                    reads.start(planned.meter, planned.ent.subject_key)
            return True

        group: list[EntitlementImport] = []

        async def flush() -> None:
            nonlocal written
            batch = list(group)
            group.clear()
            if not batch:
                return
            results: list[bool | None]
            try:
                results = list(await svc.import_entitlements(rt, batch))
            except Exception:  # one of them failed: each alone, so that only the failing ones are reported
                results = []
                for item in batch:
                    try:
                        results.append(await svc.import_entitlement(rt, item))
                    except Exception as exc:
                        e = item.entitlement
                        _error(tally, f"entitlement {e.id} ({e.subject_key}/{e.feature_key})", exc)
                        results.append(None)
            for ok in results:
                progress.advance(task)
                if ok is None:
                    continue
                if not ok:
                    tally.skipped += 1
                    continue
                tally.imported += 1
                written += 1
                if after_entitlement is not None:
                    try:
                        after_entitlement(written)
                    except BaseException:
                        for p in queue:  # stop the reads still queued
                            if p.balances is not None:
                                p.balances.cancel()
                        reads.cancel()
                        raise

        while len(queue) < AHEAD and plan_next():
            pass
        while queue:
            planned = queue.popleft()
            plan_next()
            ent = planned.ent
            try:
                if planned.error is not None:
                    raise planned.error
                if options.dry_run:
                    tally.imported += 1
                    progress.advance(task)
                    continue
                usage = []
                if planned.meter is not None:
                    minutes = await reads.minutes(planned.meter, ent.subject_key)
                    usage = [Usage(planned.meter, ent.subject_key, minutes)]
                assert planned.balances is not None
                balances = await asyncio.wrap_future(planned.balances)
            except Exception as exc:
                _error(tally, f"entitlement {ent.id} ({ent.subject_key}/{ent.feature_key})", exc)
                progress.advance(task)
                continue
            group.append(EntitlementImport(ent, listing.grants.get(ent.id, []), planned.last_reset, usage,
                                           balances))
            if len(group) >= WRITE_BATCH:
                await flush()
        await flush()


async def _usage(rt: Runtime, source: Source, meters: Sequence[Meter], options: Options, progress: Progress,
                 tally: Tally, done: set[tuple[str, str]]) -> None:
    """Minute usage that no entitlement brought: every meter, every other subject with data."""
    units: list[tuple[Meter, str]] = []
    for m in meters:
        try:
            subjects = source.meter_subjects(m)
        except Exception as exc:
            _error(tally, f"subjects of meter {m.slug}", exc)
            continue
        units += [(m, s) for s in subjects if (m.id, s) not in done
                  and (options.subjects is None or s in options.subjects)]
    stored = await _stored_usage(rt, units)
    with ThreadPoolExecutor(FETCHERS) as pool:
        reads = _UsageReads(source, pool, [u for u in units if (u[0].id, u[1]) not in stored])

        async def there(unit: tuple[Meter, str]) -> bool:
            return (unit[0].id, unit[1]) in stored

        async def write(unit: tuple[Meter, str]) -> bool:
            meter, subject = unit
            return await svc.import_usage(rt, Usage(meter, subject, await reads.minutes(meter, subject)))

        await _each(progress, "usage", units, tally, lambda u: f"usage of meter {u[0].slug} for {u[1]}", there,
                    None if options.dry_run else write)
