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

The read engine's connections go one step further (:class:`LoopReadConnection`): a statement
that only reads runs on the event loop's own thread, with no hand-off at all. A page read
takes tens of microseconds, less than one hand-off costs when the loop is busy: the thread
has to win the GIL back from the loop after every row, and each round trip then waits behind
every ready callback. Such a read never blocks the loop for long. In WAL mode a reader does
not wait for writers; the connection's busy timeout is 0, so a read that would have to wait
fails at once; and a progress handler stops a read that runs past :data:`LOOP_READ_SECONDS`.
Either way the statement runs again on the connection's thread, waiting as long as any other
connection would.

Everything else (isolation levels, server-side cursors, error classes) is SQLAlchemy's own
adapter, unchanged. :func:`dbapi` and :func:`read_dbapi` return :class:`StockDBAPI` when the
installed aiosqlite lacks the private call this relies on.

Both modules connect the same way, with one fix (:class:`StockDBAPI`): when a file cannot be
opened, aiosqlite queues its worker thread's stop and raises without waiting for it. If the
event loop closes first (a CLI command's ``asyncio.run`` ending on that error), the thread dies
with an "Event loop is closed" traceback on stderr, so a failed connect waits for the thread.
"""

from __future__ import annotations

import asyncio
import collections
import re
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
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
# How long a writer waits for its turn (in this process, then SQLite's busy_timeout across them).
WRITE_WAIT_SECONDS = 5.0
# SQLite's busy timeout: how long a statement waits for another process's lock.
BUSY_TIMEOUT_MS = 5000
# The longest a read may keep the event loop before it is stopped and run on its thread.
LOOP_READ_SECONDS = 0.002
# How many SQLite VM instructions run between two looks at the clock (tens of microseconds).
_PROGRESS_STEPS = 1000
# Why a read on the event loop gave up: another connection's lock, or the progress handler.
_RETRY_ON_THREAD = frozenset({"SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_INTERRUPT"})
# Statements that never write; any other one (INSERT, UPDATE, DDL, SAVEPOINT…) needs the turn.
_READ_ONLY = re.compile(r"\s*(SELECT|PRAGMA|EXPLAIN)\b", re.IGNORECASE)


class WriteTurns:
    """One writing transaction at a time among an engine's connections, in arrival order.

    SQLite allows one writer per database. A second connection that tries to write waits in
    SQLite's busy handler, which polls with sleeps growing to 100 ms: with 32 requests
    creating items at once, the unlucky ones lost every poll and waited over 600 ms. Here a
    connection about to write first waits for its turn on an asyncio lock, first come first
    served, and holds it until its transaction ends; SQLite's busy handler is then only met
    across processes. A connection that waits longer than :data:`WRITE_WAIT_SECONDS` gets
    SQLite's own "database is locked" error, as it would have from the busy handler.
    """

    def __init__(self) -> None:
        # asyncio locks belong to one event loop; an engine may outlive one (tests, the CLI).
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        self._holder: tuple[OneHopConnection, asyncio.Lock] | None = None

    def take(self, connection: OneHopConnection) -> None:
        """Wait (from SQLAlchemy's greenlet) until ``connection`` may write."""
        if self._holder is not None and self._holder[0] is connection:
            return
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            lock = self._locks[loop] = asyncio.Lock()
        try:
            await_(_acquire(lock))
        except TimeoutError:
            raise sqlite3.OperationalError("database is locked") from None
        self._holder = (connection, lock)

    def give_back(self, connection: OneHopConnection) -> None:
        """End ``connection``'s turn, if it has one and its transaction is over."""
        holder = self._holder
        if holder is not None and holder[0] is connection and not connection._in_transaction():
            self._holder = None
            holder[1].release()


async def _acquire(lock: asyncio.Lock) -> None:
    # asyncio.timeout, not wait_for: on Python 3.11 wait_for could time out just as the lock
    # was acquired and leave it held forever; a timeout raises only if the wait was cancelled.
    async with asyncio.timeout(WRITE_WAIT_SECONDS):
        await lock.acquire()


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


def _run_on_loop(
    connection: sqlite3.Connection, operation: str, parameters: Any, many: bool
) -> _Outcome:
    """On the event loop's thread: run one statement, stopped if it outlasts its budget."""
    deadline = time.perf_counter() + LOOP_READ_SECONDS
    connection.set_progress_handler(lambda: time.perf_counter() > deadline, _PROGRESS_STEPS)
    try:
        return _run_statement(connection, operation, parameters, many)
    finally:
        connection.set_progress_handler(None, 0)


def _run_waiting(
    connection: sqlite3.Connection, operation: str, parameters: Any, many: bool
) -> _Outcome:
    """On the connection's thread: run one statement, waiting for locks like other connections."""
    connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    try:
        return _run_statement(connection, operation, parameters, many)
    finally:
        connection.execute("PRAGMA busy_timeout=0")


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
        adapt_connection = self._adapt_connection
        turns = adapt_connection.dbapi.write_turns
        try:
            outcome = adapt_connection._outcome(operation, parameters, many)
        except Exception as error:  # noqa: BLE001 - re-raised by SQLAlchemy's handler
            adapt_connection._handle_exception(error)
        finally:
            turns.give_back(adapt_connection)  # a statement outside a transaction, or a failed one
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
    # Whether read-only statements run on the event loop's thread (and busy_timeout is 0).
    reads_on_loop = False

    def _outcome(self, operation: str, parameters: Any, many: bool) -> _Outcome:
        """Run one statement on the connection's thread, after taking the write turn if needed."""
        if not _READ_ONLY.match(operation):
            self.dbapi.write_turns.take(self)
        return self._on_thread(_run_statement, operation, parameters, many)

    def _on_thread(
        self, run: Callable[..., _Outcome], operation: str, parameters: Any, many: bool
    ) -> _Outcome:
        connection = self._connection
        outcome: _Outcome = await_(
            connection._execute(run, connection._conn, operation, parameters, many)
        )
        return outcome

    def _in_transaction(self) -> bool:
        # A plain flag read on the sqlite3 connection; no statement is running on it now.
        connection = self._connection._connection
        return connection is not None and connection.in_transaction

    def commit(self) -> None:
        self._end_transaction(super().commit)

    def rollback(self) -> None:
        self._end_transaction(super().rollback)

    def _end_transaction(self, end: Callable[[], None]) -> None:
        try:
            if self._in_transaction():
                end()
        finally:
            self.dbapi.write_turns.give_back(self)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.dbapi.write_turns.give_back(self)


class LoopReadConnection(OneHopConnection):
    """A connection of the read engine: reads run on the event loop's thread (see the module).

    Opened with ``check_same_thread=False``: the connection is used from its own thread and
    the loop's, never from both at once (a statement on the thread is awaited before the next).
    """

    __slots__ = ()
    reads_on_loop = True

    def _outcome(self, operation: str, parameters: Any, many: bool) -> _Outcome:
        if not _READ_ONLY.match(operation):
            return super()._outcome(operation, parameters, many)
        try:
            outcome = _run_on_loop(self._connection._conn, operation, parameters, many)
        except sqlite3.OperationalError as error:
            if error.sqlite_errorname not in _RETRY_ON_THREAD:
                raise
            return self._on_thread(_run_waiting, operation, parameters, many)
        # SQLAlchemy's AsyncConnection refuses a statement that awaited nothing (the mark of
        # a blocking driver); awaiting a finished coroutine satisfies it without a loop turn.
        return await_(_finished(outcome))


async def _finished(outcome: _Outcome) -> _Outcome:
    return outcome


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
    """The DB-API module SQLAlchemy's aiosqlite dialect is given (``create_engine(module=)``).

    One per engine, so its :class:`WriteTurns` are shared by exactly the engine's connections.
    """

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.write_turns = WriteTurns()

    def _adapt(self, connection: Any) -> OneHopConnection:
        return OneHopConnection(self, connection)


class LoopReadDBAPI(OneHopDBAPI):
    """The DB-API module of the read engine, whose connections are :class:`LoopReadConnection`."""

    def connect(self, *args: Any, **kwargs: Any) -> AsyncAdapt_aiosqlite_connection:
        return super().connect(*args, **{**kwargs, "check_same_thread": False})

    def _adapt(self, connection: Any) -> LoopReadConnection:
        return LoopReadConnection(self, connection)


def _has_one_hop_call() -> bool:
    return hasattr(aiosqlite.Connection, "_execute")


def dbapi(fast_paths: bool = True) -> StockDBAPI:
    """The DB-API module for the engine: one-hop statements unless ``fast_paths`` is off.

    The one-hop module needs a private aiosqlite call; without it the stock statements are used.
    """
    if fast_paths and _has_one_hop_call():
        return OneHopDBAPI(aiosqlite, sqlite3)
    return StockDBAPI(aiosqlite, sqlite3)


def read_dbapi() -> StockDBAPI:
    """The DB-API module for the read engine: reads on the event loop when aiosqlite allows."""
    if _has_one_hop_call():
        return LoopReadDBAPI(aiosqlite, sqlite3)
    return StockDBAPI(aiosqlite, sqlite3)
