"""coarser usage buckets

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 11:20:00

`usage_hours` and `usage_days`: the sum and count of `meter_minutes` per UTC hour and UTC day, per
(meter, subject, group key), so that usage over a long range reads O(boundaries) rows instead of one
row per minute (adapters/sql/usage.py). Database triggers on `meter_minutes` keep them in step with
every writer (ingest, late events, `creditgate import`, anything later) in the writer's own
transaction: PostgreSQL statement-level triggers with transition tables (set-based: one upsert of
the changed buckets per statement, in key order), SQLite row triggers (exact decimals through the
`dadd`/`dsub` functions every connection of the app registers). Existing minutes are folded in here.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import creditgate.adapters.sql.types

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

TABLES = ("usage_hours", "usage_days")

# PostgreSQL: the signed change of every (meter, subject, hour, group) a statement touched, then one
# upsert per table. date_trunc(.., 'UTC'): buckets are UTC whatever the session's TimeZone.
_PG_FOLD = """
    WITH d AS (
      SELECT meter_id, subject, date_trunc('hour', minute, 'UTC') AS at, group_key,
             sum(s) AS s, sum(c)::bigint AS c
      FROM ({source}) AS x GROUP BY 1, 2, 3, 4 HAVING sum(s) <> 0 OR sum(c) <> 0),
    h AS (
      INSERT INTO usage_hours AS b (meter_id, subject, at, group_key, sum, count)
      SELECT * FROM d ORDER BY 1, 2, 3, 4
      ON CONFLICT (meter_id, subject, at, group_key) DO UPDATE
        SET sum = b.sum + excluded.sum, count = b.count + excluded.count)
    INSERT INTO usage_days AS b (meter_id, subject, at, group_key, sum, count)
    SELECT meter_id, subject, date_trunc('day', at, 'UTC'), group_key, sum(s), sum(c)::bigint
    FROM d GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
    ON CONFLICT (meter_id, subject, at, group_key) DO UPDATE
      SET sum = b.sum + excluded.sum, count = b.count + excluded.count;"""
_NEW = "SELECT meter_id, subject, minute, group_key, sum AS s, count AS c FROM new_rows"
_OLD = "SELECT meter_id, subject, minute, group_key, -sum AS s, -count AS c FROM old_rows"
_PG_FUNCTION = f"""
CREATE FUNCTION usage_buckets_fold() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN {_PG_FOLD.format(source=_NEW)}
  ELSIF TG_OP = 'UPDATE' THEN {_PG_FOLD.format(source=_NEW + " UNION ALL " + _OLD)}
  ELSE {_PG_FOLD.format(source=_OLD)}
  END IF;
  RETURN NULL;
