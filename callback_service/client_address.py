"""The client's address: the peer's, or what the trusted reverse proxies in front of us say it is.

X-Forwarded-For is believed only when the request comes from a proxy named in the setting
`trusted_proxies`; then the header is read from the right (each proxy appends the address it saw),
skipping our own proxies, and the first address that is not one of them is the client's. Anyone
can write the header's left part, so nothing left of that address is trusted.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Final

from aiohttp import hdrs, web

from config.settings import ProxyNetwork

__all__ = [
    "TRUSTED_PROXIES",
    "UNKNOWN",
    "UNTRUSTED_FORWARDS",
    "UntrustedForwards",
    "client_address",
    "client_of",
    "from_trusted_proxy",
    "resolve_client_address",
]

log: Final = logging.getLogger(__name__)

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


class UntrustedForwards:
    """Warns, at the first such request and then once a minute while they last, of requests that
    carry X-Forwarded-For from a peer outside `trusted_proxies`: behind a proxy that is not named
    there, every student counts as the proxy's address (its per-address submit limit, the audit)."""

    def __init__(self, *, clock: Callable[[], float], interval: float = 60.0) -> None:
        self._clock = clock
        self._interval = interval
        self._warned_at: float | None = None
        self._unwarned = 0

    def seen(self, peer: str | None) -> None:
        """Count one such request from peer; warn when the last warning is older than the interval."""
        self._unwarned += 1
        now = self._clock()
        if self._warned_at is not None and now - self._warned_at < self._interval:
            return
        log.warning(
            "%d request(s) carried X-Forwarded-For from %s, which is not in WECOM_BIND_TRUSTED_PROXIES: "
            "the header is ignored and every client behind that proxy counts as one address (the "
            "per-address submit limit, WECOM_BIND_SUBMITS_PER_ADDRESS); name the proxy in "
            "WECOM_BIND_TRUSTED_PROXIES",
            self._unwarned,
            peer or UNKNOWN,
            extra={"peer": peer or UNKNOWN, "requests": self._unwarned},
        )
        self._warned_at = now
        self._unwarned = 0


UNTRUSTED_FORWARDS: Final = web.AppKey("untrusted_forwards", UntrustedForwards)


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
