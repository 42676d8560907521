"""Scenarios of ``run.py`` that are not throughput, and the run state they share.

:class:`Bench` holds one run's folder, settings, servers and tokens. The measurements here
report one :class:`~benchmarks.report.Finding` each: ``/health/live`` p99 while clients log in
(from ``login_load.py``), keyset page latency with 100,000 vs 1,000 items (from
``items_load.py``), ``starterkit --help`` wall time, and the serving worker's RSS.
"""

# Ratios and ranges are printed with the multiplication sign and the en dash on purpose.
# ruff: noqa: RUF001

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.items_load import PASSWORD, keyset_page_url, latency_samples, seed, token_for
from benchmarks.login_load import measure_login_load, percentile
from benchmarks.report import Finding, Target
from benchmarks.servers import Server, start_floor, start_starterkit
from benchmarks.wrk_runner import WrkResult, request_script, run_wrk
from starterkit import Settings

READER, WRITER = "reader@example.com", "writer@example.com"
SMALL, LARGE = ("keyset-1k@example.com", 1_000), ("keyset-100k@example.com", 100_000)
API = "/api/v1"
RSS_TIME_LIMIT = 180  # seconds: a server slower than ~300 req/s gets a shorter RSS run


@dataclass(frozen=True)
class Endpoint:
    """One throughput scenario: a request that wrk repeats against one server."""

    key: str
    name: str
    server: str
    path: str
    target: Target | None = None
    method: str = "GET"
    user: str | None = READER
    body: str | None = None


@dataclass
class Bench:
    """One run's folder, settings, servers and tokens."""

    args: argparse.Namespace
    folder: Path
    settings: dict[str, str]
    server_cpus: str | None
    client_cpus: str | None
    servers: dict[str, Server] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)

    def start(self, stack: ExitStack, name: str, **overrides: str) -> Server:
        if name == "floor":
            server = start_floor(folder=self.folder, settings=self.settings, cpus=self.server_cpus)
        else:
            server = start_starterkit(
                name, folder=self.folder, settings=self.settings | overrides, cpus=self.server_cpus
            )
        stack.callback(server.stop)
        self.servers[name] = server
        return server

    def wrk(self, endpoint: Endpoint, seconds: int) -> WrkResult:
        headers = {}
        if endpoint.user is not None:
            headers["Authorization"] = f"Bearer {self.tokens[endpoint.user]}"
        if endpoint.body is not None:
            headers["Content-Type"] = "application/json"
        script = request_script(method=endpoint.method, headers=headers, body=endpoint.body)
        return run_wrk(
            self.servers[endpoint.server].base_url + endpoint.path,
            script,
            folder=self.folder,
            connections=self.args.connections,
            seconds=seconds,
            cpus=self.client_cpus,
        )


STARTED = time.monotonic()


def progress(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:5.0f} s] {message}", file=sys.stderr, flush=True)


def measure_health_under_login(bench: Bench) -> Finding:
    """p99 of ``/health/live`` while 4 clients log in nonstop, over its p99 when idle."""
    progress("health/live p99 idle and while 4 clients log in…")
    result = asyncio.run(
        measure_login_load(
            bench.servers["main"].base_url,
            email=READER,
            password=PASSWORD,
            seconds=bench.args.login_seconds,
        )
    )
    idle = percentile(result.idle, 0.99) * 1000
    loaded = percentile(result.loaded, 0.99) * 1000
    return Finding(
        "p99 of GET /health/live while 4 clients log in nonstop, vs idle",
        f"{loaded:.2f} ms vs {idle:.2f} ms = {result.p99_ratio:.2f}× "
        f"({result.logins_during_load / result.seconds:.1f} logins/s)",
        "≤ 3×",
        result.p99_ratio <= 3,
    )


