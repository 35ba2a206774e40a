"""Usage buckets (migration 0004, adapters/sql/usage.py): `usage_hours` and `usage_days` always hold the
sums of `meter_minutes`, whichever writer wrote the minutes (ingest, late events, the importer, deletes,
a session in another time zone, the migration's backfill), and `load_usage` answers exactly what a
direct scan of the minutes gives, for boundaries on and off hour and day edges and with group filters."""

from __future__ import annotations

import bisect
import json
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from alembic import command
from sqlalchemy import text

from creditgate.adapters.sql import events as events_repo
from creditgate.adapters.sql import imports as imports_repo
from creditgate.adapters.sql.db import alembic_config, sync_engine
from creditgate.adapters.sql.types import as_utc, to_decimal
from creditgate.adapters.sql.usage import UsageRequest, load_usage, split
from creditgate.services.runtime import Runtime
from tests.conftest import GQL, Backend, Clock
from tests.ent_helpers import events, feature, grant, meter, metered, value
from tests.test_installation import Databases

T0 = datetime(2024, 1, 10, tzinfo=UTC)
AWKWARD = [0.1, 0.2, 0.3, -0.7, 1.000000000001, 0.000000000001, -3, 12345678901234.5, 7, 2.5]
MODELS = ["a", "b", None]
Key = tuple[str, str, datetime, str]


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def _groups(raw: Any) -> dict[str, Any]:
    return dict(json.loads(raw) if isinstance(raw, str) else raw)


def expected_buckets(minutes: Iterable[Sequence[Any]]) -> tuple[dict[Key, tuple[Decimal, int]], ...]:
    """(hours, days) as sums of minute rows (meter_id, subject, group_key, minute, sum, count); empty
    buckets left out."""
    out: tuple[dict[Key, list[Any]], ...] = (defaultdict(lambda: [Decimal(0), 0]), defaultdict(lambda: [Decimal(0), 0]))
    for meter_id, subject, group_key, minute, s, c in minutes:
        m = as_utc(minute)
        assert m is not None
        for table, at in zip(out, (m.replace(minute=0), m.replace(hour=0, minute=0)), strict=True):
            acc = table[(meter_id, subject, at, group_key)]
            acc[0] += to_decimal(s)
            acc[1] += int(c)
    return tuple({k: (v[0], v[1]) for k, v in t.items() if v[0] != 0 or v[1] != 0} for t in out)


def stored_buckets(rows: Iterable[Sequence[Any]]) -> dict[Key, tuple[Decimal, int]]:
    out = {}
    for meter_id, subject, at, group_key, s, c in rows:
        when = as_utc(at)
        assert when is not None
        if to_decimal(s) != 0 or int(c) != 0:
            out[(meter_id, subject, when, group_key)] = (to_decimal(s), int(c))
    return out


MINUTES_SQL = "SELECT meter_id, subject, group_key, minute, sum, count FROM meter_minutes"
BUCKETS_SQL = "SELECT meter_id, subject, at, group_key, sum, count FROM {}"


async def fetch(rt: Runtime, sql: str, **params: Any) -> list[Any]:
    async with rt.db.read() as s:
        return list((await (await s.connection()).execute(text(sql), params)).all())


async def assert_in_step(rt: Runtime) -> int:
    """The hour and day buckets equal the minutes' sums; the number of minute rows (so a test knows it
    checked something)."""
    minutes = await fetch(rt, MINUTES_SQL)
    hours, days = expected_buckets(minutes)
    assert stored_buckets(await fetch(rt, BUCKETS_SQL.format("usage_hours"))) == hours
    assert stored_buckets(await fetch(rt, BUCKETS_SQL.format("usage_days"))) == days
    return len(minutes)


async def scan(rt: Runtime, req: UsageRequest) -> tuple[list[Decimal], datetime | None]:
    """U(b_i, b_i+1) and the first minute at or after the last bound, from every minute row (no buckets)."""
    rows = await fetch(rt, "SELECT minute, groups, sum, count FROM meter_minutes WHERE meter_id = :m AND subject = :s",
                       m=req.meter_id, s=req.subject)
    bounds = list(req.bounds)
    usage = [Decimal(0)] * (len(bounds) - 1)
    nxt: datetime | None = None
    for minute, groups, s, c in rows:
        g = _groups(groups)
        if any(g.get(k) != v for k, v in req.filters.items()):
            continue
        m = as_utc(minute)
        assert m is not None
        if m >= bounds[-1]:
            nxt = m if nxt is None else min(nxt, m)
            continue
        i = bisect.bisect_right(bounds, m) - 1
        if i >= 0:
            usage[i] += Decimal(int(c)) if req.count else to_decimal(s)
    return usage, nxt


