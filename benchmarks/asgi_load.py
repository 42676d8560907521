"""CPU per request of starterkit's own code, without sockets, HTTP parsing or a load generator.

``run.py`` measures what a client sees, but on two cores wrk and uvicorn take their share and
a run varies by ±15%. This script calls the ASGI app directly from ``--tasks`` concurrent
tasks (as many requests in flight as wrk's connections), on a fresh SQLite file with a user
who owns 20 items, and prints for each endpoint the wall time and the process CPU time per
request (every thread, the database driver's included). It is the quick check for one change:
run it before and after.

Usage: ``python benchmarks/asgi_load.py [--requests 3000] [--tasks 32] [--rounds 3]
[--database postgresql --backend redis [--database-url URL] [--redis-url URL]]
[--profile FILE] [ENDPOINT ...]`` where an endpoint is ``users-me``, ``items-miss``,
``items-hit`` or ``items-create`` (default: all four). The database and Redis options are
``mixed_load.py``'s: a fresh PostgreSQL database (dropped afterwards), Redis keys under a
prefix of the run's own (deleted afterwards). ``--profile FILE`` writes a cProfile of the
measured rounds of the last endpoint (read it with ``python -m pstats FILE``). Prints the best
round of each; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import backends
from benchmarks.items_load import PASSWORD, seed
from starterkit import Settings, create_app
from starterkit.db import migrate

EMAIL = "reader@example.com"
ENDPOINTS = {
    "users-me": ("GET", "/api/v1/users/me", b""),
    "items-hit": ("GET", "/api/v1/items?limit=20", b""),
    "items-miss": ("GET", "/api/v1/items?limit=20", b""),
    "items-create": ("POST", "/api/v1/items", b'{"title": "a benchmark item"}'),
}
ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


async def call(app: ASGIApp, method: str, target: str, token: str | None, body: bytes) -> bytes:
    """One request straight into the app; returns the response body (raises on a non-2xx)."""
    path, _, query = target.partition("?")
    headers = [(b"host", b"bench"), (b"content-type", b"application/json")]
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    received = False
    status: list[int] = []
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal received
        if received:  # the app only asks again to watch for a disconnect
            await asyncio.Event().wait()
        received = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    if not 200 <= status[0] < 300:
        raise RuntimeError(f"{method} {target}: {status[0]} {b''.join(chunks)[:200]!r}")
    return b"".join(chunks)


async def measure(
    app: ASGIApp, endpoint: str, token: str, *, requests: int, tasks: int
) -> tuple[float, float]:
    """Wall and CPU microseconds per request over ``requests`` spread across ``tasks``."""
    method, target, body = ENDPOINTS[endpoint]
    each = max(1, requests // tasks)

    async def worker() -> None:
        for _ in range(each):
            await call(app, method, target, token, body)
            # A server yields to the event loop between requests (socket I/O); without this,
            # a task whose requests never suspend (cache hits) would starve the others.
            await asyncio.sleep(0)

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    done = each * tasks
    return (time.perf_counter() - wall) / done * 1e6, (time.process_time() - cpu) / done * 1e6


async def run(args: argparse.Namespace, database_url: str, redis: dict[str, Any]) -> None:
    base: dict[str, Any] = {
        **redis,
        "environment": "development",
        "database_url": database_url,
        "secret_key": "b" * 64,
        "refresh_token_secret": "r" * 64,
        "access_token_expire_minutes": 1440,
        "auth_login_rate_limit": "1000000/minute",
    }
    seeded = Settings(**base)
    await asyncio.to_thread(migrate.upgrade, seeded)
    await seed(seeded, EMAIL, 20)
    for endpoint in args.endpoints:
        # A cache miss is measured with the cache off, as run.py does.
        ttl = 0 if endpoint == "items-miss" else 30
        app: Any = create_app(Settings(**base, cache_ttl_seconds=ttl))
        async with app.router.lifespan_context(app):
            login = json.dumps({"email": EMAIL, "password": PASSWORD}).encode()
            answer = await call(app, "POST", "/api/v1/auth/login", None, login)
            token = json.loads(answer)["access_token"]
            await measure(app, endpoint, token, requests=200, tasks=args.tasks)  # warm up
            profiler = cProfile.Profile() if args.profile else None
            if profiler:
                profiler.enable()
            rounds = [
                await measure(app, endpoint, token, requests=args.requests, tasks=args.tasks)
                for _ in range(args.rounds)
            ]
            if profiler:
                profiler.disable()
                profiler.dump_stats(args.profile)
        wall, cpu = min(rounds)
        spread = ", ".join(f"{w:,.0f}" for w, _ in rounds)
        print(
            f"{endpoint:13} {wall:7,.0f} µs/request wall ({1e6 / wall:6,.0f} req/s), "
            f"{cpu:7,.0f} µs CPU; rounds: {spread}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("endpoints", nargs="*", help=", ".join(ENDPOINTS))
    parser.add_argument("--requests", type=int, default=3000, help="per round")
    parser.add_argument("--tasks", type=int, default=32, help="requests in flight")
    parser.add_argument("--rounds", type=int, default=3)
    backends.add_options(parser)
    parser.add_argument("--profile", metavar="FILE", help="cProfile of the last endpoint")
    args = parser.parse_args()
    args.endpoints = args.endpoints or [*ENDPOINTS]
    unknown = sorted(set(args.endpoints) - set(ENDPOINTS))
    if unknown:
        parser.error(f"unknown endpoint {unknown[0]!r}; choose from {', '.join(ENDPOINTS)}")
    with tempfile.TemporaryDirectory() as folder, ExitStack() as stack:
        database_url, redis = backends.prepare(args, Path(folder), stack, "asgi")
        uvloop.run(run(args, database_url, redis))


if __name__ == "__main__":
    main()
