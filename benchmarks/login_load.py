"""Login latency, and how much concurrent logins slow other requests.

Starts ``starterkit serve`` (one worker, SQLite, fresh folder, login rate limit raised so the
load is not throttled) on loopback, then prints:

- login latency (p50/p99 over sequential logins);
- p50/p99 of ``GET /api/v1/health/live`` alone, and while 4 clients log in nonstop.

Usage: ``python benchmarks/login_load.py [--seconds 5]``. Prints figures; asserts nothing.
``benchmarks/run.py`` imports :func:`measure_login_load` for its health-under-login section.
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
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.processes import free_port, wait_until_healthy

EMAIL, PASSWORD = "bench@example.com", "a benchmark passphrase"
UNTHROTTLED = "1000000/minute"


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def describe(name: str, samples: list[float]) -> str:
    ms = [s * 1000 for s in samples]
    return (
        f"{name:<44} n={len(ms):>5}  p50={statistics.median(ms):7.2f} ms  "
        f"p99={percentile(ms, 0.99):7.2f} ms"
    )


@dataclass(frozen=True)
class LoginLoad:
    """Latencies in seconds: health probes idle and under login load, and the logins."""

    idle: list[float]
    loaded: list[float]
    logins_during_load: int
    seconds: float

    @property
    def p99_ratio(self) -> float:
        """p99 of the probe under load over its p99 when idle."""
        return percentile(self.loaded, 0.99) / percentile(self.idle, 0.99)


async def probe(client: httpx.AsyncClient, seconds: float) -> list[float]:
    samples = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        response = await client.get("/api/v1/health/live")
        samples.append(time.perf_counter() - start)
        assert response.status_code == 200
        await asyncio.sleep(0.005)
    return samples


async def login(client: httpx.AsyncClient, email: str, password: str) -> None:
    response = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text


async def login_forever(
    client: httpx.AsyncClient, stop: asyncio.Event, email: str, password: str
) -> int:
    count = 0
    while not stop.is_set():
        await login(client, email, password)
        count += 1
    return count


async def measure_login_load(
    base_url: str, *, email: str, password: str, seconds: float, clients: int = 4
) -> LoginLoad:
    """Probe ``/health/live`` for ``seconds`` idle, then as long with ``clients`` logging in.

    The server's login rate limit must allow the load (``AUTH_LOGIN_RATE_LIMIT``).
    """
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        idle = await probe(client, seconds)
        stop = asyncio.Event()
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as loaders:
            workers = [
                asyncio.create_task(login_forever(loaders, stop, email, password))
                for _ in range(clients)
            ]
            loaded = await probe(client, seconds)
            stop.set()
            done = sum(await asyncio.gather(*workers))
    return LoginLoad(idle, loaded, done, seconds)


async def run(base_url: str, seconds: float) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        created = await client.post("/api/v1/users", json={"email": EMAIL, "password": PASSWORD})
        assert created.status_code == 201, created.text
        logins = []
        for _ in range(50):
            start = time.perf_counter()
            await login(client, EMAIL, PASSWORD)
            logins.append(time.perf_counter() - start)
        print(describe("POST /auth/login (sequential)", logins))
    result = await measure_login_load(base_url, email=EMAIL, password=PASSWORD, seconds=seconds)
    print(describe("GET /health/live, idle server", result.idle))
    print(describe("GET /health/live, 4 clients logging in", result.loaded))
    done = result.logins_during_load
    print(f"{'logins completed during the load':<44} {done} ({done / seconds:.1f}/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("STARTERKIT_")}
        env["STARTERKIT_AUTH_LOGIN_RATE_LIMIT"] = UNTHROTTLED
        server = subprocess.Popen(
            [sys.executable, "-m", "starterkit", "serve", "--port", str(port)],
            cwd=folder,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            base_url = f"http://127.0.0.1:{port}"
            wait_until_healthy(base_url, server, timeout=30)
            print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
            asyncio.run(run(base_url, args.seconds))
        finally:
            server.terminate()
            server.wait(timeout=15)


if __name__ == "__main__":
    main()
