"""``kit.limiter``: slowapi's ``Limiter`` on the storage of the built-in limits, and its 429.

slowapi checks limits with the synchronous ``limits`` API, so with Redis each decorated request
makes one blocking round trip; the built-in limits use the async API.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

from fastapi import Request, Response
from limits import RateLimitItem
from slowapi import Limiter

from starterkit.clientip import client_limit_key
from starterkit.errors import error_response
from starterkit.settings import Settings


def client_key(trusted_proxies: Sequence[str], ipv6_prefix: int = 64) -> Callable[[Request], str]:
    """slowapi key function: the trusted-proxy-aware client IP (an IPv6 client's network)."""

    def key(request: Request) -> str:
        return client_limit_key(request, trusted_proxies, ipv6_prefix)

    return key


class _Limiter(Limiter):
    """slowapi's ``Limiter``, minus its 500 for a route without a ``response`` parameter.

    slowapi adds its headers to the endpoint's ``response: Response`` parameter; for a route
    written as its README shows (``request: Request`` only) it raised instead, so every
    allowed request was a 500. Such routes now simply go without the headers.
    """

    def _inject_headers(  # type: ignore[override]  # slowapi passes None here too
        self, response: Response | None, current_limit: tuple[RateLimitItem, list[str]]
    ) -> Response | None:
        if not isinstance(response, Response):
            return response
        return super()._inject_headers(response, current_limit)


def build_limiter(settings: Settings) -> Limiter:
    """slowapi on the same Redis (or memory), key function and strategy as the built-in limits."""
    return _Limiter(
        key_func=client_key(settings.trusted_proxies, settings.ipv6_rate_limit_prefix),
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
