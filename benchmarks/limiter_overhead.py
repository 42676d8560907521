"""Per-request cost of a built-in rate-limit dependency, memory and Redis, in one run.

Builds a tiny app with two routes that differ only by the limit dependency and calls each in
process (ASGI, no network, so only the dependency differs), alternating rounds. The Redis
figures need a Redis at ``STARTERKIT_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``).

Usage: ``python benchmarks/limiter_overhead.py [--requests 3000] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from fastapi import Depends, FastAPI

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from starterkit import Settings, StarterKit


def build(settings: Settings) -> tuple[FastAPI, StarterKit]:
    kit = StarterKit(settings)
    app = FastAPI()
    kit.install(app)
    limited = Depends(kit.limit_per_client("bench", "100000000/minute"))

    @app.get("/plain")
    async def plain() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/limited", dependencies=[limited])
    async def limited_route() -> dict[str, bool]:
        return {"ok": True}

    return app, kit


async def per_request_us(client: httpx.AsyncClient, path: str, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        response = await client.get(path)
        assert response.status_code == 200, response.text
    return (time.perf_counter() - start) / n * 1e6


async def measure(label: str, settings: Settings, n: int, rounds: int) -> None:
    app, kit = build(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        await per_request_us(client, "/limited", 200)  # warm up
        plain, limited = [], []
        for _ in range(rounds):
            plain.append(await per_request_us(client, "/plain", n))
            limited.append(await per_request_us(client, "/limited", n))
    await kit.aclose()
    p, lim = statistics.median(plain), statistics.median(limited)
    print(
        f"{label:<8} without limit {p:7.1f} us/req   with limit {lim:7.1f} us/req   "
        f"overhead {lim - p:6.1f} us/req ({(lim / p - 1) * 100:4.0f}%)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    redis_url = os.environ.get("STARTERKIT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, in-process ASGI")
    with tempfile.TemporaryDirectory() as folder:
        base = Settings(_env_file=None, database_url=f"sqlite:///{folder}/x.db")
        asyncio.run(measure("memory", base, args.requests, args.rounds))
        redis = base.model_copy(
            update={"redis_url": redis_url, "redis_key_prefix": f"bench-{uuid.uuid4().hex}:"}
        )
        asyncio.run(measure("redis", redis, args.requests, args.rounds))


if __name__ == "__main__":
    main()
