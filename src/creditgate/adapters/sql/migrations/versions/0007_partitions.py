"""monthly partitions (PostgreSQL)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 13:30:00

PostgreSQL only (SQLite keeps its layout). Raw events and the usage aggregates become tables
partitioned by UTC month of their time column (docs/operations.md, "Partitions and retention"):
a month of them can be dropped or vacuumed alone, and indexes stay per month.

Dedupe moves to `event_keys` (source, event_id): a partitioned table cannot hold a unique index
that leaves out its partition key, and the keys must outlive the raw events that retention
drops, so that dedupe stays permanent and exact (docs/semantics.md §1.3). `events.seq` keeps its
sequence (the listing order among equal times) but no index.

Existing rows are copied into partitions made for the months they hold; the buckets' triggers
(0004) move to the new `meter_minutes`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

# table -> (partition key, primary key, other indexes as (name, columns)), after this revision.
# `meter_minutes`' key puts the minute before the group key, as the buckets' keys do: one index then
# serves both the upserts (ON CONFLICT matches the key's columns in any order) and the usage reads of
# a minute range across group keys, which had an index of their own.
_TABLES: dict[str, tuple[str, str | None, Sequence[tuple[str, str]]]] = {
    "events": ("time", None, [("ix_events_subject_time", "subject, time")]),
    "meter_minutes": ("minute", "meter_id, subject, minute, group_key", []),
    "meter_minute_values": ("minute", "meter_id, subject, group_key, minute, value", []),
    "usage_hours": ("at", "meter_id, subject, at, group_key", []),
    "usage_days": ("at", "meter_id, subject, at, group_key", []),
}
_BEFORE = {**_TABLES, "meter_minutes": ("minute", "meter_id, subject, group_key, minute",
                                        [("ix_meter_minutes_subject_minute", "meter_id, subject, minute")])}
_TRIGGERS = {
    "usage_buckets_insert": "AFTER INSERT ON meter_minutes REFERENCING NEW TABLE AS new_rows",
    "usage_buckets_update": "AFTER UPDATE ON meter_minutes REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
    "usage_buckets_delete": "AFTER DELETE ON meter_minutes REFERENCING OLD TABLE AS old_rows",
}


def _pg() -> bool:
    return bool(op.get_bind().dialect.name == "postgresql")


def _create_triggers() -> None:
    for name, when in _TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} {when} FOR EACH STATEMENT EXECUTE FUNCTION usage_buckets_fold()")


def _rebuild(table: str, partitioned: bool) -> None:
    """Copies `table` into a new table of the same columns, partitioned by month or not, and swaps them."""
    key, pkey, indexes = (_TABLES if partitioned else _BEFORE)[table]
    old = f"{table}_before_0007"
    op.execute(f"ALTER TABLE {table} RENAME TO {old}")
    op.execute(f"ALTER INDEX IF EXISTS {table}_pkey RENAME TO {old}_pkey")
    for name, _ in (*_TABLES[table][2], *_BEFORE[table][2]):
        op.execute(f"ALTER INDEX IF EXISTS {name} RENAME TO {name}_before_0007")
    if table == "events":
        op.execute("ALTER INDEX IF EXISTS uq_events_source_id RENAME TO uq_events_source_id_before_0007")
    by = f" PARTITION BY RANGE ({key})" if partitioned else ""
    op.execute(f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS){by}")
    if partitioned:
        months = op.get_bind().execute(sa.text(
            f"SELECT DISTINCT date_trunc('month', {key}, 'UTC')::date FROM {old}")).scalars().all()
        for month in months:
            following = (month.replace(day=28) + timedelta(days=4)).replace(day=1)
            op.execute(f"CREATE TABLE {table}_{month:%Y_%m} PARTITION OF {table} "
                       f"FOR VALUES FROM ('{month:%Y-%m-%d} 00:00+00') TO ('{following:%Y-%m-%d} 00:00+00')")
    op.execute(f"INSERT INTO {table} SELECT * FROM {old}")
    if table == "events":  # the sequence goes with the column, not with the old table
        op.execute("ALTER SEQUENCE events_seq_seq OWNED BY NONE")
    op.execute(f"DROP TABLE {old}")
    if table == "events":
        op.execute("ALTER SEQUENCE events_seq_seq OWNED BY events.seq")
        if not partitioned:
            op.execute("ALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY (seq)")
            op.execute("CREATE UNIQUE INDEX uq_events_source_id ON events (source, event_id)")
    if pkey:
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY ({pkey})")
    for name, columns in indexes:
        op.execute(f"CREATE INDEX {name} ON {table} ({columns})")


def upgrade() -> None:
    if not _pg():
        return
    op.execute("CREATE TABLE event_keys (source varchar NOT NULL, event_id varchar NOT NULL, "
               "CONSTRAINT event_keys_pkey PRIMARY KEY (source, event_id))")
    op.execute("INSERT INTO event_keys (source, event_id) SELECT source, event_id FROM events")
    for table in _TABLES:
        _rebuild(table, partitioned=True)
    _create_triggers()


def downgrade() -> None:
    if not _pg():
        return
    for table in _TABLES:
        _rebuild(table, partitioned=False)
    _create_triggers()
    op.execute("DROP TABLE event_keys")
