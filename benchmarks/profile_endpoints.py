"""Where the time of an endpoint goes: py-spy samples the server while wrk drives it.

Sets up the same servers and data as ``run.py`` (one worker, fresh database, a reader with 20
items), then for each chosen endpoint records the serving process with py-spy (sampling, so
the server keeps running at close to full speed) and prints the share of samples per area:
uvicorn, routing and middleware, dependency resolution, token verification, database,
serialisation, cache. ``--compare DIR`` adds the shares of an earlier ``--output DIR`` run, e.g.
one made with ``PYTHONPATH`` pointing at an older checkout's ``src``.

Usage: ``python benchmarks/profile_endpoints.py [users-me items-hit items-miss items-create]
[--seconds 8] [--output DIR] [--compare DIR] [--database ...] [--backend ...]``.
Needs wrk and py-spy (``pip install py-spy``; root, or ptrace allowed). Prints figures only.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.run import ENDPOINTS, parse_args, prepare, run_settings
from benchmarks.scenarios import Bench

# The deepest frame that matches decides a sample's area; later rules are deeper layers.
AREAS: tuple[tuple[str, Callable[[str, str], bool]], ...] = (
    (
        "uvicorn: sockets, HTTP parsing, access log",
        lambda name, file: any(p in file for p in ("uvicorn/", "asyncio/", "logging/")),
    ),
    (
        "Starlette/FastAPI routing and middleware plumbing",
        lambda name, file: any(
            p in file for p in ("starlette/", "fastapi/", "anyio/", "contextlib", "weakref")
        ),
    ),
    ("FastAPI dependency resolution", lambda name, file: "fastapi/dependencies" in file),
    (
        "starterkit middleware (request id, metrics, body limit)",
        lambda name, file: "starterkit/middleware" in file or "starterkit/metrics" in file,
    ),
    ("response serialisation (pydantic)", lambda name, file: "pydantic" in file),
    (
        "access-token verification (PyJWT)",
        lambda name, file: "jwt/" in file or name.endswith("decode_access_token"),
    ),
    (
        "database: SQLAlchemy, aiosqlite/asyncpg calls, user cache",
        lambda name, file: any(
            p in file
            for p in ("sqlalchemy", "aiosqlite", "asyncpg", "user_cache", "starterkit/db/")
        ),
    ),
    ("response cache", lambda name, file: "starterkit/cache" in file),
)
WORKER_THREADS = "database driver threads (aiosqlite)"


def shares(profile: Path) -> dict[str, float]:
    """Percent of samples per area in a py-spy speedscope file."""
    data = json.loads(profile.read_text())
    frames = data["shared"]["frames"]
    weights: collections.Counter[str] = collections.Counter()
    for thread in data["profiles"]:
        for sample, weight in zip(thread["samples"], thread["weights"], strict=True):
            if not sample:
                continue
            if frames[sample[0]]["name"].startswith("Thread._bootstrap"):
                weights[WORKER_THREADS] += weight
                continue
            area = "other"
            for index in sample:
                name, file = frames[index]["name"], frames[index].get("file", "")
                for candidate, matches in AREAS:
                    if matches(name, file):
                        area = candidate
            weights[area] += weight
    total = sum(weights.values()) or 1
    return {area: 100 * weight / total for area, weight in weights.items()}


def table(now: dict[str, float], before: dict[str, float] | None) -> str:
    areas = sorted(set(now) | set(before or {}), key=lambda a: -max(now.get(a, 0), 0))
    if before is None:
        lines = ["| where | share of samples |", "| --- | ---: |"]
        lines += [f"| {a} | {now.get(a, 0):.0f}% |" for a in areas]
    else:
        lines = ["| where | before | after |", "| --- | ---: | ---: |"]
        lines += [f"| {a} | {before.get(a, 0):.0f}% | {now.get(a, 0):.0f}% |" for a in areas]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("endpoints", nargs="*", default=["users-me", "items-hit"])
    parser.add_argument("--seconds", type=int, default=8, help="of load (and samples) each")
    parser.add_argument("--output", type=Path, help="keep the py-spy profiles in this folder")
    parser.add_argument("--compare", type=Path, help="an earlier --output folder")
    options, rest = parser.parse_known_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        raise SystemExit("Error: py-spy is not installed; pip install py-spy")
    chosen = [e for e in ENDPOINTS if e.key in options.endpoints]
    args = parse_args([*rest, "--only", ",".join(e.key for e in chosen)])
    with ExitStack() as stack:
        settings, folder = run_settings(args, stack)
        for key in ("database_version", "backend_version"):
            settings.pop(key)
        bench = Bench(args, folder, settings, None, None)
        prepare(bench, stack, chosen)
        output = options.output or folder
        output.mkdir(parents=True, exist_ok=True)
        for endpoint in chosen:
            bench.wrk(endpoint, 1)  # warm up
            profile = output / f"{endpoint.key}.json"
            pid = bench.servers[endpoint.server].pid
            record = [py_spy, "record", "--nonblocking", "--rate", "250", "--format", "speedscope"]
            record += ["--duration", str(options.seconds), "--pid", str(pid), "-o", str(profile)]
            recorder = subprocess.Popen(
                record, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            result = bench.wrk(endpoint, options.seconds)
            recorder.wait(timeout=options.seconds + 30)
            earlier = options.compare / profile.name if options.compare else None
            before = shares(earlier) if earlier and earlier.exists() else None
            print(f"\n{endpoint.name}: {result.rate:,.0f} req/s while sampled\n")
            print(table(shares(profile), before))
    return 0


if __name__ == "__main__":
    sys.exit(main())
