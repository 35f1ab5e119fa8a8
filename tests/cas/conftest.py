"""Fixtures of the CAS tests: the emulator on a loopback port and an HTTP session to reach it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer
from yarl import URL

from sandbox.cas import create_cas_sandbox
from tests.cas._support import TICKET_TTL, USERS, FakeClock


@pytest.fixture
def clock() -> FakeClock:
    """The emulator's clock."""
    return FakeClock()


@pytest.fixture
async def cas_server(aiohttp_server: AiohttpServer, clock: FakeClock) -> TestServer:
    """The CAS emulator, served at the root of a loopback port."""
    app = create_cas_sandbox(users=USERS, ticket_ttl=TICKET_TTL, clock=clock)
    return await aiohttp_server(app)


@pytest.fixture
def cas_base(cas_server: TestServer) -> str:
    """The emulator's base URL, as the service would configure it."""
    return str(cas_server.make_url("")).rstrip("/")


@pytest.fixture
def login_url(cas_server: TestServer) -> URL:
    """The emulator's /login."""
    return cas_server.make_url("/login")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A browser-like session; its cookie jar accepts cookies from 127.0.0.1."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session
