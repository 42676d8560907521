"""What each JWT_ALGORITHM costs per token: issuing, a first verification, a repeated one.

A first verification checks the signature; a repeated one (the same token again, as every
request of a client does for the token's lifetime) is answered from the per-process memo of
verified tokens, so the algorithm's cost should disappear there. Each algorithm gets its own
SQLite database and first key.

Usage: ``python benchmarks/token_cost.py [--runs 2000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from starterkit import StarterKit
from starterkit.db import migrate
from starterkit.testing import throwaway_settings

ALGORITHMS = ("HS256", "EdDSA", "ES256", "RS256")


async def measure(algorithm: str, folder: Path, runs: int) -> str:
    settings = throwaway_settings(folder, jwt_algorithm=algorithm)
    await asyncio.to_thread(migrate.upgrade, settings)
    kit = StarterKit(settings)
    try:
        await kit.tokens.ready()
        tokens = kit.tokens

        def issue() -> str:
            return tokens.issue_access_token(user_id=1, token_version=1, session_id=1)

        token = issue()
        issued = timeit.timeit(issue, number=runs) / runs
        first = timeit.timeit(lambda: tokens._verify(token), number=runs) / runs
        tokens.decode_access_token(token)
        repeated = timeit.timeit(lambda: tokens.decode_access_token(token), number=runs * 10)
        repeated /= runs * 10
    finally:
        await kit.aclose()
    return (
        f"| {algorithm} | {issued * 1e6:.0f} µs | {first * 1e6:.0f} µs | "
        f"{repeated * 1e6:.2f} µs | {len(token)} |"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # "made and activated signing key ..."
    print("| JWT_ALGORITHM | issue | first verification | repeated (memo) | token bytes |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="starterkit-token-cost-") as name:
        for algorithm in ALGORITHMS:
            folder = Path(name) / algorithm
            folder.mkdir()
            print(await measure(algorithm, folder, args.runs), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
