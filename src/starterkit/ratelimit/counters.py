"""Rate-limit counters: moving windows in Redis (shared) or in process, with a fallback.

Nothing here knows about HTTP: :mod:`starterkit.ratelimit.dependencies` turns these counters
into FastAPI dependencies and :mod:`starterkit.ratelimit.limiter` builds ``kit.limiter``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

from starterkit.exceptions import RateLimited

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger("starterkit.ratelimit")

RETRY_REDIS_AFTER_SECONDS = 5.0

# One limit setting, parsed: its windows in the order written ("10/second;100/minute").
Windows = tuple[RateLimitItem, ...]


@dataclass(frozen=True, slots=True)
class LimitState:
    """Where one key stands against one limit after a check."""

    allowed: bool
    limit: int
    remaining: int
    reset_at: float  # Unix time

    @property
    def retry_after(self) -> int:
        """Whole seconds until a request would be allowed again (at least 1)."""
        return max(1, math.ceil(self.reset_at - time.time()))

    def headers(self) -> dict[str, str]:
        """The ``X-RateLimit-*`` headers (and ``Retry-After`` when refused)."""
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(math.ceil(self.reset_at)),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers


class RateLimits:
    """Moving-window counters in Redis (shared) or memory, with a memory fallback."""

    def __init__(
        self,
        redis: Redis | None,
        *,
        redis_url: str,
        key_prefix: str,
        namespace: Callable[[], Awaitable[str]] | None = None,
    ) -> None:
        """
        Args:
            redis: the shared client, or None for counters in this process only.
            redis_url: its URL (the limits library builds its storage from one).
            key_prefix: the start of every Redis key.
            namespace: returns what makes the Redis counters this service's (the installation
                id); while it raises, requests are counted in process, as during an outage.
        """
        self._namespace = namespace
        self._memory = MovingWindowRateLimiter(MemoryStorage())
        self._shared: MovingWindowRateLimiter | None = None
        if redis is not None:
            storage = RedisStorage(
                f"async+{redis_url}",
                implementation="redispy",
                key_prefix=f"{key_prefix}limits",
                wrap_exceptions=True,
                # One pool for cache, limits and health: the limiter adds no connections.
                **cast("dict[str, Any]", {"connection_pool": redis.connection_pool}),
            )
            self._shared = MovingWindowRateLimiter(storage)
        self._shared_down_until = 0.0
        self._outage_logged = False
        self.rejections: dict[str, int] = {}

    async def hit(
        self, name: str, limit: RateLimitItem | Sequence[RateLimitItem], *key: str
    ) -> LimitState:
        """Count one request for ``key`` against every window of ``limit``.

        ``allowed`` says whether all of them had room; the state describes the window that
        refused, or else the one with the fewest requests left.
        """
        return await self._check(name, _windows(limit), key, consume=True)

    async def peek(
        self, name: str, limit: RateLimitItem | Sequence[RateLimitItem], *key: str
    ) -> LimitState:
        """Like :meth:`hit`, without counting this request."""
        return await self._check(name, _windows(limit), key, consume=False)

    async def _check(
        self, name: str, windows: Windows, key: tuple[str, ...], *, consume: bool
    ) -> LimitState:
        identifiers = (name, *key)
        shared = await self._shared_identifiers(identifiers)
        if shared is not None and self._shared is not None:
            try:
                state = await self._evaluate(self._shared, windows, shared, consume)
            except Exception as error:  # noqa: BLE001 - fall back, never fail open
                self._shared_failed(error)
            else:
                if self._outage_logged:
                    self._outage_logged = False
                    logger.warning("rate-limit storage (Redis) is reachable again")
                return self._count_rejection(name, state)
        return self._count_rejection(
            name, await self._evaluate(self._memory, windows, identifiers, consume)
        )

    async def _shared_identifiers(self, identifiers: tuple[str, ...]) -> tuple[str, ...] | None:
        """The identifiers of the Redis counter, or None when it cannot be used now."""
        if self._shared is None or time.monotonic() < self._shared_down_until:
            return None
        if self._namespace is None:
            return identifiers
        try:
            return (await self._namespace(), *identifiers)
        except Exception:  # noqa: BLE001 - the namespace said why; count in process meanwhile
            return None

    def _count_rejection(self, name: str, state: LimitState) -> LimitState:
        if not state.allowed:
            self.rejections[name] = self.rejections.get(name, 0) + 1
        return state

    @staticmethod
    async def _evaluate(
        limiter: MovingWindowRateLimiter,
        windows: Windows,
        identifiers: tuple[str, ...],
        consume: bool,
    ) -> LimitState:
        states = []
        for window in windows:
            if consume:
                allowed = await limiter.hit(window, *identifiers)
            else:
                allowed = await limiter.test(window, *identifiers)
            stats = await limiter.get_window_stats(window, *identifiers)
            state = LimitState(
                allowed=allowed,
                limit=window.amount,
                remaining=max(0, stats.remaining),
                reset_at=stats.reset_time,
            )
            if not allowed:
                return state  # later windows do not count a refused request
            states.append(state)
        # min() keeps the first of equals: the window written first wins a tie.
        return min(states, key=lambda state: state.remaining)

    def _shared_failed(self, error: BaseException) -> None:
        self._shared_down_until = time.monotonic() + RETRY_REDIS_AFTER_SECONDS
        if not self._outage_logged:
            self._outage_logged = True
            logger.warning(
                "rate-limit storage (Redis) failed (%s); limiting per process until it is back",
                type(error).__name__,
            )


def parse_limit(text: str) -> Windows:
    """Every window of a limit setting such as ``"5/minute"`` or ``"10/second;100/minute"``.

    Settings already validated the text.
    """
    return tuple(parse_many(text))


def _windows(limit: RateLimitItem | Sequence[RateLimitItem]) -> Windows:
    windows = (limit,) if isinstance(limit, RateLimitItem) else tuple(limit)
    if not windows:
        raise ValueError("a rate limit needs at least one window")
    return windows


def raise_if_refused(state: LimitState) -> None:
    """Raise :class:`RateLimited` with the right headers if ``state`` refuses the request."""
    if not state.allowed:
        raise RateLimited(headers=state.headers())