def random_bounds(rng: random.Random, lo: datetime, hi: datetime) -> list[datetime]:
    """Sorted distinct instants: whole minutes, whole hours, whole days, a few with seconds."""
    span = int((hi - lo).total_seconds() // 60)
    picks: set[datetime] = set()
    for _ in range(rng.randint(2, 12)):
        t = lo + timedelta(minutes=rng.randint(0, span))
        kind = rng.random()
        if kind < 0.2:
            t = t.replace(minute=0)
        elif kind < 0.3:
            t = t.replace(hour=0, minute=0)
        elif kind < 0.4:
            t += timedelta(seconds=rng.randint(1, 59))
        picks.add(t)
    return sorted(picks)


async def assert_reads_match_scan(rt: Runtime, meters: dict[str, bool], subjects: Sequence[str], seed: int,
                                  rounds: int = 40) -> int:
    """load_usage (one batch of many requests) equals the minute scan; returns how many intervals had usage."""
    rng = random.Random(seed)
    reqs = []
    for _ in range(rounds):
        meter_id = rng.choice(sorted(meters))
        filters = rng.choice([{}, {"model": "a"}, {"model": "b"}, {"model": "nobody"}])
        bounds = random_bounds(rng, T0 - timedelta(days=1), T0 + timedelta(days=5))
        if rng.random() < 0.1:
            bounds.append(datetime(9999, 12, 31, 23, 59, tzinfo=UTC))  # the calendar's end: minutes only
        reqs.append(UsageRequest(meter_id, meters[meter_id], rng.choice(subjects), filters, bounds))
    async with rt.db.read() as s:
        answers = await load_usage(s, reqs)
    busy = 0
    for req, ans in zip(reqs, answers, strict=True):
        usage, nxt = await scan(rt, req)
        assert ans.usage == usage, (req, ans.usage, usage)
        assert ans.next_minute == nxt
        busy += sum(1 for u in usage if u != 0)
    return busy


async def setup(gql: GQL) -> dict[str, bool]:
    """A SUM meter grouped by model and a COUNT meter on the same events: {meter id: is COUNT}."""
    tokens = await meter(gql, "tokens", group_by={"model": "$.model"})
    calls = await meter(gql, "calls", aggregation="COUNT", group_by={"model": "$.model"})
    return {tokens["id"]: False, calls["id"]: True}


async def ingest_random(gql: GQL, rng: random.Random, subjects: Sequence[str], n: int, lo: datetime,
                        hours: int) -> None:
    """About n events with awkward values over `hours` from `lo` (seconds included), one batch per subject
    and model (absent model: a null group value)."""
    for subject in subjects:
        by_model: dict[str | None, list[tuple[str, float]]] = defaultdict(list)
        for _ in range(n // len(subjects)):
            t = lo + timedelta(seconds=rng.randint(0, hours * 3600 - 1))
            by_model[rng.choice(MODELS)].append((iso(t), rng.choice(AWKWARD)))
        for model, items in by_model.items():
            await events(gql, subject, *items, extra={"model": model} if model is not None else None)


def test_split_covers_each_interval_once_with_coarse_pieces() -> None:
    bounds = [datetime(2024, 1, 1, 10, 17, tzinfo=UTC), datetime(2024, 1, 3, 4, 5, tzinfo=UTC),
              datetime(2024, 1, 3, 4, 50, tzinfo=UTC), datetime(2024, 1, 3, 7, 0, tzinfo=UTC),
              datetime(2024, 1, 5, tzinfo=UTC)]
    minutes, hours, days = split(bounds)
    assert minutes == [(bounds[0], datetime(2024, 1, 1, 11, tzinfo=UTC), 0),
                       (datetime(2024, 1, 3, 4, tzinfo=UTC), bounds[1], 0),
                       (bounds[1], bounds[2], 1), (bounds[2], datetime(2024, 1, 3, 5, tzinfo=UTC), 2)]
    assert hours == [(datetime(2024, 1, 1, 11, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC), 0),
                     (datetime(2024, 1, 3, tzinfo=UTC), datetime(2024, 1, 3, 4, tzinfo=UTC), 0),
                     (datetime(2024, 1, 3, 5, tzinfo=UTC), bounds[3], 2),
                     (bounds[3], datetime(2024, 1, 4, tzinfo=UTC), 3)]
    assert days == [(datetime(2024, 1, 2, tzinfo=UTC), datetime(2024, 1, 3, tzinfo=UTC), 0),
                    (datetime(2024, 1, 4, tzinfo=UTC), bounds[4], 3)]
    # every minute of every interval is in exactly one piece
    pieces = [*minutes, *hours, *days]
    for i in range(len(bounds) - 1):
        t = bounds[i]
        while t < bounds[i + 1]:
            assert sum(1 for lo, hi, j in pieces if j == i and lo <= t < hi) == 1
            t += timedelta(minutes=7)


async def test_ingest_and_late_events_keep_buckets_exact(gql: GQL, rt: Runtime, clock: Clock) -> None:
    clock.set(T0 + timedelta(days=6))
    meters = await setup(gql)
    rng = random.Random(10)
    subjects = ["s1", "s2"]
    await ingest_random(gql, rng, subjects, 200, T0, 72)
    assert await assert_in_step(rt) > 100
    assert await assert_reads_match_scan(rt, meters, subjects, seed=1) > 20
    # late events into hours and days that already have buckets, and into an empty old day
    for t, tokens in [(T0 + timedelta(hours=5, minutes=3, seconds=9), 0.1), (T0 + timedelta(hours=5, minutes=3), 0.2),
                      (T0 + timedelta(days=1, hours=23, minutes=59, seconds=59), -0.3),
                      (T0 - timedelta(days=1, minutes=-17), 0.7)]:
        await events(gql, "s1", (iso(t), tokens), extra={"model": "a"})
    await assert_in_step(rt)
    assert await assert_reads_match_scan(rt, meters, subjects, seed=2) > 20


async def test_awkward_decimals_add_up_exactly(gql: GQL, rt: Runtime, clock: Clock) -> None:
    """0.1 + 0.2 + ... in one hour, and values that cancel out: the buckets are exact decimals."""
    clock.set(T0 + timedelta(days=2))
    meters = await setup(gql)
    tokens = next(m for m, count in meters.items() if not count)
    at = T0 + timedelta(hours=3)
    await events(gql, "s", *[(iso(at + timedelta(minutes=k)), v) for k, v in
                             enumerate([0.1, 0.2, 0.3, -0.6, 0.000000000001, 1e12])])
    rows = await fetch(rt, "SELECT sum, count FROM usage_hours WHERE meter_id = :m", m=tokens)
    assert [(to_decimal(s), c) for s, c in rows] == [(Decimal("1000000000000.000000000001"), 6)]
    await events(gql, "s", (iso(at), -1e12), (iso(at + timedelta(minutes=59)), -0.000000000001))
    rows = await fetch(rt, "SELECT sum, count FROM usage_days WHERE meter_id = :m", m=tokens)
    assert [(to_decimal(s), c) for s, c in rows] == [(Decimal(0), 8)]
    await assert_in_step(rt)


async def test_values_and_history_with_filters_equal_the_minute_scan(gql: GQL, rt: Runtime, clock: Clock) -> None:
    """Past-`at` values of a filtered feature, with snapshots off: balance = grant - U(period start, ceil_m(at))
    where U comes from the minute scan."""
    clock.set(T0 + timedelta(days=4))
    meters = await setup(gql)
    tokens = next(m for m, count in meters.items() if not count)
    await feature(gql, "ai", "tokens", filters={"model": "a"})
    start = T0 - timedelta(days=2)
    await metered(gql, "s1", "ai", interval="MONTH", anchor=iso(start), measureUsageFrom=iso(start))
    await grant(gql, "s1", "ai", 1_000_000_000_000_000, iso(start))
    await ingest_random(gql, random.Random(3), ["s1"], 150, T0, 60)
    rt.settings.snapshots = False
    cache, rt.cache = rt.cache, None
    try:
        rng = random.Random(4)
        for _ in range(12):
            at = T0 + timedelta(seconds=rng.randint(0, 72 * 3600))
            ceil = at if at.second == 0 else at.replace(second=0) + timedelta(minutes=1)
            (used,), _ = await scan(rt, UsageRequest(tokens, False, "s1", {"model": "a"}, [start, ceil]))
            got = await value(gql, "s1", "ai", at=iso(at))
            assert got["usage"] == float(used)  # floats on the wire (§6.5)
            assert got["balance"] == float(max(Decimal(10**15) - used, Decimal(0)))
    finally:
        rt.cache = cache
        rt.settings.snapshots = True


async def test_imported_minutes_and_deletes_keep_buckets_exact(gql: GQL, rt: Runtime, clock: Clock) -> None:
    clock.set(T0 + timedelta(days=6))
    meters = await setup(gql)
    tokens = next(m for m, count in meters.items() if not count)
    await ingest_random(gql, random.Random(5), ["s1"], 100, T0, 24)
    rows = [imports_repo.ImportedMinute(tokens, "s1", json.dumps({"model": "a"}, separators=(",", ":")),
                                        {"model": "a"}, T0 + timedelta(minutes=37 * k), Decimal("0.1") * k, k,
                                        None, None, Decimal("0.1") * k) for k in range(1, 60)]
    async with rt.db.transaction() as s:
        await imports_repo.add_imported_minutes(s, rows)
    await assert_in_step(rt)
    assert await assert_reads_match_scan(rt, meters, ["s1"], seed=6) > 10
    async with rt.db.transaction() as s:
        await (await s.connection()).execute(text("DELETE FROM meter_minutes WHERE minute < :t"),
                                             {"t": T0 + timedelta(hours=7, minutes=30)})
    await assert_in_step(rt)
    assert await assert_reads_match_scan(rt, meters, ["s1"], seed=7) > 10


async def test_buckets_are_utc_whatever_the_session_zone(gql: GQL, rt: Runtime, backend: Backend) -> None:
    meters = await setup(gql)
    tokens = next(m for m, count in meters.items() if not count)
    key = json.dumps({"model": "a"}, separators=(",", ":"))
    deltas = [events_repo.MinuteDelta(tokens, "s", key, datetime(2024, 1, 10, h, m, tzinfo=UTC), {"model": "a"},
                                      Decimal(1), 1, 1.0, 1.0) for h, m in [(18, 29), (18, 31), (23, 59)]]
    async with rt.db.transaction() as s:
        if backend.name == "postgres":  # 18:29 UTC is 23:59 in Kolkata, 18:31 is 00:01 the next day there
            await (await s.connection()).execute(text("SET LOCAL TimeZone = 'Asia/Kolkata'"))
        await events_repo.add_minutes(s, deltas, [])
    await assert_in_step(rt)
    days = await fetch(rt, "SELECT at, count FROM usage_days")
    assert [(as_utc(at), c) for at, c in days] == [(datetime(2024, 1, 10, tzinfo=UTC), 3)]
    hours = sorted((as_utc(at), c) for at, c in await fetch(rt, "SELECT at, count FROM usage_hours"))
    assert hours == [(datetime(2024, 1, 10, 18, tzinfo=UTC), 2), (datetime(2024, 1, 10, 23, tzinfo=UTC), 1)]


def test_migration_backfills_buckets_from_existing_minutes(tmp_path: Any, backend: Backend) -> None:
    dbs = Databases(tmp_path)
    try:
        url = dbs.new(backend.name)
        cfg = alembic_config(url)
        command.downgrade(cfg, "0003")  # a database from before the buckets, with minutes in it
        engine = sync_engine(url)
        rng = random.Random(8)
        rows = []
        for _ in range(300):
            minute = T0 + timedelta(minutes=rng.randint(0, 4 * 24 * 60))
            group = rng.choice(['{"model":"a"}', '{"model":"b"}', "{}"])
            rows.append({"m": rng.choice(["m1", "m2"]), "s": rng.choice(["x", "y"]), "g": group, "gj": group,
                         "t": minute if backend.name == "postgres" else
                         minute.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds"),
                         "sum": str(rng.choice(AWKWARD)), "c": rng.randint(1, 5)})
        try:
            groups = "CAST(:gj AS jsonb)" if backend.name == "postgres" else ":gj"
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO meter_minutes (meter_id, subject, group_key, minute, groups, sum, "
                                  f"count) VALUES (:m, :s, :g, :t, {groups}, :sum, :c) ON CONFLICT DO NOTHING"), rows)
            command.upgrade(cfg, "head")
            with engine.connect() as conn:
                minutes = conn.execute(text(MINUTES_SQL)).all()
                hours, days = expected_buckets(minutes)
                assert len(minutes) > 250 and len(hours) > 100
                assert stored_buckets(conn.execute(text(BUCKETS_SQL.format("usage_hours"))).all()) == hours
                assert stored_buckets(conn.execute(text(BUCKETS_SQL.format("usage_days"))).all()) == days
        finally:
            engine.dispose()
    finally:
        dbs.drop()
