"""Rate limits: the built-in auth limits (async ``limits``) and ``kit.limiter`` (slowapi).

With REDIS_URL set, counters live in Redis and every instance shares them; otherwise they live
in the process. When Redis cannot be reached, limits keep working on per-process memory (never
fail open, never 500); a warning is logged once per outage and Redis is tried again after a
short pause, so recovery is automatic.

A limit setting may hold several windows, ``"10/second;100/minute"``: a request passes only
if every window has room, and the windows are counted in the order written; the first that
refuses stops the count, so a refused request has used up room in the windows before it.

Responses of limited routes carry ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and
``X-RateLimit-Reset`` (Unix time at which the window frees up, as slowapi sends it); a 429
carries ``Retry-After`` in seconds. With several windows the headers describe one: on a 429
the window that refused, otherwise the one with the fewest requests left (the first written
on a tie), so ``Remaining`` never promises more than the request after this one may use.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from fastapi import Depends, Request, Response
from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from slowapi import Limiter

from starterkit.clientip import client_ip
from starterkit.db.models import User
from starterkit.errors import error_response
from starterkit.exceptions import RateLimited
from starterkit.middleware import RATE_LIMIT_HEADERS_KEY

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from starterkit.app import StarterKit

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

    def __init__(self, redis: Redis | None, *, redis_url: str, key_prefix: str) -> None:
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
        if self._shared is not None and time.monotonic() >= self._shared_down_until:
            try:
                state = await self._evaluate(self._shared, windows, identifiers, consume)
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


LimitDependency = Callable[..., Awaitable[None]]


def report(request: Request, state: LimitState) -> None:
    """Have the request-context middleware add ``state``'s headers to the response.

    Done in middleware so that every response of a limited route carries them, also the
    error responses that exception handlers build from scratch.
    """
    setattr(request.state, RATE_LIMIT_HEADERS_KEY, state.headers())


def limit_per_client(kit: StarterKit, name: str, limit_text: str) -> LimitDependency:
    """A dependency counting each request against ``limit_text`` per client IP.

    Args:
        kit: whose settings (trusted proxies) and storage to use.
        name: names the counter, e.g. ``"login"``; routes with the same name share it.
        limit_text: e.g. ``"5/minute"`` or ``"10/second;100/minute"``, read from that kit's
            settings; every window applies.
    """
    limit = parse_limit(limit_text)

    async def rate_limit(request: Request) -> None:
        ip = client_ip(request, kit.settings.trusted_proxies)
        state = await kit.rate_limits.hit(name, limit, ip)
        raise_if_refused(state)
        report(request, state)

    return rate_limit


def limit_per_user(kit: StarterKit, name: str, limit_text: str) -> LimitDependency:
    """A dependency counting each request of the signed-in user against ``limit_text``."""
    limit = parse_limit(limit_text)

    async def rate_limit(
        request: Request,
        user: User = Depends(kit.current_user),  # noqa: B008 - FastAPI's dependency syntax
    ) -> None:
        state = await kit.rate_limits.hit(name, limit, str(user.id))
        raise_if_refused(state)
        report(request, state)

    return rate_limit


def client_key(kit: StarterKit) -> Callable[[Request], str]:
    """slowapi key function: the trusted-proxy-aware client IP of ``kit``."""

    def key(request: Request) -> str:
        return client_ip(request, kit.settings.trusted_proxies)

    return key


def build_limiter(kit: StarterKit) -> Limiter:
    """``kit.limiter``: slowapi on the same Redis (or memory), key function and strategy.

    slowapi checks limits with the synchronous ``limits`` API, so with Redis each decorated
    request makes one blocking round trip; the built-in limits use the async API.
    """
    settings = kit.settings
    return Limiter(
        key_func=client_key(kit),
        storage_uri=settings.redis_url or "memory://",
        # slowapi annotates these as strings; redis-py needs numbers.
        storage_options=cast("dict[str, str]", {"socket_connect_timeout": 1, "socket_timeout": 1})
        if settings.redis_url
        else {},
        key_prefix=f"{settings.redis_key_prefix}slowapi",
        strategy="moving-window",
        headers_enabled=True,
        in_memory_fallback_enabled=True,
        swallow_errors=True,
    )


async def slowapi_exceeded_handler(request: Request, error: Exception) -> Response:
    """429 in the error envelope for ``@kit.limiter.limit(...)`` routes, with slowapi's headers."""
    detail = getattr(error, "detail", "")
    response = error_response(
        429, f"Rate limit exceeded: {detail}." if detail else "Rate limit exceeded."
    )
    limiter = getattr(request.app.state, "limiter", None)
    current = getattr(request.state, "view_rate_limit", None)
    if limiter is not None and current is not None:
        # slowapi's own handler does the same; it is the only way to get its header values.
        response = limiter._inject_headers(response, current)
    kit = getattr(request.app.state, "starterkit", None)
    if kit is not None:
        kit.rate_limits.rejections["custom"] = kit.rate_limits.rejections.get("custom", 0) + 1
    return response