def measure_keyset(bench: Bench, settings: Settings) -> Finding:
    """p50/p99 of a mid-list keyset page (cache off) for owners of 100,000 and 1,000 items."""
    progress("seeding 1,000 and 100,000 items for the keyset pages…")
    for email, count in (SMALL, LARGE):
        asyncio.run(seed(settings, email, count))
    base_url = bench.servers["nocache"].base_url
    pages = {}
    for email, count in (SMALL, LARGE):
        token = token_for(base_url, email)
        pages[count] = (keyset_page_url(base_url, token, count), token)
    samples: dict[int, list[float]] = {count: [] for count in pages}
    for _ in range(bench.args.rounds):  # the two owners take turns, as the endpoints do
        for count, (url, token) in pages.items():
            samples[count] += latency_samples(url, token, bench.args.keyset_requests)[2]
    small, large = (statistics.median(samples[count]) for count in (SMALL[1], LARGE[1]))
    p99 = {count: percentile(found, 0.99) for count, found in samples.items()}
    ratio = large / small
    return Finding(
        "keyset page (limit=20, mid-list, no cache): 100,000 vs 1,000 items",
        f"p50 {large:.2f} ms vs {small:.2f} ms = {ratio:.2f}× "
        f"(p99 {p99[LARGE[1]]:.2f} vs {p99[SMALL[1]]:.2f} ms)",
        "≤ 1.5×",
        ratio <= 1.5,
    )


def measure_help(bench: Bench) -> Finding:
    """Wall time of ``starterkit --help`` (the venv's console script), after one warm-up."""
    progress("timing starterkit --help…")
    script = Path(sys.executable).with_name("starterkit")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "starterkit"]
    times = []
    for attempt in range(bench.args.help_runs + 1):
        start = time.perf_counter()
        subprocess.run(
            [*command, "--help"], cwd=bench.folder, capture_output=True, check=True, timeout=60
        )
        if attempt:  # the first run only warms the file cache
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return Finding(
        "`starterkit --help` wall time",
        f"{median:.3f} s median ({min(times):.3f}–{max(times):.3f} s, {len(times)} runs)",
        "≤ 0.35 s",
        median <= 0.35,
    )


def measure_rss(bench: Bench, stack: ExitStack) -> Finding:
    """A fresh server's RSS before and after 1/5, 3/5 and all of ``--rss-requests`` requests."""
    total = bench.args.rss_requests
    progress(f"RSS of a fresh server over {total:,} requests…")
    server = bench.start(stack, "rss")
    paths = [f"{API}/users/me", f"{API}/items?limit=20", f"{API}/items?limit=5"]
    paths.append(f"{API}/health/live")
    samples = [(0, server.rss_mb())]
    served, rate = 0, 0.0
    deadline = time.monotonic() + RSS_TIME_LIMIT
    for goal in (total // 5, total * 3 // 5, total):
        # wrk runs for its whole duration even when the script stops early, so each run lasts
        # about as long as the requests still to send should take, judged by the last rate.
        while served < goal and time.monotonic() < deadline:
            seconds = 2 if not rate else int(min(10, max(1, (goal - served) / rate)))
            script = request_script(
                headers={"Authorization": f"Bearer {bench.tokens[READER]}"},
                paths=paths,
                stop_after=goal - served,
            )
            result = run_wrk(
                server.base_url,
                script,
                folder=bench.folder,
                connections=bench.args.connections,
                seconds=seconds,
                cpus=bench.client_cpus,
            )
            served += result.requests
            rate = result.requests / seconds
        samples.append((served, server.rss_mb()))
    server.stop()
    (_, before_last), (_, last) = samples[-2:]
    growth = last - before_last
    steady = growth <= max(2.0, 0.02 * before_last)
    shown = ", ".join(f"{n / 1000:.0f}k: {mb:.1f}" for n, mb in samples)
    return Finding(
        f"RSS of the serving worker after {served:,} requests (MB, by requests served)",
        f"{shown} (last step {growth:+.1f} MB)",
        "≤ 150 MB and not growing",
        last <= 150 and steady and served >= total,
    )
