"""FastAPI dependencies that count requests against a limit, per client IP or per user.

They raise :class:`~starterkit.exceptions.RateLimited` (429 with ``Retry-After``) and have the
request-context middleware add the ``X-RateLimit-*`` headers to every response of the route,
error responses included. ``kit.limit_per_client`` and ``kit.limit_per_user`` build them on a
runtime's counters.

No ``from __future__ import annotations`` here: FastAPI reads the annotations of the
dependencies built here at runtime, and they name local variables.
"""

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated

from fastapi import Depends, Request

from starterkit.clientip import client_limit_key
from starterkit.db.models import User
from starterkit.middleware import RATE_LIMIT_HEADERS_KEY
from starterkit.ratelimit.counters import LimitState, RateLimits, parse_limit, raise_if_refused

LimitDependency = Callable[..., Awaitable[None]]
UserDependency = Callable[..., Awaitable[User]]
KeyFunction = Callable[[Request], str | Awaitable[str]]
"""Who a request counts as, for ``kit.rate_limit(..., key=...)``: sync or async."""


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
        key = client_limit_key(request, trusted_proxies, ipv6_prefix)
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


def limit_route(
    rate_limits: RateLimits,
    limit_text: str,
    *,
    key: KeyFunction | None = None,
    current_user: UserDependency | None = None,
    name: str | None = None,
) -> LimitDependency:
    """A dependency that limits the route it is on: ``kit.rate_limit(...)``.

    Each route (method and path template) has counters of its own unless ``name`` gives
    several routes one counter. The counters are the built-in limits' own: shared through
    Redis, falling back to memory, with the same headers and 429.

    Args:
        rate_limits: the counters to use.
        limit_text: e.g. ``"10/minute"`` or ``"10/second;100/minute"``; checked here, so a
            bad one fails where the route is defined.
        key: a function of the request naming who it counts as.
        current_user: instead of ``key``: the user dependency whose user it counts as.
        name: the counter's name; by default the route's method and path template.
    """
    limit = parse_limit(limit_text)

    async def count(request: Request, who: str) -> None:
        state = await rate_limits.hit("route", limit, name or _route_of(request), who)
        raise_if_refused(state)
        report(request, state)

    if current_user is not None:
        user_dependency = current_user

        async def rate_limit_user(
            request: Request, user: Annotated[User, Depends(user_dependency)]
        ) -> None:
            await count(request, f"user:{user.id}")

        return rate_limit_user
    if key is None:
        raise TypeError("limit_route needs key or current_user")
    key_of = key

    async def rate_limit(request: Request) -> None:
        who = key_of(request)
        await count(request, str(await who if inspect.isawaitable(who) else who))

    return rate_limit


def _route_of(request: Request) -> str:
    route = request.scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return f"{request.method} {template if isinstance(template, str) else request.url.path}"
