"""The client address: X-Forwarded-For is believed only from trusted proxies."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from starterkit.clientip import client_ip


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
    ],
)
def test_client_ip(peer: str, forwarded: list[str], trusted: list[str], expected: str) -> None:
    assert client_ip(request(peer, *forwarded), trusted) == expected
