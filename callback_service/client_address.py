"""The client's address: the peer's, or what the trusted reverse proxies in front of us say it is.

X-Forwarded-For is believed only when the request comes from a proxy named in the setting
`trusted_proxies`; then the header is read from the right (each proxy appends the address it saw),
skipping our own proxies, and the first address that is not one of them is the client's. Anyone
can write the header's left part, so nothing left of that address is trusted.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Final

from aiohttp import hdrs, web

from config.settings import ProxyNetwork

__all__ = [
    "TRUSTED_PROXIES",
    "UNKNOWN",
    "client_address",
    "client_of",
    "from_trusted_proxy",
    "resolve_client_address",
]

UNKNOWN: Final = "unknown"
# A header longer than this is not a chain of proxies; its right part is still read.
_MAX_HOPS: Final = 32

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

TRUSTED_PROXIES: Final[web.AppKey[tuple[ProxyNetwork, ...]]] = web.AppKey("trusted_proxies")
"""The app's setting `trusted_proxies`, set by the app factory."""


def client_address(request: web.BaseRequest, trusted_proxies: Sequence[ProxyNetwork]) -> str:
    """The address of the client that sent request, as text (UNKNOWN when there is none)."""
    return resolve_client_address(
        request.remote, request.headers.getall(hdrs.X_FORWARDED_FOR, ()), trusted_proxies
    )


def client_of(request: web.BaseRequest) -> str:
    """The client's address of a request to our app, by the app's setting `trusted_proxies` (a
    request to an app without our settings, such as the demo's emulators, trusts no proxy)."""
    proxies = request.config_dict.get(TRUSTED_PROXIES) if isinstance(request, web.Request) else None
    return client_address(request, proxies or ())


def from_trusted_proxy(request: web.Request) -> bool:
    """Whether the request's peer is one of the app's trusted reverse proxies."""
    proxies = request.app.get(TRUSTED_PROXIES, ())
    if not proxies:
        return False
    address = _parse(request.remote)
    return address is not None and _trusted(address, proxies)


def resolve_client_address(
    peer: str | None, forwarded_for: Iterable[str], trusted_proxies: Sequence[ProxyNetwork]
) -> str:
    """The client's address from the peer and the X-Forwarded-For values, in the order received."""
    address = _parse(peer)
    if address is None:
        return peer or UNKNOWN
    if not _trusted(address, trusted_proxies):
        return str(address)
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
    for hop in reversed(hops[-_MAX_HOPS:]):
        forwarded = _parse(hop)
        if forwarded is None:
            # A broken hop: what lies left of it cannot be traced, so the last good address stands.
            break
        address = forwarded
        if not _trusted(address, trusted_proxies):
            break
    return str(address)


def _parse(text: str | None) -> IPAddress | None:
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    # An IPv4 client seen through an IPv6 socket is the same client.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: IPAddress, trusted_proxies: Sequence[ProxyNetwork]) -> bool:
    return any(address in network for network in trusted_proxies)
