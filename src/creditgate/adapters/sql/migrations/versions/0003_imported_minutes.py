"""imported minute aggregates

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 08:50:00

`meter_minutes.imported`: the value the source's meter query gave for this minute when
`creditgate import` wrote the row (NULL for rows built from events only). Ingest never
touches it, so later events still add to an imported minute. UNIQUE_COUNT meters read it
(their distinct values cannot be rebuilt from a count), and it tells imported rows apart.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import creditgate.adapters.sql.types

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('meter_minutes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('imported', creditgate.adapters.sql.types.ExactDecimal(precision=38, scale=12),
                                      nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('meter_minutes', schema=None) as batch_op:
        batch_op.drop_column('imported')
