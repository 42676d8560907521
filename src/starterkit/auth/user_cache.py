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

Other databases have no such counter, so there the cache is off and every request loads the
row: several processes may write and nothing would tell this one.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

from sqlalchemy import bindparam, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import make_transient_to_detached

from starterkit.db.models import User

MAX_CACHED_USERS = 10_000

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


def sqlite_file_of(database_url: str) -> str | None:
    """The file behind a SQLite URL, or None for other databases and in-memory SQLite."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.query.get("uri"):
        return None
    if url.database in (None, "", ":memory:") or url.database.startswith("file:"):
        return None
    return url.database


class UsersVersion:
    """Reads ``users_version`` of one SQLite file through a connection that never writes."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._connection: sqlite3.Connection | None = None
        self._seen: tuple[int, int] | None = None  # (data_version, users version) last read
        # Apps may serve from several threads (test clients do); the connection is shared.
        self._lock = threading.Lock()

    def read(self) -> int | None:
        """The current number, or None when it cannot be read (then use no cached row)."""
        with self._lock:
            try:
                return self._read()
            except sqlite3.Error:
                self._close()
                return None

    def _read(self) -> int:
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
        # Read after the pragma: a commit between the two shows in this number now and in
        # the pragma next time, so it is never missed.
        (version,) = self._connection.execute(
            "SELECT version FROM users_version WHERE id = 1"
        ).fetchone()
        self._seen = (data_version, version)
        return int(version)

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        self._seen = None
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class UserCache:
    """Rows of recently seen users, each tagged with the users version it was read under."""

    def __init__(
        self,
        database_url: str,
        engine: AsyncEngine,
        *,
        max_users: int = MAX_CACHED_USERS,
    ) -> None:
        path = sqlite_file_of(database_url)
        self._engine = engine
        self._version = UsersVersion(path) if path is not None else None
        self._max_users = max_users
        self._rows: dict[int, tuple[int, dict[str, Any]]] = {}

    @property
    def enabled(self) -> bool:
        return self._version is not None

    async def get_user(self, user_id: int) -> User | None:
        """The user's current row as a new *detached* instance, or None if there is none.

        Detached like a row whose session has closed: every column is loaded, and
        ``session.add(user)`` makes it part of a session (no SQL) whose flush then writes
        what changed. Each call returns a new instance, so requests never share one.
        """
        version = self._version.read() if self._version is not None else None
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

    def _remember(self, user_id: int, version: int, row: dict[str, Any]) -> None:
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