END $$"""
_PG_TRIGGERS = [
    "CREATE TRIGGER usage_buckets_insert AFTER INSERT ON meter_minutes REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION usage_buckets_fold()",
    "CREATE TRIGGER usage_buckets_update AFTER UPDATE ON meter_minutes "
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION usage_buckets_fold()",
    "CREATE TRIGGER usage_buckets_delete AFTER DELETE ON meter_minutes REFERENCING OLD TABLE AS old_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION usage_buckets_fold()",
]

# SQLite: timestamps are text 'YYYY-MM-DD HH:MM:SS.ffffff' (SQLAlchemy's format), so a bucket start is
# the minute's text with the finer fields zeroed.
_SQLITE_AT = {"usage_hours": "strftime('%Y-%m-%d %H:00:00.000000', {r}.minute)",
              "usage_days": "strftime('%Y-%m-%d 00:00:00.000000', {r}.minute)"}


def _sqlite_upsert(table: str, r: str, s: str, c: str) -> str:
    at = _SQLITE_AT[table].format(r=r)
    return (f"INSERT INTO {table} (meter_id, subject, at, group_key, sum, count) "
            f"VALUES ({r}.meter_id, {r}.subject, {at}, {r}.group_key, {s}, {c}) "
            f"ON CONFLICT (meter_id, subject, at, group_key) DO UPDATE SET "
            f"sum = dadd({table}.sum, excluded.sum), count = {table}.count + excluded.count;")


def _sqlite_body(*steps: tuple[str, str, str]) -> str:
    return " ".join(_sqlite_upsert(t, r, s, c) for r, s, c in steps for t in TABLES)


_SAME_KEY = ("NEW.meter_id = OLD.meter_id AND NEW.subject = OLD.subject AND NEW.group_key = OLD.group_key "
             "AND NEW.minute = OLD.minute")
_SQLITE_TRIGGERS = [
    "CREATE TRIGGER usage_buckets_insert AFTER INSERT ON meter_minutes BEGIN "
    + _sqlite_body(("NEW", "NEW.sum", "NEW.count")) + " END",
    f"CREATE TRIGGER usage_buckets_update AFTER UPDATE ON meter_minutes WHEN {_SAME_KEY} BEGIN "
    + _sqlite_body(("NEW", "dsub(NEW.sum, OLD.sum)", "NEW.count - OLD.count")) + " END",
    f"CREATE TRIGGER usage_buckets_rekey AFTER UPDATE ON meter_minutes WHEN NOT ({_SAME_KEY}) BEGIN "
    + _sqlite_body(("OLD", "dsub('0', OLD.sum)", "-OLD.count"), ("NEW", "NEW.sum", "NEW.count")) + " END",
    "CREATE TRIGGER usage_buckets_delete AFTER DELETE ON meter_minutes BEGIN "
    + _sqlite_body(("OLD", "dsub('0', OLD.sum)", "-OLD.count")) + " END",
]

_PG_BACKFILL = """
INSERT INTO usage_hours (meter_id, subject, at, group_key, sum, count)
SELECT meter_id, subject, date_trunc('hour', minute, 'UTC'), group_key, sum(sum), sum(count)::bigint
FROM meter_minutes GROUP BY 1, 2, 3, 4;
INSERT INTO usage_days (meter_id, subject, at, group_key, sum, count)
SELECT meter_id, subject, date_trunc('day', at, 'UTC'), group_key, sum(sum), sum(count)::bigint
FROM usage_hours GROUP BY 1, 2, 3, 4"""


def _sqlite_backfill(table: str) -> str:
    return (f"INSERT INTO {table} (meter_id, subject, at, group_key, sum, count) "
            f"SELECT meter_id, subject, {_SQLITE_AT[table].format(r='m')}, group_key, dsum(sum), sum(count) "
            "FROM meter_minutes AS m GROUP BY 1, 2, 3, 4")


def upgrade() -> None:
    for table in TABLES:
        op.create_table(
            table,
            sa.Column('meter_id', sqlmodel.sql.sqltypes.AutoString(length=26), nullable=False),
            sa.Column('subject', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
            sa.Column('at', creditgate.adapters.sql.types.UTCDateTime(timezone=True), nullable=False),
            sa.Column('group_key', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
            sa.Column('sum', creditgate.adapters.sql.types.ExactDecimal(precision=38, scale=12), nullable=False),
            sa.Column('count', sa.BigInteger(), nullable=False),
            sa.PrimaryKeyConstraint('meter_id', 'subject', 'at', 'group_key'),
        )
    if op.get_bind().dialect.name == "postgresql":
        for stmt in _PG_BACKFILL.split(";"):
            op.execute(stmt)
        op.execute(_PG_FUNCTION)
        for stmt in _PG_TRIGGERS:
            op.execute(stmt)
    else:
        for table in TABLES:
            op.execute(_sqlite_backfill(table))
        for stmt in _SQLITE_TRIGGERS:
            op.execute(stmt)


def downgrade() -> None:
    names = ("usage_buckets_insert", "usage_buckets_update", "usage_buckets_delete")
    if op.get_bind().dialect.name == "postgresql":
        for name in names:
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON meter_minutes")
        op.execute("DROP FUNCTION IF EXISTS usage_buckets_fold()")
    else:
        for name in (*names, "usage_buckets_rekey"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    for table in TABLES:
        op.drop_table(table)
