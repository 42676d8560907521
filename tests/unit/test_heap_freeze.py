"""The first runtime of a process to start freezes the startup heap, once (see
``starterkit.runtime._freeze_startup_heap``): a full garbage collection must not walk the
long-lived objects of the app on every pass (the cache-hit p99 of docs/performance.md)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import asyncio, gc, sys
    from starterkit import Settings, StarterKit

    async def start(kit):
        async with kit.lifespan():
            return gc.get_freeze_count()

    settings = Settings(_env_file=None, environment="test", database_url=sys.argv[1])
    before = gc.get_freeze_count()
    first = asyncio.run(start(StarterKit(settings)))
    garbage = [[n] for n in range(1000)]  # objects made after the first start
    second = asyncio.run(start(StarterKit(settings)))
    # Objects only leave the frozen set; Python 3.12 starts with a few frozen already.
    print(first > before + 1000, second <= first)
    """
)


def test_the_first_start_freezes_the_heap_and_later_ones_do_not(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, url], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True"]
