"""Alembic environment: runs migrations with a synchronous engine."""

from __future__ import annotations

from alembic import context

from creditgate.adapters.sql.db import sync_engine
from creditgate.adapters.sql.tables import metadata

config = context.config
url = config.get_main_option("sqlalchemy.url") or ""
engine = sync_engine(url)
with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True,
                      compare_type=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
