"""On PostgreSQL, knowing when users rows change: LISTEN on the channel that migration
``starterkit_0010``'s trigger notifies.

The user cache (:mod:`starterkit.auth.user_cache`) keeps rows only under a *stamp* that
changes whenever any users row may have changed; this listener's stamp is a counter it moves on
every notification and on every loss or regain of its connection. While it is not listening
(not started, connecting, the database away, the trigger missing) the stamp is None and the
cache keeps nothing: every request loads its user, which is slower but never stale.

A notification is sent when the changing transaction commits, whoever ran it (another
instance, the CLI, psql), but it reaches this process a moment later, and a busy machine can
stretch that moment past the next request. So :meth:`UsersListener.current` first waits for a
round trip on the listening connection that began after it was called: PostgreSQL writes
pending notifications to a connection before it answers the connection's next query, and
asyncpg hands them over before the answer. One round trip serves every request that asked
before it began, so a busy process pays about one per batch of requests, not one per request.

The same round trips, or one every ``heartbeat_seconds`` when no request asks, catch a
connection that silently stops delivering (a half-open TCP connection). The listening
connection is a plain asyncpg connection of its own, outside the pool: LISTEN needs a session,
so a pooler in transaction mode (PgBouncer's default) cannot carry it; point DATABASE_URL at
PostgreSQL or a session-mode pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

logger = logging.getLogger("starterkit.auth")

CHANNEL = "starterkit_users"
OFF = "off"  # sent by the downgrade that drops the trigger
_TRIGGER_PRESENT = (
    "SELECT count(*) FROM pg_trigger WHERE tgname = 'users_notify_change' "
    "AND tgrelid = to_regclass('users')"
)


def asyncpg_dsn(database_url: str) -> str:
    """The plain ``postgresql://`` URL asyncpg takes for a SQLAlchemy async URL."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


class UsersListener:
    """A background task listening for changes of users rows; see the module docstring."""

    def __init__(
        self,
        dsn: str,
        *,
        heartbeat_seconds: float = 5.0,
        answer_seconds: float = 1.0,
        retry_seconds: float = 0.5,
        max_retry_seconds: float = 5.0,
        missing_trigger_retry_seconds: float = 30.0,
    ) -> None:
        self._dsn = dsn
        self._heartbeat = heartbeat_seconds
        self._answer = answer_seconds
        self._retry = retry_seconds
        self._max_retry = max_retry_seconds
        self._missing_retry = missing_trigger_retry_seconds
        self._counter = 0
        self._listening = False
        self._lost = asyncio.Event()
        # Callers of current() waiting for a round trip that has not begun yet, and what wakes
        # the listening task for it (also set when the connection is lost).
        self._waiting: list[asyncio.Future[None]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._warned = False
        self._connection: asyncpg.Connection | None = None

    def read(self) -> int | None:
        """The stamp now, or None while changes could go unseen (then cache nothing).

        A change committed a moment ago may not show in it yet: see :meth:`current`.
        """
        return self._counter if self._listening else None

    async def current(self) -> int | None:
        """The stamp once every change committed before this call shows in it, or None.

        Waits for the next round trip on the listening connection (see the module docstring),
        at most ``answer_seconds``: a connection that answers no faster is dropped, and the
        caller gets None.
        """
        if not self._listening:
            return None
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        if len(self._waiting) == 1:
            self._wake.set()
        await waiter
        return self.read()

    @property
    def listening(self) -> bool:
        """Whether changes reach this process now (and rows may be cached)."""
        return self._listening

    @property
    def backend_pid(self) -> int | None:
        """The PostgreSQL process of the listening connection (for operators and tests)."""
        return self._connection.get_server_pid() if self._connection is not None else None

    async def start(self, *, wait_seconds: float = 2.0) -> None:
        """Start listening in the background; wait a little for the first connection, so a
        service that starts with its database up caches from its first request."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="starterkit users listener")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_seconds):
                await self._ready.wait()

    async def stop(self) -> None:
        """Stop listening and close the connection."""
        self._stop_listening()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def close(self) -> None:
        """Stop without waiting (the task ends at its next step)."""
        self._stop_listening()
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def _stop_listening(self) -> None:
        self._listening = False
        self._counter += 1
        self._answer_waiting(len(self._waiting))  # with the stamp None: they load their rows

    def _answer_waiting(self, count: int) -> None:
        """Wake the first ``count`` callers of :meth:`current`."""
        waiting, self._waiting = self._waiting[:count], self._waiting[count:]
        for waiter in waiting:
            if not waiter.done():  # a caller cancelled meanwhile
                waiter.set_result(None)

    async def _run(self) -> None:
        delay = self._retry
        while True:
            try:
                connection = await asyncpg.connect(self._dsn, timeout=5)
            except (OSError, TimeoutError, asyncpg.PostgresError) as error:
                logger.debug("users listener: cannot connect (%s); retrying", error)
                self._ready.set()  # nobody should wait for a database that is away
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_retry)
                continue
            try:
                if await connection.fetchval(_TRIGGER_PRESENT) != 1:
                    self._warn_missing_trigger()
                    self._ready.set()
                    await asyncio.sleep(self._missing_retry)
                    continue
                await self._listen(connection)
                delay = self._retry
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                logger.warning("users listener: connection lost (%s); reconnecting", error)
            finally:
                self._stop_listening()
                self._connection = None
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(connection.close(), 2)

    async def _listen(self, connection: asyncpg.Connection) -> None:
        """Listen until the connection fails, a heartbeat goes unanswered or the trigger is
        about to go."""
        self._lost.clear()
        self._connection = connection
        connection.add_termination_listener(lambda _connection: self._on_lost())
        await connection.add_listener(CHANNEL, self._on_notification)
        self._counter += 1  # whatever was cached before this connection is suspect
        self._listening = True
        self._warned = False
        self._ready.set()
        logger.info("users listener: listening for changes of users rows")
        while True:
            if not self._waiting:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._heartbeat):
                        await self._wake.wait()
            if self._lost.is_set():
                return
            # Those waiting now asked before this query is sent: its answer comes after every
            # notification of a commit they could know about. (If it fails, they are answered
            # by _stop_listening, with the stamp None.)
            asked = len(self._waiting)
            async with asyncio.timeout(self._answer):
                await connection.execute("SELECT 1")
            self._answer_waiting(asked)

    def _on_lost(self) -> None:
        self._lost.set()
        self._wake.set()

    def _on_notification(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        self._counter += 1
        if payload == OFF:
            self._listening = False
            self._on_lost()

    def _warn_missing_trigger(self) -> None:
        if not self._warned:
            self._warned = True
            logger.warning(
                "the users_notify_change trigger is missing (database not migrated to head?); "
                "every request loads its user until it is there"
            )
