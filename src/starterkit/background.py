"""Work a request starts but does not wait for: account look-ups and mail delivery.

``POST /auth/forgot-password`` must answer at once and in the same time whether or not the
account exists, and a slow mail server must never slow the API, so that work runs as asyncio
tasks owned by the runtime. A job's failure is logged with its traceback and goes nowhere
else: the response it came from is long gone. On shutdown the runtime waits a bounded time for
running jobs, so a mail asked for just before a deploy is still sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

logger = logging.getLogger("starterkit.background")

DRAIN_TIMEOUT_SECONDS = 10.0


class BackgroundJobs:
    """The background jobs of one runtime: spawned without waiting, awaited on shutdown."""

    def __init__(self) -> None:
        # asyncio keeps only weak references to tasks; this set keeps running jobs alive.
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, job: Coroutine[Any, Any, None], *, name: str) -> asyncio.Task[None]:
        """Start ``job`` on the running event loop and return at once.

        Args:
            job: the coroutine to run; whatever it raises is logged, never propagated.
            name: what the job does, for the log (it must not contain secrets).
        """
        task = asyncio.get_running_loop().create_task(self._run(job, name), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @staticmethod
    async def _run(job: Coroutine[Any, Any, None], name: str) -> None:
        try:
            await job
        except asyncio.CancelledError:
            logger.warning("background job %r was cancelled", name)
            raise
        except Exception:
            logger.exception("background job %r failed", name)

    @property
    def pending(self) -> int:
        """How many jobs are still running."""
        return len(self._tasks)

    async def wait(self) -> None:
        """Wait until no job is running, including jobs that running jobs start meanwhile."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def drain(self, grace_seconds: float = DRAIN_TIMEOUT_SECONDS) -> None:
        """Wait up to ``grace_seconds`` for running jobs, then cancel what is left."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace_seconds):
                await self.wait()
        leftovers = set(self._tasks)
        if leftovers:
            logger.warning(
                "cancelling %d background jobs still running at shutdown", len(leftovers)
            )
            for task in leftovers:
                task.cancel()
            await asyncio.gather(*leftovers, return_exceptions=True)
