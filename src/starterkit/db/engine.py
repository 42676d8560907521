"""Async engine and session factory built from Settings; SQLite gets its pragmas here."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import StaticPool

from starterkit.settings import Settings


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # Foreign keys are off by default in SQLite; ON DELETE CASCADE depends on them.
        cursor.execute("PRAGMA foreign_keys=ON")
        # Writers wait for each other instead of failing with "database is locked".
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.execute("PRAGMA journal_mode")
        if cursor.fetchone()[0] != "memory":
            # WAL lets readers run while one writer commits; NORMAL sync is safe under WAL.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def create_engine(settings: Settings) -> AsyncEngine:
    """Create the async engine for ``settings.database_url``.

    Connections are pre-pinged so the service recovers by itself after a database restart, and
    waiting for a pooled connection is bounded by ``database_pool_timeout`` so exhaustion turns
    into a quick 503 instead of a hung request.
    """
    url = make_url(settings.database_url)
    options: dict[str, Any] = {}
    if url.get_backend_name() == "sqlite":
        if url.database in (None, "", ":memory:"):
            # One shared connection, or every session would see its own empty database.
            options["poolclass"] = StaticPool
    else:
        options.update(
            # A server connection can die while pooled (restart, failover): test it first.
            pool_pre_ping=True,
            pool_size=settings.database_pool_size,
            max_overflow=settings.database_max_overflow,
            pool_timeout=settings.database_pool_timeout,
            connect_args={"timeout": settings.database_pool_timeout},
        )
    engine = create_async_engine(url, **options)
    if url.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
    return engine


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Session factory whose objects stay usable after commit (no implicit reloads)."""
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def create_read_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions for reads of a single statement, which need no transaction around them.

    On PostgreSQL they run in autocommit mode, which saves the BEGIN and ROLLBACK round trips
    around the one SELECT. SQLite's driver begins no transaction for a SELECT anyway.
    """
    if engine.dialect.name == "postgresql":
        engine = engine.execution_options(isolation_level="AUTOCOMMIT")
    return create_sessionmaker(engine)
