"""SQLAlchemy's aiosqlite driver, with one thread hand-off per statement instead of four.

An aiosqlite connection is a thread with a queue, and every call on it is a round trip: the
event loop queues the call, the thread runs it, and the result comes back as a callback on
the loop. SQLAlchemy's adapter makes four for each statement (open a cursor, execute, fetch
all rows, close the cursor) and one more for the rollback that resets every connection
returned to the pool, although a connection that only read has nothing to roll back.

Under load each round trip waits its turn behind every other ready callback in the loop, and
the connection stays checked out meanwhile, so the round trips, not the queries, limited how
many reads a worker served. Here a statement is one round trip (cursor, execute, fetch and
close run together on the connection's thread), and commit and rollback are skipped when
SQLite says no transaction is open, which is exactly when they would do nothing.

Everything else (isolation levels, server-side cursors, error classes) is SQLAlchemy's own
adapter, unchanged. :func:`dbapi` returns None when the installed aiosqlite lacks the private
call this relies on, and the engine then uses :class:`StockDBAPI`.

Both modules connect the same way, with one fix (:class:`StockDBAPI`): when a file cannot be
opened, aiosqlite queues its worker thread's stop and raises without waiting for it. If the
event loop closes first (a CLI command's ``asyncio.run`` ending on that error), the thread dies
with an "Event loop is closed" traceback on stderr, so a failed connect waits for the thread.
"""

from __future__ import annotations

import asyncio
import collections
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util.concurrency import await_

_Outcome = tuple[Any, list[Any], int, int | None]

# How long a failed connect waits for aiosqlite's worker thread to take its stop request.
_WORKER_STOP_SECONDS = 2.0


def _run_statement(
    connection: sqlite3.Connection, operation: str, parameters: Any, many: bool
) -> _Outcome:
    """On the connection's thread: run one statement and collect everything it returns."""
    cursor = connection.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        else:
            cursor.execute(operation, () if parameters is None else parameters)
        rows = cursor.fetchall() if cursor.description else []
        return cursor.description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


class OneHopCursor:
    """A DB-API cursor whose ``execute`` makes a single trip to the connection's thread."""

    server_side = False

    def __init__(self, adapt_connection: OneHopConnection) -> None:
        self._adapt_connection = adapt_connection
        self._rows: collections.deque[Any] = collections.deque()
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self.arraysize = 1

    def _run(self, operation: str, parameters: Any, many: bool) -> None:
        connection = self._adapt_connection._connection
        try:
            outcome: _Outcome = await_(
                connection._execute(_run_statement, connection._conn, operation, parameters, many)
            )
        except Exception as error:  # noqa: BLE001 - re-raised by SQLAlchemy's handler
            self._adapt_connection._handle_exception(error)
        self.description, rows, self.rowcount, self.lastrowid = outcome
        self._rows = collections.deque(rows)

    def execute(self, operation: str, parameters: Any = None) -> None:
        self._run(operation, parameters, many=False)

    def executemany(self, operation: str, seq_of_parameters: Any) -> None:
        self._run(operation, seq_of_parameters, many=True)

    def setinputsizes(self, *inputsizes: Any) -> None:
        """Nothing to do: SQLite ignores input sizes."""

    def close(self) -> None:
        self._rows.clear()

    async def _async_soft_close(self) -> None:
        """Nothing to do: the sqlite3 cursor was closed on the thread, rows are kept."""

    def fetchone(self) -> Any:
        return self._rows.popleft() if self._rows else None

    def fetchmany(self, size: int | None = None) -> Sequence[Any]:
        rows = self._rows
        return [rows.popleft() for _ in range(min(size or self.arraysize, len(rows)))]

    def fetchall(self) -> Sequence[Any]:
        rows = list(self._rows)
        self._rows.clear()
        return rows

    def __iter__(self) -> Iterator[Any]:
        while self._rows:
            yield self._rows.popleft()


class OneHopConnection(AsyncAdapt_aiosqlite_connection):
    """SQLAlchemy's aiosqlite connection adapter with :class:`OneHopCursor` statements."""

    __slots__ = ()
    _cursor_cls = OneHopCursor  # type: ignore[assignment]

    def _in_transaction(self) -> bool:
        # A plain flag read on the sqlite3 connection; no statement is running on it now.
        connection = self._connection._connection
        return connection is not None and connection.in_transaction

    def commit(self) -> None:
        if self._in_transaction():
            super().commit()

    def rollback(self) -> None:
        if self._in_transaction():
            super().rollback()


class StockDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """SQLAlchemy's aiosqlite DB-API module, with a failed connect that cleans up first."""

    def connect(self, *args: Any, **kwargs: Any) -> AsyncAdapt_aiosqlite_connection:
        connection = self.aiosqlite.connect(*args, **kwargs)
        # Before aiosqlite 0.22 the connection was the thread itself.
        thread = connection if isinstance(connection, threading.Thread) else connection._thread
        thread.daemon = True  # as SQLAlchemy's own connect does
        try:
            await_(connection)
        except BaseException:
            await_(asyncio.to_thread(thread.join, _WORKER_STOP_SECONDS))
            raise
        return self._adapt(connection)

    def _adapt(self, connection: Any) -> AsyncAdapt_aiosqlite_connection:
        return AsyncAdapt_aiosqlite_connection(self, connection)


class OneHopDBAPI(StockDBAPI):
    """The DB-API module SQLAlchemy's aiosqlite dialect is given (``create_engine(module=)``)."""

    def _adapt(self, connection: Any) -> OneHopConnection:
        return OneHopConnection(self, connection)


def dbapi(fast_paths: bool = True) -> StockDBAPI:
    """The DB-API module for the engine: one-hop statements unless ``fast_paths`` is off.

    The one-hop module needs a private aiosqlite call; without it the stock statements are used.
    """
    if fast_paths and hasattr(aiosqlite.Connection, "_execute"):
        return OneHopDBAPI(aiosqlite, sqlite3)
    return StockDBAPI(aiosqlite, sqlite3)
