"""Cache misses while cache hits keep the event loop busy: how long do the misses take?

On SQLite a page read through aiosqlite's thread needed the GIL back after every row, while
cache hits, which need no thread, kept the event loop, and so the GIL, busy. This script
calls the app in process (like ``asgi_load.py``) from 32 tasks for ``--seconds``: ``--missers``
of them ask for pages the cache cannot have (a user with 2,000 items, ``limit`` 1-100 and
``offset`` 0-999), the others repeat one cached page. It prints hits/s, misses/s and the
misses' latency. A 503 (a read waited longer than ``DATABASE_POOL_TIMEOUT`` for the
connection) stops the run with that error.

Usage: ``python benchmarks/mixed_load.py [--missers 4] [--seconds 8] [--switch-interval S]
[--database postgresql --backend redis [--database-url URL] [--redis-url URL]]``;
``--switch-interval`` sets ``sys.setswitchinterval`` first (CPython's default is 0.005). The
database is a fresh SQLite file, or a fresh PostgreSQL database (dropped afterwards) on the
server of ``--database-url`` (default ``STARTERKIT_TEST_DATABASE_URL``); ``--backend redis``
keeps the cache in Redis under a prefix of the run's own (deleted afterwards), as ``run.py``
does. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import backends
from benchmarks.asgi_load import EMAIL, call
from benchmarks.items_load import PASSWORD, seed
from starterkit import Settings, create_app
from starterkit.db import migrate

PAGE = "/api/v1/items?limit=20"


async def run(args: argparse.Namespace, database_url: str, redis: dict[str, Any]) -> None:
    settings = Settings(
        environment="development",
        database_url=database_url,
        secret_key="b" * 64,
        refresh_token_secret="r" * 64,
        access_token_expire_minutes=1440,
        **redis,
    )
    await asyncio.to_thread(migrate.upgrade, settings)
    await seed(settings, EMAIL, 2000)
    app: Any = create_app(settings)
    async with app.router.lifespan_context(app):
        login = json.dumps({"email": EMAIL, "password": PASSWORD}).encode()
        token = json.loads(await call(app, "POST", "/api/v1/auth/login", None, login))
        token = token["access_token"]
        await call(app, "GET", PAGE, token, b"")  # cached from now on
        stop = time.perf_counter() + args.seconds
        hits = 0
        misses: list[float] = []

        async def hitter() -> None:
            nonlocal hits
            while time.perf_counter() < stop:
                await call(app, "GET", PAGE, token, b"")
                hits += 1
                await asyncio.sleep(0)  # a server yields between requests (socket I/O)

        async def misser(number: int) -> None:
            n = number * 7919
            while time.perf_counter() < stop:
                n += 1
                started = time.perf_counter()
                target = f"/api/v1/items?limit={1 + n % 100}&offset={n % 1000}"
                await call(app, "GET", target, token, b"")
                misses.append(time.perf_counter() - started)
                await asyncio.sleep(0)

        await asyncio.gather(
            *(hitter() for _ in range(32 - args.missers)),
            *(misser(number) for number in range(args.missers)),
        )
    misses.sort()
    count = len(misses)
    print(
        f"{args.database} + {args.backend}, "
        f"switch interval {sys.getswitchinterval() * 1e3:g} ms, {args.missers} missers: "
        f"{hits / args.seconds:,.0f} hits/s, {count / args.seconds:,.0f} misses/s; misses "
        f"p50 {misses[count // 2] * 1e3:,.0f} ms, p99 {misses[int(count * 0.99)] * 1e3:,.0f} ms, "
        f"max {misses[-1] * 1e3:,.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--missers", type=int, default=4, choices=range(1, 32), metavar="1-31")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--switch-interval", type=float)
    backends.add_options(parser)
    args = parser.parse_args()
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    with tempfile.TemporaryDirectory() as folder, ExitStack() as stack:
        database_url, redis = backends.prepare(args, Path(folder), stack, "mixed")
        uvloop.run(run(args, database_url, redis))


if __name__ == "__main__":
    main()
