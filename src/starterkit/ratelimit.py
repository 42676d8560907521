"""Rate limits: the built-in auth limits (async ``limits``) and ``kit.limiter`` (slowapi).

With REDIS_URL set, counters live in Redis and every instance shares them; otherwise they live
in the process. When Redis cannot be reached, limits keep working on per-process memory (never
fail open, never 500); a warning is logged once per outage and Redis is tried again after a
short pause, so recovery is automatic.

Responses of limited routes carry ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and
``X-RateLimit-Reset`` (Unix time at which the window frees up, as slowapi sends it); a 429
carries ``Retry-After`` in seconds.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from fastapi import Depends, Request, Response
from limits import RateLimitItem, parse
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

    async def hit(self, name: str, limit: RateLimitItem, *key: str) -> LimitState:
        """Count one request for ``key`` against ``limit``; ``allowed`` says if it fits."""
        return await self._check(name, limit, key, consume=True)

    async def peek(self, name: str, limit: RateLimitItem, *key: str) -> LimitState:
        """Like :meth:`hit`, without counting this request."""
        return await self._check(name, limit, key, consume=False)

    async def _check(
        self, name: str, limit: RateLimitItem, key: tuple[str, ...], *, consume: bool
    ) -> LimitState:
        identifiers = (name, *key)
        limiter = self._memory
        if self._shared is not None and time.monotonic() >= self._shared_down_until:
            try:
                return await self._evaluate(self._shared, name, limit, identifiers, consume)
            except Exception as error:  # noqa: BLE001 - fall back, never fail open
                self._shared_failed(error)
        return await self._evaluate(limiter, name, limit, identifiers, consume)

    async def _evaluate(
        self,
        limiter: MovingWindowRateLimiter,
        name: str,
        limit: RateLimitItem,
        identifiers: tuple[str, ...],
        consume: bool,
    ) -> LimitState:
        if consume:
            allowed = await limiter.hit(limit, *identifiers)
        else:
            allowed = await limiter.test(limit, *identifiers)
        stats = await limiter.get_window_stats(limit, *identifiers)
        if limiter is self._shared and self._outage_logged:
            self._outage_logged = False
            logger.warning("rate-limit storage (Redis) is reachable again")
        if not allowed:
            self.rejections[name] = self.rejections.get(name, 0) + 1
        return LimitState(
            allowed=allowed,
            limit=limit.amount,
            remaining=max(0, stats.remaining),
            reset_at=stats.reset_time,
        )

    def _shared_failed(self, error: BaseException) -> None:
        self._shared_down_until = time.monotonic() + RETRY_REDIS_AFTER_SECONDS
        if not self._outage_logged:
            self._outage_logged = True
            logger.warning(
                "rate-limit storage (Redis) failed (%s); limiting per process until it is back",
                type(error).__name__,
            )


def parse_limit(text: str) -> RateLimitItem:
    """A limit such as ``"5/minute"`` (Settings already validated it)."""
    return parse(text)


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
        limit_text: e.g. ``"5/minute"``, read from that kit's settings.
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
