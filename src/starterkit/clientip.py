"""The client's IP address, believing ``X-Forwarded-For`` only from trusted proxies, and the
request's :class:`~starterkit.audit.Origin` for the audit log."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache

from starlette.requests import HTTPConnection

from starterkit.audit import Origin

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=64)
def parse_networks(entries: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    """TRUSTED_PROXIES entries (addresses or CIDRs) as networks."""
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def _is_trusted(address: str, networks: Sequence[IPNetwork]) -> bool:
    try:
        ip = _address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_ip(connection: HTTPConnection, trusted_proxies: Sequence[str]) -> str:
    """The address to attribute a request to.

    The socket peer, unless the peer is a trusted proxy: then the right-most
    ``X-Forwarded-For`` hop that is not itself a trusted proxy. Hops left of that one were
    written by the client and are never believed, so a client cannot choose its own address.
    Addresses come back in one canonical form: an IPv4-mapped IPv6 address as IPv4, an IPv6
    address without its zone (``%eth0``), so one client is always one string.
    """
    peer = canonical_ip(connection.client.host) if connection.client else "unknown"
    networks = parse_networks(tuple(trusted_proxies))
    if not networks or not _is_trusted(peer, networks):
        return peer
    forwarded = ",".join(connection.headers.getlist("x-forwarded-for"))
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, networks):
            try:
                return str(_address(hop))
            except ValueError:
                return peer  # garbage from a client: attribute it to the proxy that sent it
    return canonical_ip(hops[0]) if hops else peer


def canonical_ip(text: str) -> str:
    """``text`` as a canonical address (see :func:`client_ip`), or unchanged if it is none."""
    try:
        return str(_address(text))
    except ValueError:
        return text


def rate_limit_key(ip: str, ipv6_prefix: int) -> str:
    """Who a per-IP limit counts: an IPv4 address, or the IPv6 network of ``ipv6_prefix`` bits.

    One IPv6 subscriber usually has a whole /64 (or more) to pick addresses from, so counting
    single IPv6 addresses would give one client billions of budgets.
    """
    try:
        address = _address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv4Address):
        return str(address)
    return str(ipaddress.IPv6Network((address, ipv6_prefix), strict=False))


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    address = ipaddress.ip_address(text.strip().split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def origin_of(connection: HTTPConnection, trusted_proxies: Sequence[str]) -> Origin:
    """The client IP (see TRUSTED_PROXIES) and user agent of a request, for the audit log."""
    return Origin(
        ip=client_ip(connection, trusted_proxies), user_agent=connection.headers.get("user-agent")
    )


def client_limit_key(
    connection: HTTPConnection, trusted_proxies: Sequence[str], ipv6_prefix: int
) -> str:
    """Who a per-IP limit counts for this request: :func:`client_ip`, by :func:`rate_limit_key`."""
    return rate_limit_key(client_ip(connection, trusted_proxies), ipv6_prefix)
