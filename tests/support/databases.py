"""Throwaway databases for tests: a SQLite file, or a fresh PostgreSQL database."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from starterkit import Settings
from starterkit.db import migrate
from starterkit.db.engine import sqlite_file_of


def _admin_dsn(url: str) -> tuple[str, str]:
    """(DSN of the maintenance database, base name) for a postgresql:// URL."""
    parsed = make_url(url).set(drivername="postgresql")
    admin = parsed.set(database="postgres")
    return admin.render_as_string(hide_password=False), parsed.database or "test"


def _run_admin(url: str, *statements: str) -> None:
    """Run statements, one by one, in the maintenance database of ``url``'s server."""
    _run_sql(_admin_dsn(url)[0], *statements)


def _run_sql(dsn: str, *statements: str) -> None:
    """Run statements, one by one, in the PostgreSQL database of ``dsn``."""

    async def run() -> None:
        connection = await asyncpg.connect(dsn)
        try:
            for statement in statements:
                await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run())


def create_postgres_database(url: str) -> str:
    """Create an empty database next to ``url``'s and return its URL."""
    _, base = _admin_dsn(url)
    name = f"{base}_sk_{uuid.uuid4().hex[:12]}"
    _run_admin(url, f'CREATE DATABASE "{name}"')
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def drop_postgres_database(url: str) -> None:
    """Drop the database ``url`` points at, disconnecting anyone still using it."""
    _run_admin(url, f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')


def recreate_postgres_database(url: str) -> None:
    """Create the database ``url`` points at again, empty, after it was dropped."""
    _run_admin(url, f'CREATE DATABASE "{make_url(url).database}"')


@contextmanager
def backend_paused(pid: int, *, seconds: float) -> Iterator[None]:
    """Stop the PostgreSQL backend process ``pid`` (SIGSTOP) and let it go on (SIGCONT) after
    ``seconds``, or on leaving the block at the latest: a connection whose server side is
    frozen, as on a machine too busy to run it. Skips unless the server is ours to signal: a
    server in a container (CI service containers) reports process ids of another namespace,
    which here may name some other process."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        command = b""
    if not command.startswith(b"postgres"):
        pytest.skip(f"process {pid} here is not the PostgreSQL backend (a remote server?)")
    try:
        os.kill(pid, signal.SIGSTOP)
    except (PermissionError, ProcessLookupError):
        pytest.skip("needs a local PostgreSQL whose processes this user may signal")
    resume = threading.Timer(seconds, os.kill, (pid, signal.SIGCONT))
    resume.start()
    try:
        yield
    finally:
        resume.cancel()
        os.kill(pid, signal.SIGCONT)


class MigratedTemplates:
    """A database of each kind migrated to head once per test session, copied for each test
    that asks for a migrated database.

    A migration to head took 0.2 to 0.35 s, for each of several hundred tests; a copy takes a
    file copy on SQLite and ``CREATE DATABASE … TEMPLATE`` (about 0.1 s) on PostgreSQL. Each
    copy gets an installation id of its own, as its own migration would have given it: the id
    scopes the keys services keep in Redis, which the tests share.
    """

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._sqlite: Path | None = None
        self._postgres: str | None = None  # URL of the template database

    def copy_into(self, settings: Settings) -> None:
        """Make the database of ``settings``, not created yet or empty, a migrated one."""
        path = sqlite_file_of(settings)
        if path is not None:
            shutil.copy2(self._sqlite_template(settings), path)  # copy2: the 0600 mode too
            with closing(sqlite3.connect(path)) as connection:
                connection.execute(_new_installation_id())
                connection.commit()
            return
        template = self._postgres_template(settings)
        target = make_url(settings.database_url)
        _run_admin(
            template,
            f'DROP DATABASE IF EXISTS "{target.database}"',
            f'CREATE DATABASE "{target.database}" TEMPLATE "{make_url(template).database}"',
        )
        _run_sql(
            target.set(drivername="postgresql").render_as_string(hide_password=False),
            _new_installation_id(),
        )

    def close(self) -> None:
        """Drop the PostgreSQL template (SQLite's goes with the session's folder)."""
        if self._postgres is not None:
            drop_postgres_database(self._postgres)
            self._postgres = None

    def _sqlite_template(self, settings: Settings) -> Path:
        if self._sqlite is None:
            path = self._folder / "migrated.db"
            url = make_url(settings.database_url).set(database=str(path))
            migrate.upgrade(settings.model_copy(update={"database_url": url.render_as_string()}))
            # The migration's last connection has closed: the file holds everything (no WAL).
            assert not path.with_name(path.name + "-wal").exists()
            self._sqlite = path
        return self._sqlite

    def _postgres_template(self, settings: Settings) -> str:
        if self._postgres is None:
            url = create_postgres_database(settings.database_url)
            migrate.upgrade(settings.model_copy(update={"database_url": url}))
            self._postgres = url
        return self._postgres


def _new_installation_id() -> str:
    """The statement giving a copied database an id of its own (hex digits: nothing to quote)."""
    return f"UPDATE starterkit_installation SET id = '{secrets.token_hex(16)}'"  # noqa: S608
