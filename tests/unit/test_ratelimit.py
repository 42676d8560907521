"""Limit settings with several windows ("10/second;100/minute"): every window applies."""

from __future__ import annotations

import pytest

from starterkit.ratelimit.counters import RateLimits, parse_limit

pytestmark = pytest.mark.anyio


def memory_limits() -> RateLimits:
    return RateLimits(None, redis_url="", key_prefix="test:")


def test_a_setting_parses_into_every_window_in_order() -> None:
    windows = parse_limit("10/second; 100/minute")
    assert [(window.amount, window.GRANULARITY.name) for window in windows] == [
        (10, "second"),
        (100, "minute"),
    ]


async def test_every_window_of_a_limit_applies() -> None:
    limits, windows = memory_limits(), parse_limit("3/minute;2/hour")
    assert (await limits.hit("login", windows, "10.0.0.1")).allowed
    assert (await limits.hit("login", windows, "10.0.0.1")).allowed
    # The minute still has room; the hour does not.
    refused = await limits.hit("login", windows, "10.0.0.1")
    assert not refused.allowed
    assert refused.limit == 2
    assert refused.headers()["X-RateLimit-Remaining"] == "0"
    assert int(refused.headers()["Retry-After"]) > 60
    assert limits.rejections == {"login": 1}
    # Other keys have their own counters.
    assert (await limits.hit("login", windows, "10.0.0.2")).allowed


async def test_headers_describe_the_window_with_fewest_requests_left() -> None:
    limits = memory_limits()
    state = await limits.hit("register", parse_limit("10/minute;3/hour"), "ip")
    assert (state.limit, state.remaining) == (3, 2)
    # On a tie the window written first is described: here the minute, which resets sooner.
    tie = await limits.hit("refresh", parse_limit("2/minute;2/hour"), "ip")
    hour = await limits.peek("refresh", parse_limit("2/hour"), "ip")
    assert (tie.limit, tie.remaining) == (2, 1)
    assert tie.reset_at < hour.reset_at


async def test_windows_after_the_refusing_one_do_not_count_the_request() -> None:
    limits = memory_limits()
    assert (await limits.hit("password", parse_limit("1/minute;5/hour"), "user")).allowed
    assert not (await limits.hit("password", parse_limit("1/minute;5/hour"), "user")).allowed
    hour = await limits.peek("password", parse_limit("5/hour"), "user")
    assert hour.remaining == 4


async def test_a_single_window_item_is_still_accepted() -> None:
    limits = memory_limits()
    [window] = parse_limit("1/minute")
    assert (await limits.hit("custom", window, "k")).allowed
    assert not (await limits.peek("custom", window, "k")).allowed
