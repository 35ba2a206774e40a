"""notifications

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 11:20:00

Balance-threshold notifications (issue 11, docs/semantics.md §11): channels, rules and the rules'
channels; events; `notification_marks`, whose primary key (rule, entitlement, usage period start,
threshold) makes "at most one event per threshold per period" hold in the database; the delivery
queue (one row per event and channel); and `notification_pending`, the evaluation work that writes
record in their own transaction (a subject whose values may have crossed a threshold, and the next
instant its values change with no write).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import creditgate.adapters.sql.types

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def _json(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'),
                     nullable=nullable)


def _ts(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, creditgate.adapters.sql.types.UTCDateTime(timezone=True), nullable=nullable)


def _id(name: str) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.String(length=26), nullable=False)


def upgrade() -> None:
    op.create_table(
        'notification_channels',
        _id('id'), sa.Column('type', sa.String(length=16), nullable=False),
        sa.Column('name', sa.String(), nullable=False), sa.Column('url', sa.Text(), nullable=False),
        _json('custom_headers'), sa.Column('signing_secret', sa.String(), nullable=False),
        sa.Column('disabled', sa.Boolean(), nullable=False),
        _ts('created_at'), _ts('updated_at'), _ts('deleted_at', True),
        sa.PrimaryKeyConstraint('id'))
    op.create_table(
        'notification_rules',
        _id('id'), sa.Column('type', sa.String(length=64), nullable=False),
        sa.Column('name', sa.String(), nullable=False), _json('thresholds'), _json('feature_ids', True),
        sa.Column('disabled', sa.Boolean(), nullable=False),
        _ts('created_at'), _ts('updated_at'), _ts('deleted_at', True),
        sa.PrimaryKeyConstraint('id'))
    op.create_table(
        'notification_rule_channels',
        _id('rule_id'), _id('channel_id'), sa.Column('position', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('rule_id', 'channel_id'))
    op.create_index('ix_notification_rule_channels_channel', 'notification_rule_channels', ['channel_id'])
    op.create_table(
        'notification_events',
        _id('id'), sa.Column('type', sa.String(length=64), nullable=False), _id('rule_id'),
        sa.Column('subject_key', sa.String(), nullable=False), _id('feature_id'),
        sa.Column('feature_key', sa.String(), nullable=False), _id('entitlement_id'), _ts('period_start'),
        sa.Column('threshold_type', sa.String(length=8), nullable=False),
        sa.Column('threshold_value', creditgate.adapters.sql.types.ExactDecimal(precision=38, scale=12),
                  nullable=False),
        _json('value'), _json('payload'), _json('annotations'), _ts('created_at'),
        sa.PrimaryKeyConstraint('id'))
    op.create_index('ix_notification_events_created', 'notification_events', ['created_at'])
    op.create_index('ix_notification_events_rule', 'notification_events', ['rule_id'])
    op.create_index('ix_notification_events_subject', 'notification_events', ['subject_key'])
    op.create_table(
        'notification_marks',
        _id('rule_id'), _id('entitlement_id'), _ts('period_start'),
        sa.Column('threshold', sa.String(length=64), nullable=False), _id('event_id'),
        sa.Column('passed', sa.Boolean(), nullable=False), _ts('created_at'),
        sa.PrimaryKeyConstraint('rule_id', 'entitlement_id', 'period_start', 'threshold'))
    op.create_table(
        'notification_deliveries',
        _id('event_id'), _id('channel_id'), sa.Column('state', sa.String(length=8), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False), sa.Column('last_error', sa.Text(), nullable=True),
        _ts('next_attempt_at', True), _ts('first_attempt_at', True), _ts('updated_at'),
        sa.PrimaryKeyConstraint('event_id', 'channel_id'))
    op.create_index('ix_notification_deliveries_due', 'notification_deliveries', ['state', 'next_attempt_at'])
    op.create_table(
        'notification_pending',
        sa.Column('subject_key', sa.String(), nullable=False), _ts('due_at'),
        sa.Column('version', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
        _ts('claimed_until', True),
        sa.PrimaryKeyConstraint('subject_key'))
    op.create_index('ix_notification_pending_due', 'notification_pending', ['due_at'])


def downgrade() -> None:
    op.drop_index('ix_notification_pending_due', table_name='notification_pending')
    op.drop_table('notification_pending')
    op.drop_index('ix_notification_deliveries_due', table_name='notification_deliveries')
    op.drop_table('notification_deliveries')
    op.drop_table('notification_marks')
    for ix in ('ix_notification_events_subject', 'ix_notification_events_rule', 'ix_notification_events_created'):
        op.drop_index(ix, table_name='notification_events')
    op.drop_table('notification_events')
    op.drop_index('ix_notification_rule_channels_channel', table_name='notification_rule_channels')
    op.drop_table('notification_rule_channels')
    op.drop_table('notification_rules')
    op.drop_table('notification_channels')
