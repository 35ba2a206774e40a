"""installation id

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 08:30:00

One row holding this database's random id, generated here: an upgrade never touches it again and
a restored dump carries it. The Redis value cache puts it in its key namespace, so two databases
sharing a Redis never see each other's entries.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import sqlalchemy as sa
import sqlmodel
from alembic import op

import creditgate.adapters.sql.types

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        'installation',
        sa.Column('singleton', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('created_at', creditgate.adapters.sql.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint('singleton = 1', name='ck_installation_singleton'),
        sa.PrimaryKeyConstraint('singleton'),
    )
    op.bulk_insert(table, [{'singleton': 1, 'id': secrets.token_hex(16), 'created_at': datetime.now(UTC)}])


def downgrade() -> None:
    op.drop_table('installation')
