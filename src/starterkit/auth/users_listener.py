"""On PostgreSQL, knowing when users rows change: LISTEN on the channel that migration
``starterkit_0010``'s trigger notifies.

The user cache (:mod:`starterkit.auth.user_cache`) keeps rows only under a *stamp* that
changes whenever any users row may have changed; this listener's stamp is a counter it moves on
every notification and on every loss or regain of its connection. While it is not listening
(not started, connecting, the database away, the trigger missing) the stamp is None and the
cache keeps nothing: every request loads its user, which is slower but never stale.

A notification arrives when the changing transaction commits, whoever ran it (another
instance, the CLI, psql): in practice well under a millisecond later on one network. A
connection that silently stops delivering (a half-open TCP connection) is caught by a
heartbeat query every ``heartbeat_seconds``. The listening connection is a plain asyncpg
connection of its own, outside the pool: LISTEN needs a session, so a pooler in transaction
mode (PgBouncer's default) cannot carry it; point DATABASE_URL at PostgreSQL or a
session-mode pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

logger = logging.getLogger("starterkit.auth")

CHANNEL = "starterkit_users"
_USERS_WRITES = ("UPDATE users ", "DELETE FROM users ")
_CHANGED_USERS = "starterkit_changed_users"
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
        retry_seconds: float = 0.5,
        max_retry_seconds: float = 5.0,
        missing_trigger_retry_seconds: float = 30.0,
    ) -> None:
        self._dsn = dsn
        self._heartbeat = heartbeat_seconds
        self._retry = retry_seconds
        self._max_retry = max_retry_seconds
        self._missing_retry = missing_trigger_retry_seconds
        self._counter = 0
        self._listening = False
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._warned = False
        self._connection: asyncpg.Connection | None = None

    def read(self) -> int | None:
        """The current stamp, or None while changes could go unseen (then cache nothing)."""
        return self._counter if self._listening else None

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

    def watch_writes(self, engine: AsyncEngine) -> None:
        """Move the stamp when a transaction of ``engine`` that changed users rows commits.

        The notification of this process's own change arrives a moment after the commit;
        without this, the request that follows the change (an answer already sent) could
        still find the old row here.
        """
        sync_engine = engine.sync_engine

        def after_execute(connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
            if statement.startswith(_USERS_WRITES):
                connection.info[_CHANGED_USERS] = True

        def on_commit(connection: Any) -> None:
            if connection.info.pop(_CHANGED_USERS, False):
                self._counter += 1

        def on_rollback(connection: Any) -> None:
            connection.info.pop(_CHANGED_USERS, None)

        event.listen(sync_engine, "after_cursor_execute", after_execute)
        event.listen(sync_engine, "commit", on_commit)
        event.listen(sync_engine, "rollback", on_rollback)

    def _stop_listening(self) -> None:
        self._listening = False
        self._counter += 1

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
            except (OSError, TimeoutError, asyncpg.PostgresError) as error:
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
        connection.add_termination_listener(lambda _connection: self._lost.set())
        await connection.add_listener(CHANNEL, self._on_notification)
        self._counter += 1  # whatever was cached before this connection is suspect
        self._listening = True
        self._warned = False
        self._ready.set()
        logger.info("users listener: listening for changes of users rows")
        while not self._lost.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._heartbeat):
                    await self._lost.wait()
            if not self._lost.is_set():
                async with asyncio.timeout(self._heartbeat):
                    await connection.fetchval("SELECT 1")

    def _on_notification(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        self._counter += 1
        if payload == OFF:
            self._listening = False
            self._lost.set()

    def _warn_missing_trigger(self) -> None:
        if not self._warned:
            self._warned = True
            logger.warning(
                "the users_notify_change trigger is missing (database not migrated to head?); "
                "every request loads its user until it is there"
            )
