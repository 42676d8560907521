"""Database URLs: the async driver each maps to, and the one place that tells kinds apart."""

from __future__ import annotations

from enum import StrEnum

_SQLITE_DRIVERS = {"sqlite": "sqlite+aiosqlite", "sqlite+aiosqlite": "sqlite+aiosqlite"}
_POSTGRES_DRIVERS = {
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "postgresql+psycopg": "postgresql+asyncpg",
    "postgresql+psycopg2": "postgresql+asyncpg",
}


def normalize_database_url(url: str) -> str:
    """Map a plain or sync-driver URL to the async driver starterkit uses.

    ``sqlite:///app.db`` becomes ``sqlite+aiosqlite:///app.db`` and ``postgresql://…`` (also
    ``postgres://`` and the psycopg forms) becomes ``postgresql+asyncpg://…``.

    Raises:
        ValueError: the URL has no scheme or names a database starterkit does not support.
    """
    scheme, sep, rest = url.strip().partition("://")
    if not sep:
        raise ValueError("must be a URL such as sqlite:///./starterkit.db or postgresql://…")
    driver = _SQLITE_DRIVERS.get(scheme.lower()) or _POSTGRES_DRIVERS.get(scheme.lower())
    if driver is None:
        raise ValueError(f"uses {scheme!r}; starterkit supports sqlite:// and postgresql:// URLs")
    if driver.startswith("postgresql") and not rest.split("/", 1)[0]:
        raise ValueError("needs a host, e.g. postgresql://user:password@localhost:5432/app")
    return f"{driver}://{rest}"


class DatabaseKind(StrEnum):
    """What a database URL points at; the one place that tells them apart."""

    SQLITE_FILE = "sqlite-file"
    SQLITE_MEMORY = "sqlite-memory"
    POSTGRESQL = "postgresql"

    @property
    def is_sqlite(self) -> bool:
        """SQLite, in a file or in memory."""
        return self is not DatabaseKind.POSTGRESQL


def database_kind(url: str) -> DatabaseKind:
    """The kind of database behind a (normalised or plain) database URL.

    In-memory SQLite is ``sqlite://`` or ``sqlite:///:memory:``, where each connection would
    see a database of its own.
    """
    scheme, _, rest = url.strip().partition("://")
    if not scheme.lower().startswith("sqlite"):
        return DatabaseKind.POSTGRESQL
    if rest.removeprefix("/").split("?", 1)[0] in ("", ":memory:"):
        return DatabaseKind.SQLITE_MEMORY
    return DatabaseKind.SQLITE_FILE
