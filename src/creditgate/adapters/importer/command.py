"""`creditgate import --from URL`: phases with progress bars, one service call per item, a summary (docs/import.md).

Reading the source's lists is all or nothing (without them nothing can be imported); after that an item
that fails (a conflict, a bad value, a failed usage query) is reported and skipped, and the next one goes on.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
from rich.text import Text

from creditgate.adapters.importer.source import Source
from creditgate.records import Entitlement, EntitlementType, Feature, Grant, Meter, Subject
from creditgate.services import imports as svc
from creditgate.services.imports import EntitlementImport, Tally, Usage
from creditgate.services.runtime import Runtime

SUBJECT_BATCH = 500
FETCHERS = 4  # threads reading the source while entitlements are written
AHEAD = 32
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
    with _progress(console) as progress:
        listing = _read(source, options, progress)
        meters_by_slug = {m.slug: m for m in listing.meters}
        features = {f.id: f for f in listing.features}
        await _meters(rt, listing.meters, options, progress, tallies["meters"])
        await _features(rt, listing.features, options, progress, tallies["features"])
        await _subjects(rt, listing.subjects, options, progress, tallies["subjects"])
        done: set[tuple[str, str]] = set()  # (meter id, subject) whose usage this run imported or found
        await _entitlements(rt, source, listing, features, meters_by_slug, options, progress,
                            tallies["entitlements"], done, after_entitlement)
        await _usage(rt, source, listing.meters, options, progress, tallies["usage"], done)
    summary.seconds = time.perf_counter() - started
    return summary


async def _meters(rt: Runtime, meters: Sequence[Meter], options: Options, progress: Progress, tally: Tally) -> None:
    task = progress.add_task("meters", total=len(meters))
    there = await svc.existing(rt, "meter", [m.id for m in meters])
    for m in meters:
        try:
            if m.id in there:
                tally.skipped += 1
            elif options.dry_run or await svc.import_meter(rt, m):
                tally.imported += 1
            else:
                tally.skipped += 1
        except Exception as exc:
            _error(tally, f"meter {m.slug} ({m.id})", exc)
        progress.advance(task)


async def _features(rt: Runtime, features: Sequence[Feature], options: Options, progress: Progress,
                    tally: Tally) -> None:
    task = progress.add_task("features", total=len(features))
    there = await svc.existing(rt, "feature", [f.id for f in features])
    # archived ones first: a live feature may reuse an archived one's key
    for f in sorted(features, key=lambda f: (f.archived_at is None, f.created_at, f.id)):
        try:
            if f.id in there:
                tally.skipped += 1
            elif options.dry_run or await svc.import_feature(rt, f):
                tally.imported += 1
            else:
                tally.skipped += 1
        except Exception as exc:
            _error(tally, f"feature {f.key} ({f.id})", exc)
        progress.advance(task)


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


@dataclass(slots=True)
class _Planned:
    """An entitlement to write, with its source reads (usage, balances at lastReset) running in a thread."""

    ent: Entitlement
    last_reset: datetime | None
    reads: Future[tuple[list[Usage], dict[str, Decimal] | None]] | None = None
    error: Exception | None = None


def _fetch(source: Source, ent: Entitlement, last_reset: datetime | None,
           meter: Meter | None) -> tuple[list[Usage], dict[str, Decimal] | None]:
    usage = [Usage(meter, ent.subject_key, source.usage(meter, ent.subject_key))] if meter is not None else []
    balances = None
    if (ent.type == EntitlementType.METERED and ent.deleted_at is None and last_reset is not None
            and ent.measure_usage_from is not None and last_reset > ent.measure_usage_from):
        balances = source.balances_at(ent, last_reset)
    return usage, balances


async def _entitlements(rt: Runtime, source: Source, listing: _Listing, features: dict[str, Feature],
                        meters_by_slug: dict[str, Meter], options: Options, progress: Progress, tally: Tally,
                        done: set[tuple[str, str]], after_entitlement: Callable[[int], None] | None) -> None:
    """Entitlements in the source's order, written one by one; the source reads of the next ones run meanwhile
    in FETCHERS threads (the SDK is synchronous), at most AHEAD entitlements ahead."""
    items = listing.entitlements
    task = progress.add_task("entitlements", total=len(items))
    there = await svc.existing(rt, "entitlement", [e.id for e, _ in items])
    todo = [(e, r) for e, r in items if e.id not in there]
    tally.skipped += len(items) - len(todo)
    progress.advance(task, len(items) - len(todo))
    written = 0
    queue: deque[_Planned] = deque()
    pending = iter(todo)
    with ThreadPoolExecutor(FETCHERS) as pool:
        async def plan_next() -> bool:
            nxt = next(pending, None)
            if nxt is None:
                return False
            planned = _Planned(*nxt)
            queue.append(planned)
            ent = planned.ent
            try:
                meter = None
                if ent.type == EntitlementType.METERED:
                    feature = features.get(ent.feature_id)
                    meter = meters_by_slug.get(feature.meter_slug or "") if feature is not None else None
                    if meter is None:
                        raise LookupError(f"the meter of feature {ent.feature_key!r} is not at the source")
                    unit = (meter.id, ent.subject_key)
                    if options.dry_run or unit in done or await svc.usage_imported(rt, *unit):
                        meter = None  # its usage is there (or this run brings it with another entitlement)
                    done.add(unit)
                if not options.dry_run:
                    planned.reads = pool.submit(_fetch, source, ent, planned.last_reset, meter)
            except Exception as exc:
                planned.error = exc
            return True

        while len(queue) < AHEAD and await plan_next():
            pass
        while queue:
            planned = queue.popleft()
            await plan_next()
            ent = planned.ent
            try:
                if planned.error is not None:
                    raise planned.error
                if options.dry_run:
                    tally.imported += 1
                    continue
                assert planned.reads is not None
                usage, balances = await asyncio.wrap_future(planned.reads)
                item = EntitlementImport(ent, listing.grants.get(ent.id, []), planned.last_reset, usage, balances)
                if not await svc.import_entitlement(rt, item):
                    tally.skipped += 1
                    continue
                tally.imported += 1
                written += 1
            except Exception as exc:
                _error(tally, f"entitlement {ent.id} ({ent.subject_key}/{ent.feature_key})", exc)
                continue
            finally:
                progress.advance(task)
            if after_entitlement is not None:
                try:
                    after_entitlement(written)
                except BaseException:
                    for p in queue:  # stop the reads still queued
                        if p.reads is not None:
                            p.reads.cancel()
                    raise


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
    task = progress.add_task("usage", total=len(units))
    for meter, subject in units:
        try:
            if await svc.usage_imported(rt, meter.id, subject):
                tally.skipped += 1
            elif options.dry_run or await svc.import_usage(rt, Usage(meter, subject, source.usage(meter, subject))):
                tally.imported += 1
            else:
                tally.skipped += 1
        except Exception as exc:
            _error(tally, f"usage of meter {meter.slug} for {subject}", exc)
        progress.advance(task)
