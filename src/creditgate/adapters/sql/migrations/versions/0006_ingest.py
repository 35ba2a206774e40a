"""ingest staging

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 11:20:00

Reserved this session for issue 10 ingest (only if ingest needs a schema change); the owner fills in upgrade/downgrade and this docstring.
"""

from __future__ import annotations

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
