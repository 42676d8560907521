"""A per-process cache of the signed-in users' rows, valid only while the database is unchanged.

Every authenticated request needs the caller's current row: deactivation, a bumped token version
(logout-all, password change) and a lost superuser flag must take effect on the very next
request. Loading the row costs a query; on SQLite through aiosqlite that is about a millisecond
of thread hand-offs, which dominates a request like ``GET /users/me``.

On a SQLite file the cache is exact rather than time-based: ``PRAGMA data_version`` on a
connection of our own changes whenever *any other* connection, in this process or another one
(a second worker, ``starterkit set-password``, the ``sqlite3`` shell), commits to the file. A
cached row is used only if that number is still the one read before the row was loaded; any
commit anywhere drops every entry at once. The pragma reads the WAL index in shared memory and
takes a few microseconds, so it runs on the event loop.

Other databases have no such counter, so there the cache is off and every request loads the
row: several processes may write and nothing would tell this one.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import make_transient_to_detached

from starterkit.db.models import User

MAX_CACHED_USERS = 10_000

_USER_COLUMNS = tuple(attribute.key for attribute in inspect(User).column_attrs)


def sqlite_file_of(database_url: str) -> str | None:
    """The file behind a SQLite URL, or None for other databases and in-memory SQLite."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.query.get("uri"):
        return None
    if url.database in (None, "", ":memory:") or url.database.startswith("file:"):
        return None
    return url.database


class DataVersion:
    """Reads SQLite's ``data_version`` of one file through a connection that never writes."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._connection: sqlite3.Connection | None = None
        # Apps may serve from several threads (test clients do); the connection is shared.
        self._lock = threading.Lock()

    def read(self) -> int | None:
        """The current version, or None when the file cannot be read (then cache nothing)."""
        with self._lock:
            try:
                if self._connection is None:
                    # mode=rw: never create the file; it appears with the first migration.
                    self._connection = sqlite3.connect(
                        f"file:{self._path}?mode=rw",
                        uri=True,
                        isolation_level=None,
                        check_same_thread=False,
                    )
                row = self._connection.execute("PRAGMA data_version").fetchone()
            except sqlite3.Error:
                self._close()
                return None
            return int(row[0])

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class UserCache:
    """Rows of recently seen users, each tagged with the data version it was read under."""

    def __init__(
        self,
        database_url: str,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        max_users: int = MAX_CACHED_USERS,
    ) -> None:
        path = sqlite_file_of(database_url)
        self._sessionmaker = sessionmaker
        self._version = DataVersion(path) if path is not None else None
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
            snapshot = User(**cached[1])
            # No attribute history, an identity key: the state of a freshly loaded row.
            make_transient_to_detached(snapshot)
            return snapshot
        async with self._sessionmaker() as session:
            user = await session.get(User, user_id)
        if user is not None and version is not None:
            # Tagged with the version read *before* the load: a commit that raced with the
            # load changes the version, so the next request loads again.
            self._remember(user_id, version, {key: getattr(user, key) for key in _USER_COLUMNS})
        return user

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
