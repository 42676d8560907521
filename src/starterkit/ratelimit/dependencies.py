"""FastAPI dependencies that count requests against a limit, per client IP or per user.

They raise :class:`~starterkit.exceptions.RateLimited` (429 with ``Retry-After``) and have the
request-context middleware add the ``X-RateLimit-*`` headers to every response of the route,
error responses included. ``kit.limit_per_client`` and ``kit.limit_per_user`` build them on a
runtime's counters.

No ``from __future__ import annotations`` here: FastAPI reads the annotations of the
dependencies built here at runtime, and they name local variables.
"""

from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated

from fastapi import Depends, Request

from starterkit.clientip import client_ip, rate_limit_key
from starterkit.db.models import User
from starterkit.middleware import RATE_LIMIT_HEADERS_KEY
from starterkit.ratelimit.counters import LimitState, RateLimits, parse_limit, raise_if_refused

LimitDependency = Callable[..., Awaitable[None]]
UserDependency = Callable[..., Awaitable[User]]


def report(request: Request, state: LimitState) -> None:
    """Have the request-context middleware add ``state``'s headers to the response.

    Done in middleware so that every response of a limited route carries them, also the
    error responses that exception handlers build from scratch.
    """
    setattr(request.state, RATE_LIMIT_HEADERS_KEY, state.headers())


def limit_per_client(
    rate_limits: RateLimits,
    trusted_proxies: Sequence[str],
    name: str,
    limit_text: str,
    *,
    ipv6_prefix: int = 64,
) -> LimitDependency:
    """A dependency counting each request against ``limit_text`` per client IP.

    Args:
        rate_limits: the counters to use.
        trusted_proxies: whose ``X-Forwarded-For`` names the client (TRUSTED_PROXIES).
        name: names the counter, e.g. ``"login"``; routes with the same name share it.
        limit_text: e.g. ``"5/minute"`` or ``"10/second;100/minute"``; every window applies.
        ipv6_prefix: an IPv6 client counts by its network of this many bits.
    """
    limit = parse_limit(limit_text)

    async def rate_limit(request: Request) -> None:
        key = rate_limit_key(client_ip(request, trusted_proxies), ipv6_prefix)
        state = await rate_limits.hit(name, limit, key)
        raise_if_refused(state)
        report(request, state)

    return rate_limit


def limit_per_user(
    rate_limits: RateLimits, current_user: UserDependency, name: str, limit_text: str
) -> LimitDependency:
    """A dependency counting each request of the signed-in user against ``limit_text``."""
    limit = parse_limit(limit_text)

    async def rate_limit(request: Request, user: Annotated[User, Depends(current_user)]) -> None:
        state = await rate_limits.hit(name, limit, str(user.id))
        raise_if_refused(state)
        report(request, state)

    return rate_limit
