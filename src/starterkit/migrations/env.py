"""Alembic environment for starterkit's shipped migrations.

The Config is normally built in code by ``starterkit.db.migrate``, which passes the Settings in
``config.attributes["starterkit_settings"]``; run through the plain ``alembic`` command, the
settings are read from the environment instead.
"""

from __future__ import annotations

import asyncio
import importlib

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

import starterkit.db.models  # noqa: F401 - registers starterkit's tables on Base.metadata
from starterkit.db.base import Base
from starterkit.db.engine import make_private, sqlite_file_of
from starterkit.settings import Settings

config = context.config
settings: Settings = config.attributes.get("starterkit_settings") or Settings()
for module in settings.model_modules:
    importlib.import_module(module)  # your tables join Base.metadata for `migrate check`
target_metadata = Base.metadata
# The tables these migrations answer for: starterkit's and those of MODEL_MODULES. Models that
# merely happen to be imported (say, by a test) are left out of `migrate check`.
_OWNED_TABLES = {
    str(getattr(mapper.local_table, "name", ""))
    for mapper in Base.registry.mappers
    if mapper.class_.__module__.startswith("starterkit.")
    or mapper.class_.__module__ in settings.model_modules
}


def _include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    if type_ == "table":
        return name in _OWNED_TABLES
    table = getattr(obj, "table", None)
    return table is None or getattr(table, "name", None) in _OWNED_TABLES


def _configure(connection: Connection) -> None:
    if connection.dialect.name == "sqlite":
        # Batch mode recreates tables; with foreign keys on, dropping one would cascade.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies tables
        compare_type=True,
        include_object=_include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    path = sqlite_file_of(settings)
    if path is not None:
        make_private(path)  # the first migration usually creates the file: owner only
    engine = create_async_engine(settings.database_url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_configure)
            # The PRAGMA above began the connection's transaction, so Alembic left it to us.
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(
        url=settings.database_url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online())
