"""This database's installation id (one row, made by migration 0002; see tables.InstallationRow)."""

from __future__ import annotations

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from creditgate.adapters.sql.db import Database
from creditgate.adapters.sql.tables import InstallationRow


class NoInstallation(RuntimeError):
    """The database has no installation row: it was not created by `creditgate migrate`."""


async def installation_id(session: AsyncSession) -> str:
    found = (await session.exec(select(InstallationRow.id))).first()
    if not found:
        raise NoInstallation("the database has no installation id: run `creditgate migrate`")
    return found


async def read_installation_id(db: Database) -> str:
    """The id, read once at start-up (never cached elsewhere: a restored dump brings its own)."""
    async with db.read() as session:
        return await installation_id(session)
