"""The client's address: X-Forwarded-For believed only from the trusted proxies, read from the right."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from pathlib import Path

import aiohttp
import pytest

from callback_service.client_address import UNKNOWN, resolve_client_address
from callback_service.web.app import create_app
from tests.cas._support import FakeClock
from tests.support.nginx import Nginx, require_nginx
from tests.support.world import ServerFactory, world_settings

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


async def test_a_proxy_left_out_of_the_trusted_proxies_is_warned_of_once_a_minute(
    aiohttp_server: ServerFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # nginx in front, as the runbook sets it up, but WECOM_BIND_TRUSTED_PROXIES left unset.
    binary = require_nginx()
    clock = FakeClock(time.time())
    settings = world_settings(store_url=f"sqlite:///{tmp_path / 'store.db'}")
    service = await aiohttp_server(create_app(settings, clock=clock, run_workers=False))
    nginx = Nginx(binary, tmp_path / "nginx", upstreams=[service.port or 0])
    await asyncio.to_thread(nginx.start)
    caplog.set_level(logging.WARNING, logger="callback_service.client_address")

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "callback_service.client_address"]

    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(3):
                async with http.get(nginx.url + "/health") as response:
                    assert response.status == 200
            assert len(warnings()) == 1  # the first such request, at once
            assert "not in WECOM_BIND_TRUSTED_PROXIES" in warnings()[0]
            assert "127.0.0.1" in warnings()[0]
            clock.advance(61)
            async with http.get(nginx.url + "/health") as response:
                assert response.status == 200
            assert len(warnings()) == 2  # and once a minute while it lasts
            assert warnings()[1].startswith("3 request(s)")  # the two unwarned ones and this one
            # Straight to the service, without the header: nothing to warn of.
            clock.advance(61)
            async with http.get(service.make_url("/health")) as response:
                assert response.status == 200
            assert len(warnings()) == 2
    finally:
        await asyncio.to_thread(nginx.stop)


async def test_a_trusted_proxy_is_not_warned_of(
    aiohttp_server: ServerFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    binary = require_nginx()
    settings = world_settings(store_url=f"sqlite:///{tmp_path / 'store.db'}", trusted_proxies="127.0.0.1")
    service = await aiohttp_server(create_app(settings, run_workers=False))
    nginx = Nginx(binary, tmp_path / "nginx", upstreams=[service.port or 0])
    await asyncio.to_thread(nginx.start)
    caplog.set_level(logging.WARNING, logger="callback_service.client_address")
    try:
        async with aiohttp.ClientSession() as http, http.get(nginx.url + "/health") as response:
            assert response.status == 200
    finally:
        await asyncio.to_thread(nginx.stop)
    assert not [r for r in caplog.records if r.name == "callback_service.client_address"]
