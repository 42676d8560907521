"""A per-process cache of the signed-in users' rows, valid only while no users row changes.

Every authenticated request needs the caller's current row: deactivation, a bumped token version
(logout-all, password change) and a lost superuser flag must take effect on the very next
request. Loading the row costs a query, about half a millisecond on SQLite through aiosqlite,
which would be most of a request like ``GET /users/me``.

On a SQLite file the cache is exact rather than time-based. Migration ``starterkit_0004`` adds
a one-row table, ``users_version``, whose number triggers raise in the same transaction as any
UPDATE or DELETE of a users row, whoever commits it: this process, a second worker,
``starterkit set-password`` or the ``sqlite3`` shell. A cached row is used only while that
number is still the one read before the row was loaded.

Reading the number must be cheaper than loading the row, so it is read on a connection of our
own, on the event loop, and only when ``PRAGMA data_version`` says that another connection has
committed something since the last look (the pragma reads the WAL index in shared memory: a
few microseconds). The one-page read that follows is served from memory, and the connection
never waits for a lock: if SQLite is busy, or the table is missing (a database not migrated to
head), the request loads the row as if nothing were cached.

PostgreSQL has no such counter in shared memory; there a process listens for the notifications
that migration ``starterkit_0010``'s trigger sends when users rows change
(:mod:`starterkit.auth.users_listener`), its stamp moves with each, and a request waits for a
round trip on the listening connection, shared with the requests beside it, so that every
notification sent before it arrived has been heard. USER_CACHE=false turns the cache off
everywhere, SQLITE_FAST_PATHS=false on SQLite.

SQLite drops a table's triggers with the table, and Alembic's batch mode on SQLite recreates
tables for most column changes. So the triggers are not taken on trust: whenever the schema
has changed (``PRAGMA schema_version``, read only after a commit elsewhere), their presence is
checked again, and while either is missing the cache is off (every request loads the row) and
a warning says so. A migration that recreates ``users`` should create them again to get the
speed back, but forgetting it costs speed, never correctness.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Hashable
from typing import Any, Protocol

from sqlalchemy import bindparam, inspect, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import make_transient_to_detached

from starterkit.db.models import User

MAX_CACHED_USERS = 10_000
VERSION_TRIGGERS = ("users_version_after_update", "users_version_after_delete")
# (schema_version, users_version): while it is unchanged, no users row has changed.
UsersStamp = tuple[int, int]
_COUNT_TRIGGERS = (
    "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'users'"
    " AND name IN (?, ?)"
)

logger = logging.getLogger("starterkit.auth")

_USER_MAPPER = inspect(User)
# The row by primary key, as a Core statement built once: an ORM Session.get costs several
# times what the query does.
_LOAD_USER = select(*(prop.columns[0].label(prop.key) for prop in _USER_MAPPER.column_attrs)).where(
    User.id == bindparam("user_id")
)


def detached_user(row: dict[str, Any]) -> User:
    """A detached ``User`` holding ``row`` (every column), as if a session had loaded it.

    The values go straight into the instance dict, which is how SQLAlchemy itself fills a
    loaded object: no attribute history, so ``session.add(user)`` followed by a change
    flushes only that change.
    """
    user: User = _USER_MAPPER.class_manager.new_instance()
    user.__dict__.update(row)
    make_transient_to_detached(user)
    return user


class StampSource(Protocol):
    """Says when users rows may have changed: :meth:`current` returns a stamp that changes
    whenever one may have, or None when that cannot be known (then nothing is cached)."""

    async def current(self) -> Hashable | None:
        """The stamp, in which every change committed before the call shows."""

    def close(self) -> None:
        """Release what the source holds."""


class _TriggersMissing(sqlite3.Error):
    """A migration dropped the triggers that keep ``users_version`` true."""


class UsersVersion:
    """Reads ``users_version`` of one SQLite file through a connection that never writes."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._connection: sqlite3.Connection | None = None
        self._seen: tuple[int, UsersStamp] | None = None  # (data_version, stamp) last read
        self._checked_schema: int | None = None  # schema_version whose triggers were there
        self._warned = False
        # Apps may serve from several threads (test clients do); the connection is shared.
        self._lock = threading.Lock()

    async def current(self) -> UsersStamp | None:
        """The stamp (read at once: SQLite's shared memory is never behind), or None."""
        return self.read()

    def read(self) -> UsersStamp | None:
        """The current stamp, or None when it cannot be read (then use no cached row)."""
        with self._lock:
            try:
                return self._read()
            except _TriggersMissing:
                if not self._warned:
                    self._warned = True
                    logger.warning(
                        "the users_version triggers are missing (a migration recreated the users "
                        "table?); every request loads its user until they are created again"
                    )
                self._close()
                return None
            except sqlite3.Error:
                self._close()
                return None

    def _read(self) -> UsersStamp:
        if self._connection is None:
            # mode=rw: never create the file; it appears with the first migration. timeout=0:
            # this runs on the event loop, which must never wait for a lock.
            self._connection = sqlite3.connect(
                f"file:{self._path}?mode=rw",
                uri=True,
                timeout=0,
                isolation_level=None,
                check_same_thread=False,
            )
        (data_version,) = self._connection.execute("PRAGMA data_version").fetchone()
        if self._seen is not None and self._seen[0] == data_version:
            return self._seen[1]  # nobody else has committed anything since
        schema_version = self._check_triggers(self._connection)
        # Read after the pragma: a commit between the two shows in this number now and in
        # the pragma next time, so it is never missed.
        (version,) = self._connection.execute(
            "SELECT version FROM users_version WHERE id = 1"
        ).fetchone()
        # With the schema's version: a downgrade and upgrade recreate users_version from 0,
        # and users rows may have changed meanwhile with no trigger to count it.
        stamp = (schema_version, int(version))
        self._seen = (data_version, stamp)
        return stamp

    def _check_triggers(self, connection: sqlite3.Connection) -> int:
        """The schema's version, once the triggers are known to be there under it."""
        (schema_version,) = connection.execute("PRAGMA schema_version").fetchone()
        if schema_version != self._checked_schema:
            (found,) = connection.execute(_COUNT_TRIGGERS, VERSION_TRIGGERS).fetchone()
            if found != len(VERSION_TRIGGERS):
                raise _TriggersMissing
            self._checked_schema = schema_version
        return int(schema_version)

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        self._seen = None
        self._checked_schema = None
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class UserCache:
    """Rows of recently seen users, each tagged with the users version it was read under."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        stamps: StampSource | None,
        max_users: int = MAX_CACHED_USERS,
    ) -> None:
        """Load rows through ``engine``; cache them only with ``stamps`` to watch.

        Args:
            engine: runs the one-row queries.
            stamps: says when rows changed (:class:`UsersVersion` of a SQLite file, or the
                PostgreSQL :class:`~starterkit.auth.users_listener.UsersListener`); None
                turns the cache off.
            max_users: rows kept at most; the least recently loaded go first.
        """
        self._engine = engine
        self._version = stamps
        self._max_users = max_users
        self._rows: dict[int, tuple[Hashable, dict[str, Any]]] = {}

    @property
    def enabled(self) -> bool:
        return self._version is not None

    async def get_user(self, user_id: int) -> User | None:
        """The user's current row as a new *detached* instance, or None if there is none.

        Detached like a row whose session has closed: every column is loaded, and
        ``session.add(user)`` makes it part of a session (no SQL) whose flush then writes
        what changed. Each call returns a new instance, so requests never share one.
        """
        version = await self._version.current() if self._version is not None else None
        cached = self._rows.get(user_id) if version is not None else None
        if cached is not None and cached[0] == version:
            return detached_user(cached[1])
        async with self._engine.connect() as connection:
            result = await connection.execute(_LOAD_USER, {"user_id": user_id})
            found = result.mappings().one_or_none()
        if found is None:
            return None
        row = dict(found)
        if version is not None:
            # Tagged with the version read *before* the load: a commit that raced with the
            # load changes the version, so the next request loads again.
            self._remember(user_id, version, row)
        return detached_user(row)

    def _remember(self, user_id: int, version: Hashable, row: dict[str, Any]) -> None:
        rows = self._rows
        rows.pop(user_id, None)
        if len(rows) >= self._max_users:
            # Oldest first: dicts keep insertion order, and a re-read user moves to the end.
            del rows[next(iter(rows))]
        rows[user_id] = (version, row)

    def close(self) -> None:
        if self._version is not None:
            self._version.close()
        self._rows.clear()
