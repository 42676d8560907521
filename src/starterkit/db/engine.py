"""Async engine and session factory built from Settings; SQLite gets its pragmas here."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import StaticPool

from starterkit.database_url import DatabaseKind
from starterkit.db import sqlite_driver
from starterkit.db.pool import KeepOverflowPool
from starterkit.db.sqlite_driver import BUSY_TIMEOUT_MS
from starterkit.settings import Settings


def make_private(path: str) -> None:
    """Create the SQLite file ``path`` readable by its owner only, or make it so.

    The file holds password hashes; SQLite would create it (and its ``-wal`` and ``-shm``
    files, which take the database file's mode) readable by everyone under the usual umask.
    """
    # Any failure (the file exists, its folder does not) is left for SQLite to report.
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    for name in (path, f"{path}-wal", f"{path}-shm"):
        file = Path(name)
        with contextlib.suppress(FileNotFoundError, PermissionError):
            if file.stat().st_mode & 0o077:
                file.chmod(0o600)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # Foreign keys are off by default in SQLite; ON DELETE CASCADE depends on them.
        cursor.execute("PRAGMA foreign_keys=ON")
        # Writers wait for each other instead of failing with "database is locked"; a
        # connection whose reads run on the event loop must not wait there (see sqlite_driver).
        waits = 0 if getattr(dbapi_connection, "reads_on_loop", False) else BUSY_TIMEOUT_MS
        cursor.execute(f"PRAGMA busy_timeout={waits}")
        cursor.execute("PRAGMA journal_mode")
        if cursor.fetchone()[0] != "memory":
            # WAL lets readers run while one writer commits; NORMAL sync is safe under WAL.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _sqlite_module(settings: Settings) -> dict[str, Any]:
    # One thread hand-off per statement instead of four (unless turned off); see sqlite_driver.
    return {"module": sqlite_driver.dbapi(settings.sqlite_fast_paths)}


def sqlite_file_of(settings: Settings) -> str | None:
    """The file of a SQLite database, or None for PostgreSQL, in-memory SQLite and URIs."""
    if settings.database_kind is not DatabaseKind.SQLITE_FILE:
        return None
    url = make_url(settings.database_url)
    if url.query.get("uri") or url.database is None or url.database.startswith("file:"):
        return None
    return url.database


def create_engine(settings: Settings) -> AsyncEngine:
    """Create the async engine for ``settings.database_url``.

    A pooled connection the server has closed is replaced when it is checked out (see
    :func:`_replace_closed_connection`), so the service recovers by itself after a database
    restart, and waiting for a pooled connection is bounded by ``database_pool_timeout`` so
    exhaustion turns into a quick 503 instead of a hung request.
    """
    kind = settings.database_kind
    # Errors and their log records show the SQL but never the values: typed emails, hashes.
    options: dict[str, Any] = {"hide_parameters": True}
    if kind.is_sqlite:
        options.update(_sqlite_module(settings))
        if kind is DatabaseKind.SQLITE_MEMORY:
            # One shared connection, or every session would see its own empty database.
            options["poolclass"] = StaticPool
    else:
        options.update(
            # Overflow connections are reused while the load lasts, not reopened (db/pool.py).
            poolclass=KeepOverflowPool,
            pool_size=settings.database_pool_size,
            max_overflow=settings.database_max_overflow,
            pool_timeout=settings.database_pool_timeout,
            connect_args={"timeout": settings.database_pool_timeout},
        )
    engine = create_async_engine(settings.database_url, **options)
    if kind.is_sqlite:
        _listen_for_connections(engine, settings)
    else:
        event.listen(engine.sync_engine, "checkout", _replace_closed_connection)
    return engine


def _replace_closed_connection(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Make the pool replace a connection the server has closed, at checkout.

    A server connection can die while pooled (restart, failover, an idle timeout). The server
    closes its end, and asyncpg marks the connection closed as soon as the event loop reads
    that; so checking the flag finds what a pre-ping would, without the pre-ping's round trip
    on every checkout (a tenth of an uncached read's time). SQLAlchemy takes the
    ``DisconnectionError`` as "connect again" and retries with a fresh connection.
    """
    if dbapi_connection._connection.is_closed():
        raise DisconnectionError("the server closed this pooled connection")


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Session factory whose objects stay usable after commit (no implicit reloads)."""
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def create_read_engine(settings: Settings, engine: AsyncEngine) -> AsyncEngine:
    """The engine of starterkit's own one-statement reads, next to ``engine`` (the writes').

    On a SQLite file it is a second engine with a single connection. Each aiosqlite connection
    is a thread, and every statement hands work to it and back; with several connections busy
    at once those threads and the event loop fight over the GIL, which costs more than the
    queries (measured in ``docs/performance.md``). With one connection the reads queue in the
    event loop instead, and WAL lets them run while a write is in progress. Its reads run on
    the event loop's own thread, without a hand-off, unless one would wait for a lock or run
    long (``sqlite_driver.LoopReadConnection``). Its connections must not be held across
    other awaits.

    On PostgreSQL it shares ``engine``'s pool but runs in autocommit mode, which saves the
    BEGIN and ROLLBACK round trips around the one SELECT. In-memory SQLite has one connection
    anyway, and SQLITE_FAST_PATHS=false asks for no second engine: ``engine`` itself is
    returned then.
    """
    kind = settings.database_kind
    if kind is DatabaseKind.POSTGRESQL:
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    if kind is DatabaseKind.SQLITE_MEMORY or not settings.sqlite_fast_paths:
        return engine
    reads = create_async_engine(
        settings.database_url,
        hide_parameters=True,
        pool_size=1,
        max_overflow=0,
        pool_timeout=settings.database_pool_timeout,
        module=sqlite_driver.read_dbapi(),
    )
    _listen_for_connections(reads, settings)
    return reads


def create_autocommit_engine(settings: Settings, engine: AsyncEngine) -> AsyncEngine:
    """The engine of starterkit's own one-statement writes: each statement commits by itself.

    Creating an item is one INSERT. In a transaction it costs a BEGIN and a COMMIT besides
    (on SQLite a second hand-off to aiosqlite's thread, on PostgreSQL two more round trips);
    in autocommit mode the INSERT is the whole transaction. Use it with ``begin()``, which
    commits nothing more on such an engine and stays correct on ``engine`` itself.

    On PostgreSQL it is ``engine`` in autocommit mode, sharing its pool (asyncpg switches
    modes without a round trip). On a SQLite file it is a second engine opened in autocommit
    mode with the same pool and the same DB-API module, so with the fast paths on its writers
    take their turns (``sqlite_driver.WriteTurns``) with ``engine``'s. In-memory SQLite gets
    ``engine`` itself: its one connection is shared by every checkout, and switching it to
    autocommit would commit whatever transaction another checkout has open.
    """
    kind = settings.database_kind
    if kind is DatabaseKind.POSTGRESQL:
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    if kind is DatabaseKind.SQLITE_MEMORY:
        return engine
    writes = create_async_engine(
        settings.database_url,
        hide_parameters=True,
        isolation_level="AUTOCOMMIT",
        module=engine.sync_engine.dialect.loaded_dbapi,
    )
    _listen_for_connections(writes, settings)
    return writes


def _listen_for_connections(engine: AsyncEngine, settings: Settings) -> None:
    path = sqlite_file_of(settings)
    if path is not None:
        # Before SQLite opens (and would create) the file.
        event.listen(engine.sync_engine, "do_connect", lambda *_: make_private(path))
    event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
