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

Everything else (connecting, isolation levels, server-side cursors, error classes) is
SQLAlchemy's own adapter, unchanged. :func:`dbapi` returns None when the installed aiosqlite
lacks the private call this relies on, and the engine then uses the stock adapter.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util.concurrency import await_

_Outcome = tuple[Any, list[Any], int, int | None]


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


class OneHopDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """The DB-API module SQLAlchemy's aiosqlite dialect is given (``create_engine(module=)``)."""

    def connect(self, *args: Any, **kwargs: Any) -> OneHopConnection:
        stock = super().connect(*args, **kwargs)
        return OneHopConnection(self, stock._connection)


def dbapi() -> OneHopDBAPI | None:
    """The one-hop DB-API module, or None if this aiosqlite lacks what it needs."""
    if not hasattr(aiosqlite.Connection, "_execute"):
        return None  # pragma: no cover - every aiosqlite release since 0.11 has it
    return OneHopDBAPI(aiosqlite, sqlite3)
