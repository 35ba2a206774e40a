"""coarser usage buckets

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 11:20:00

Reserved this session for issue 10 (hour/day usage buckets); the owner fills in upgrade/downgrade and this docstring.
"""

from __future__ import annotations

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
