"""The client address: X-Forwarded-For is believed only from trusted proxies."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from starterkit.clientip import client_ip, rate_limit_key


def request(peer: str, *forwarded: str) -> Request:
    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
    return Request({"type": "http", "client": (peer, 5555), "headers": headers})


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        ("198.51.100.7", ["203.0.113.9"], [], "198.51.100.7"),  # nobody trusted
        ("198.51.100.7", ["203.0.113.9"], ["10.0.0.0/8"], "198.51.100.7"),  # peer not a proxy
        ("10.0.0.2", ["203.0.113.9"], ["10.0.0.0/8"], "203.0.113.9"),
        ("10.0.0.2", ["1.2.3.4, 203.0.113.9"], ["10.0.0.0/8"], "203.0.113.9"),  # spoof left
        ("10.0.0.2", ["203.0.113.9, 10.0.0.3"], ["10.0.0.0/8"], "203.0.113.9"),  # proxy chain
        ("10.0.0.2", ["1.2.3.4", "203.0.113.9"], ["10.0.0.0/8"], "203.0.113.9"),  # two headers
        ("10.0.0.2", ["10.0.0.9"], ["10.0.0.0/8"], "10.0.0.9"),  # all hops trusted
        ("10.0.0.2", [], ["10.0.0.0/8"], "10.0.0.2"),
        ("10.0.0.2", ["not-an-ip"], ["10.0.0.0/8"], "10.0.0.2"),
        ("::1", ["2001:db8::5"], ["::1"], "2001:db8::5"),
        ("::ffff:198.51.100.7", [], [], "198.51.100.7"),  # IPv4-mapped: one client, one form
        ("10.0.0.2", ["::ffff:203.0.113.9"], ["10.0.0.0/8"], "203.0.113.9"),
        # A zone id would overflow the 45-character ip columns (a 500 on PostgreSQL).
        ("10.0.0.2", ["fe80::1%" + "z" * 200], ["10.0.0.0/8"], "fe80::1"),
    ],
)
def test_client_ip(peer: str, forwarded: list[str], trusted: list[str], expected: str) -> None:
    assert client_ip(request(peer, *forwarded), trusted) == expected


@pytest.mark.parametrize(
    ("ip", "prefix", "expected"),
    [
        ("203.0.113.9", 64, "203.0.113.9"),
        ("2001:db8:1:2:aaaa::1", 64, "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", 64, "2001:db8:1:2::/64"),  # the same /64
        ("2001:db8:1:2:aaaa::1", 48, "2001:db8:1::/48"),
        ("2001:db8::1", 128, "2001:db8::1/128"),
        ("::ffff:203.0.113.9", 64, "203.0.113.9"),
        ("unknown", 64, "unknown"),
    ],
)
def test_per_ip_limits_count_an_ipv6_client_by_its_network(
    ip: str, prefix: int, expected: str
) -> None:
    assert rate_limit_key(ip, prefix) == expected
