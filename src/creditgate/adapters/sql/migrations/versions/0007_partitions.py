"""monthly event partitions (PostgreSQL)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 13:30:00

PostgreSQL only (SQLite keeps its layout). Raw events become a table partitioned by the UTC month
of their time (docs/operations.md, "Partitions and retention"), so that retention drops whole
months and indexes stay per month.

Dedupe moves to `event_keys` (source, event_id): a partitioned table cannot hold a unique index
that leaves out its partition key, and the keys must outlive the raw events that retention
drops, so that dedupe stays permanent and exact (docs/semantics.md §1.3). `events.seq` keeps its
sequence (the listing order among equal times) but no index. Existing events are copied into
partitions made for the months they hold.

The usage aggregates stay plain tables: a usage read names its ranges as parameters, so PostgreSQL
plans it against every monthly partition (measured: 0.4-1 ms to plan unpartitioned, 2-5 ms with a
year of months, growing with each month), while the aggregates are kept for ever anyway.
`meter_minutes`' key puts the minute before the group key, as the buckets' keys do: that one index
then serves both the upserts (ON CONFLICT matches the key's columns in any order) and the usage reads
of a minute range across group keys, which had an index of their own.
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

_OLD = "events_before_0007"


def _pg() -> bool:
    return bool(op.get_bind().dialect.name == "postgresql")


def _minutes_key(columns: str, index: bool) -> None:
    op.execute(f"ALTER TABLE meter_minutes DROP CONSTRAINT meter_minutes_pkey, ADD CONSTRAINT meter_minutes_pkey "
               f"PRIMARY KEY ({columns})")
    if index:
        op.execute("CREATE INDEX ix_meter_minutes_subject_minute ON meter_minutes (meter_id, subject, minute)")
    else:
        op.execute("DROP INDEX IF EXISTS ix_meter_minutes_subject_minute")


def _swap_events(partitioned: bool) -> None:
    """Copies `events` into a new table of the same columns, partitioned by month or not, and swaps them."""
    op.execute(f"ALTER TABLE events RENAME TO {_OLD}")
    for name in ("events_pkey", "ix_events_subject_time", "uq_events_source_id"):
        op.execute(f"ALTER INDEX IF EXISTS {name} RENAME TO {name}_before_0007")
    op.execute(f"CREATE TABLE events (LIKE {_OLD} INCLUDING DEFAULTS)"
               + (" PARTITION BY RANGE (time)" if partitioned else ""))
    if partitioned:
        months = op.get_bind().execute(sa.text(
            f"SELECT DISTINCT date_trunc('month', time, 'UTC')::date FROM {_OLD}")).scalars().all()
        for month in months:
            following = (month.replace(day=28) + timedelta(days=4)).replace(day=1)
            op.execute(f"CREATE TABLE events_{month:%Y_%m} PARTITION OF events "
                       f"FOR VALUES FROM ('{month:%Y-%m-%d} 00:00+00') TO ('{following:%Y-%m-%d} 00:00+00')")
    op.execute(f"INSERT INTO events SELECT * FROM {_OLD}")
    op.execute("ALTER SEQUENCE events_seq_seq OWNED BY NONE")  # the sequence goes with the column
    op.execute(f"DROP TABLE {_OLD}")
    op.execute("ALTER SEQUENCE events_seq_seq OWNED BY events.seq")
    if not partitioned:
        op.execute("ALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY (seq)")
        op.execute("CREATE UNIQUE INDEX uq_events_source_id ON events (source, event_id)")
    op.execute("CREATE INDEX ix_events_subject_time ON events (subject, time)")


def upgrade() -> None:
    if not _pg():
        return
    op.execute("CREATE TABLE event_keys (source varchar NOT NULL, event_id varchar NOT NULL, "
               "CONSTRAINT event_keys_pkey PRIMARY KEY (source, event_id))")
    op.execute("INSERT INTO event_keys (source, event_id) SELECT source, event_id FROM events")
    _swap_events(partitioned=True)
    _minutes_key("meter_id, subject, minute, group_key", index=False)


def downgrade() -> None:
    if not _pg():
        return
    _minutes_key("meter_id, subject, group_key, minute", index=True)
    _swap_events(partitioned=False)
    op.execute("DROP TABLE event_keys")
