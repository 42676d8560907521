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
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_ip(connection: HTTPConnection, trusted_proxies: Sequence[str]) -> str:
    """The address to attribute a request to.

    The socket peer, unless the peer is a trusted proxy: then the right-most
    ``X-Forwarded-For`` hop that is not itself a trusted proxy. Hops left of that one were
    written by the client and are never believed, so a client cannot choose its own address.
    """
    peer = connection.client.host if connection.client else "unknown"
    networks = parse_networks(tuple(trusted_proxies))
    if not networks or not _is_trusted(peer, networks):
        return peer
    forwarded = ",".join(connection.headers.getlist("x-forwarded-for"))
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, networks):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # garbage from a client: attribute it to the proxy that sent it
    return hops[0] if hops else peer


def origin_of(connection: HTTPConnection, trusted_proxies: Sequence[str]) -> Origin:
    """The client IP (see TRUSTED_PROXIES) and user agent of a request, for the audit log."""
    return Origin(
        ip=client_ip(connection, trusted_proxies), user_agent=connection.headers.get("user-agent")
    )
