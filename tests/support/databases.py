"""Throwaway databases for tests: a SQLite file, or a fresh PostgreSQL database."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
import pytest
from sqlalchemy.engine import make_url


def _admin_dsn(url: str) -> tuple[str, str]:
    """(DSN of the maintenance database, base name) for a postgresql:// URL."""
    parsed = make_url(url).set(drivername="postgresql")
    admin = parsed.set(database="postgres")
    return admin.render_as_string(hide_password=False), parsed.database or "test"


def _run_admin(url: str, statement: str) -> None:
    """Run one statement in the maintenance database of ``url``'s server."""
    dsn, _ = _admin_dsn(url)

    async def run() -> None:
        connection = await asyncpg.connect(dsn)
        try:
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
    frozen, as on a machine too busy to run it. Skips unless the server is ours to signal."""
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
