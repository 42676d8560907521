"""Throughput of ``GET /items?limit=20`` (cache hit and miss) and list latency vs. item count.

Starts ``starterkit serve`` (one worker, SQLite, fresh folder) on loopback, seeds one user's
items straight into the database, then prints:

- requests/s of ``GET /items?limit=20`` for a user with ``--items`` items, with the cache on
  (every request after the first is a hit) and off (``CACHE_TTL_SECONDS=0``: every request
  queries), measured with wrk (Debian package ``wrk``);
- p50/p99 latency of an offset page (with its count) and of a keyset page deep in the list,
  for users with 1,000 and 100,000 items.

Usage: ``python benchmarks/items_load.py [--items 10000] [--seconds 5] [--connections 16]``.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.processes import free_port, wait_until_healthy

from benchmarks.wrk_runner import request_script, run_wrk
from starterkit import Settings, StarterKit
from starterkit.audit import CLI
from starterkit.db import migrate
from starterkit.db.models import Item
from starterkit.users.service import create_user

EMAIL, PASSWORD = "bench@example.com", "a benchmark passphrase"


@contextmanager
def server(folder: Path, **settings: str) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STARTERKIT_")}
    env.update({f"STARTERKIT_{k.upper()}": v for k, v in settings.items()})
    process = subprocess.Popen(
        [sys.executable, "-m", "starterkit", "serve", "--port", str(port), "--no-migrate"],
        cwd=folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_until_healthy(base_url, process, timeout=30)
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=15)


async def seed(settings: Settings, email: str, count: int) -> None:
    """Create ``email`` with ``count`` items, newest last, in batches."""
    kit = StarterKit(settings)
    async with kit.sessionmaker() as session:
        user = await create_user(
            session,
            email=email,
            password=PASSWORD,
            hasher=kit.password_hasher,
            password_min_length=12,
            origin=CLI,
            now=kit.clock(),
        )
        start = datetime.now(UTC) - timedelta(seconds=count)
        for first in range(0, count, 5000):
            rows = [
                {
                    "title": f"item {n}",
                    "description": None,
                    "owner_id": user.id,
                    "created_at": start + timedelta(seconds=n),
                    "updated_at": start + timedelta(seconds=n),
                }
                for n in range(first, min(count, first + 5000))
            ]
            await session.execute(insert(Item), rows)
        await session.commit()
    await kit.aclose()


def token_for(base_url: str, email: str) -> str:
    response = httpx.post(
        f"{base_url}/api/v1/auth/login", json={"email": email, "password": PASSWORD}
    )
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token


def wrk(url: str, token: str, seconds: float, connections: int) -> float:
    script = request_script(headers={"Authorization": f"Bearer {token}"})
    with tempfile.TemporaryDirectory() as folder:
        result = run_wrk(
            url,
            script,
            folder=Path(folder),
            connections=connections,
            seconds=max(1, round(seconds)),
        )
    if result.non2xx or result.errors:
        raise RuntimeError(f"{result.non2xx} non-2xx responses, {result.errors} socket errors")
    return result.rate


def latency(url: str, token: str, n: int = 200) -> tuple[float, float]:
    p50, p99, _ = latency_samples(url, token, n)
    return p50, p99


def latency_samples(url: str, token: str, n: int = 200) -> tuple[float, float, list[float]]:
    """p50 and p99 in ms of ``n`` sequential GETs of ``url``, and the samples."""
    samples = []
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}) as client:
        client.get(url).raise_for_status()  # connect first: only requests are timed
        for _ in range(n):
            start = time.perf_counter()
            client.get(url).raise_for_status()
            samples.append((time.perf_counter() - start) * 1000)
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(0.99 * (len(ordered) - 1))], samples


def keyset_page_url(base_url: str, token: str, count: int) -> str:
    """The URL of a keyset page in the middle of a list of ``count`` items."""
    first = httpx.get(
        f"{base_url}/api/v1/items?limit=20&offset={count // 2}",
        headers={"Authorization": f"Bearer {token}"},
    )
    first.raise_for_status()
    cursor = first.json()["next_cursor"]
    return f"{base_url}/api/v1/items?limit=20&cursor={cursor}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, SQLite, one worker")
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        url = f"sqlite:///{folder / 'bench.db'}"
        settings = Settings(_env_file=None, database_url=url)
        migrate.upgrade(settings)
        asyncio.run(seed(settings, EMAIL, args.items))
        asyncio.run(seed(settings, "small@example.com", 1_000))
        asyncio.run(seed(settings, "large@example.com", 100_000))
        common = {"database_url": url, "secret_key": "b" * 48, "refresh_token_secret": "c" * 48}

        for label, ttl in (("cache hit", "30"), ("cache miss (CACHE_TTL_SECONDS=0)", "0")):
            with server(folder, cache_ttl_seconds=ttl, **common) as base_url:
                token = token_for(base_url, EMAIL)
                target = f"{base_url}/api/v1/items?limit=20"
                rate = wrk(target, token, args.seconds, args.connections)
                print(f"GET /items?limit=20, {args.items:,} items, {label:<34} {rate:8.0f} req/s")

        with server(folder, cache_ttl_seconds="0", **common) as base_url:
            for email, count in (("small@example.com", 1_000), ("large@example.com", 100_000)):
                token = token_for(base_url, email)
                for kind, target in (
                    ("offset page 1 (with count)", f"{base_url}/api/v1/items?limit=20"),
                    ("keyset page mid-list", keyset_page_url(base_url, token, count)),
                ):
                    p50, p99 = latency(target, token)
                    print(f"{count:>7,} items, {kind:<28} p50={p50:6.2f} ms  p99={p99:6.2f} ms")


if __name__ == "__main__":
    main()
