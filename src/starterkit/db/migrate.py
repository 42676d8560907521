"""Run starterkit's shipped Alembic migrations from code (the CLI and tests use this).

The migrations live in the package (``starterkit:migrations``) on their own branch label,
``starterkit``, so a project can keep its own migrations in the same version table.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from starterkit.settings import Settings

SCRIPT_LOCATION = "starterkit:migrations"


def alembic_config(settings: Settings, *, version_locations: Iterable[str] = ()) -> Config:
    """An Alembic Config for ``settings``, with starterkit's migrations and your own.

    Your revisions live in their own directories on their own branch label (give your first
    revision ``branch_labels = ("myapp",)`` and ``depends_on = "starterkit_0001"`` if it
    references starterkit's tables); all branches share one ``alembic_version`` table.

    Args:
        settings: which database to migrate; ``settings.migration_locations`` are included.
        version_locations: more directories (or ``package:path``) of revisions.
    """
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    locations = [
        f"{SCRIPT_LOCATION}/versions",
        *settings.migration_locations,
        *version_locations,
    ]
    # Newlines separate the locations: paths may hold spaces, and package paths hold colons.
    config.set_main_option("version_locations", "\n".join(locations))
    config.set_main_option("path_separator", "newline")
    config.attributes["starterkit_settings"] = settings
    return config


def upgrade(settings: Settings, revision: str = "heads") -> None:
    """Apply migrations up to ``revision`` (all heads by default)."""
    command.upgrade(alembic_config(settings), revision)


def downgrade(settings: Settings, revision: str) -> None:
    """Revert migrations down to ``revision`` (``base`` removes every starterkit table)."""
    command.downgrade(alembic_config(settings), revision)


def check(settings: Settings) -> None:
    """Raise ``alembic.util.CommandError`` if the models differ from the migrated database."""
    command.check(alembic_config(settings))


def head_revisions(settings: Settings) -> set[str]:
    """The revisions a fully migrated database is at."""
    return set(ScriptDirectory.from_config(alembic_config(settings)).get_heads())


def current_revisions(settings: Settings) -> set[str]:
    """The revisions the database is at now (empty for a new database)."""

    def read(connection: Connection) -> set[str]:
        return set(MigrationContext.configure(connection).get_current_heads())

    async def run() -> set[str]:
        engine = create_async_engine(settings.database_url, poolclass=pool.NullPool)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(read)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def pending_revisions(settings: Settings) -> bool:
    """True if the database is not at every head."""
    return current_revisions(settings) != head_revisions(settings)
