"""notifications

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 11:20:00

Reserved this session for issue 11 (notification channels, rules, events, outbox, deliveries); the owner fills in upgrade/downgrade and this docstring.
"""

from __future__ import annotations

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
