"""The client's address: X-Forwarded-For believed only from the trusted proxies, read from the right."""

from __future__ import annotations

import ipaddress

import pytest

from callback_service.client_address import UNKNOWN, resolve_client_address

PROXIES = (ipaddress.ip_network("10.0.0.0/24"), ipaddress.ip_network("fd00::/64"))


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        # An untrusted peer: its header is anyone's.
        ("203.0.113.7", ["198.51.100.1"], "203.0.113.7"),
        # A trusted proxy: the address it appended.
        ("10.0.0.5", ["198.51.100.1"], "198.51.100.1"),
        # Two of our proxies in a row, and a spoofed left part.
        ("10.0.0.5", ["1.2.3.4, 198.51.100.1, 10.0.0.9"], "198.51.100.1"),
        # Several headers are one list.
        ("10.0.0.5", ["1.2.3.4", "198.51.100.1"], "198.51.100.1"),
        # A trusted proxy without the header: the proxy itself.
        ("10.0.0.5", [], "10.0.0.5"),
        # Every hop is ours: the leftmost.
        ("10.0.0.5", ["10.0.0.7, 10.0.0.8"], "10.0.0.7"),
        # A broken hop stops the walk at the last good address.
        ("10.0.0.5", ["198.51.100.1, not-an-ip"], "10.0.0.5"),
        ("10.0.0.5", ["garbage, 198.51.100.1"], "198.51.100.1"),
        # IPv6 proxies, and IPv4 seen through an IPv6 socket.
        ("fd00::1", ["2001:db8::5"], "2001:db8::5"),
        ("::ffff:10.0.0.5", ["198.51.100.1"], "198.51.100.1"),
        ("::ffff:203.0.113.7", ["198.51.100.1"], "203.0.113.7"),
        (None, ["198.51.100.1"], UNKNOWN),
    ],
)
def test_the_client_address(peer: str | None, forwarded: list[str], expected: str) -> None:
    assert resolve_client_address(peer, forwarded, PROXIES) == expected


def test_no_trusted_proxies_believe_no_header() -> None:
    assert resolve_client_address("10.0.0.5", ["198.51.100.1"], ()) == "10.0.0.5"
