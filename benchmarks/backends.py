"""The database and Redis of one benchmark run, each undone when the run ends.

PostgreSQL: a fresh database on the server of ``--database-url`` (or
``STARTERKIT_TEST_DATABASE_URL``), dropped afterwards. Redis: keys under a prefix of the run's
own, and afterwards only keys under that prefix are deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import asyncpg
import redis as redis_client
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.databases import create_postgres_database, drop_postgres_database

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def add_options(parser: argparse.ArgumentParser) -> None:
    """``--database``, ``--backend``, ``--database-url`` and ``--redis-url``."""
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--backend", choices=("memory", "redis"), default="memory")
    parser.add_argument("--database-url")
    parser.add_argument("--redis-url")


def prepare(
    args: argparse.Namespace, folder: Path, stack: ExitStack, name: str
) -> tuple[str, dict[str, Any]]:
    """The database URL of a run, and the Redis settings (none for ``--backend memory``).

    Redis keys go under a prefix made of ``name`` and a random part; both are undone when
    ``stack`` closes.
    """
    database_url, _ = database(args, folder, stack)
    if args.backend != "redis":
        return database_url, {}
    prefix = f"starterkit-{name}-{uuid.uuid4().hex[:12]}:"
    redis_url, _ = redis(args, stack, prefix)
    return database_url, {"redis_url": redis_url, "redis_key_prefix": prefix}


def database(args: argparse.Namespace, folder: Path, stack: ExitStack) -> tuple[str, str]:
    """The URL of a fresh database for this run, and a description of its server.

    SQLite: a file in the run's temporary ``folder``. PostgreSQL: a new database, dropped when
    ``stack`` closes.
    """
    if args.database == "sqlite":
        import sqlite3  # noqa: PLC0415

        return f"sqlite:///{folder / 'bench.db'}", f"SQLite {sqlite3.sqlite_version} (file)"
    server = args.database_url or os.environ.get("STARTERKIT_TEST_DATABASE_URL")
    if not server:
        raise SystemExit(
            "Error: --database postgresql needs --database-url or STARTERKIT_TEST_DATABASE_URL"
        )
    url = create_postgres_database(server)
    stack.callback(drop_postgres_database, url)
    return url, f"PostgreSQL {asyncio.run(_postgres_version(url))} (fresh database)"


async def _postgres_version(url: str) -> str:
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        version: str = await connection.fetchval("SHOW server_version")
    finally:
        await connection.close()
    return version.split(maxsplit=1)[0]


def redis(args: argparse.Namespace, stack: ExitStack, prefix: str) -> tuple[str, str]:
    """Redis URL and version; the keys under ``prefix`` are deleted when ``stack`` closes."""
    url = args.redis_url or os.environ.get("STARTERKIT_TEST_REDIS_URL") or DEFAULT_REDIS_URL
    client = redis_client.Redis.from_url(url)
    try:
        version = client.info("server")["redis_version"]
    except redis_client.RedisError as error:
        client.close()
        raise SystemExit(f"Error: cannot use Redis at {url}: {error}") from None
    stack.callback(_delete_keys, client, prefix)
    return url, f"Redis {version}, keys under {prefix!r}"


def _delete_keys(client: redis_client.Redis, prefix: str) -> None:
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for first in range(0, len(keys), 1000):
            client.delete(*keys[first : first + 1000])
    finally:
        client.close()
