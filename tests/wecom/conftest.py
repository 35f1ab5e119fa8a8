"""Fixtures of the WeCom tests: the emulator on a loopback port and client factories.

The clock and the stores are tests/conftest.py's; the emulator, the store and the clients share
that one clock.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer

from callback_service.clients.wecom import WeComClient
from handlers.usecases.contracts import Store
from sandbox.wecom import (
    APP,
    CONTACTS,
    WECOM_SANDBOX_FAULTS,
    WECOM_SANDBOX_PUSHER,
    WECOM_SANDBOX_STATE,
    Member,
    create_wecom_sandbox,
)
from sandbox.wecom_push import Pusher
from sandbox.wecom_state import FaultSwitch, WeComSandboxState
from tests.store.support import FakeClock
from tests.wecom._support import AGENT_ID, APP_SECRET, CONTACTS_SECRET, CORP_ID


@dataclass
class Sandbox:
    """A running emulator and the Python objects behind it."""

    server: TestServer
    app: web.Application

    @property
    def state(self) -> WeComSandboxState:
        """The emulator's inspectable state."""
        return self.app[WECOM_SANDBOX_STATE]

    @property
    def faults(self) -> FaultSwitch:
        """The fault switch."""
        return self.app[WECOM_SANDBOX_FAULTS]

    @property
    def pusher(self) -> Pusher:
        """The callback pusher."""
        return self.app[WECOM_SANDBOX_PUSHER]

    @property
    def base(self) -> str:
        """The emulator's base URL, as the service configures wecom_api_base."""
        return str(self.server.make_url("")).rstrip("/")

    def url(self, path: str) -> str:
        """An absolute URL of a path under the emulator."""
        return self.base + path


SandboxFactory = Callable[..., Awaitable[Sandbox]]


@pytest.fixture
def start_sandbox(aiohttp_server: AiohttpServer, clock: FakeClock) -> SandboxFactory:
    """Start an emulator with the test secrets; keyword arguments override create_wecom_sandbox's."""

    async def start(**overrides: Any) -> Sandbox:
        options: dict[str, Any] = {
            "corp_id": CORP_ID,
            "secrets": {APP_SECRET: APP, CONTACTS_SECRET: CONTACTS},
            "agent_id": AGENT_ID,
            "callback": None,
            "members": [
                Member(userid="2021001", name="张三", department=[1], mobile="13800000001"),
                Member(userid="2021002", name="李四", department=[1], mobile="13800000002"),
            ],
            "clock": clock,
            "rng": random.Random(7),
        }
        options.update(overrides)
        app = create_wecom_sandbox(**options)
        return Sandbox(server=await aiohttp_server(app), app=app)

    return start


@pytest.fixture
async def sandbox(start_sandbox: SandboxFactory) -> Sandbox:
    """The emulator with two seeded members and no callback target."""
    return await start_sandbox()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """One client session, as the service holds one per application."""
    async with aiohttp.ClientSession() as session:
        yield session


ClientFactory = Callable[..., WeComClient]


@pytest.fixture
def make_client(
    sandbox: Sandbox, sqlite_store: Store, http: aiohttp.ClientSession, clock: FakeClock
) -> ClientFactory:
    """Clients of the emulator on a SQLite store and the shared clock (tests/conftest.py's), with
    fast retries and deterministic jitter; keyword arguments override."""

    def make(secret: str = CONTACTS_SECRET, **overrides: Any) -> WeComClient:
        options: dict[str, Any] = {
            "session": http,
            "api_base": sandbox.base,
            "corp_id": CORP_ID,
            "secret": secret,
            "store": sqlite_store,
            "clock": clock,
            "timeout": 1.0,
            "max_attempts": 4,
            "max_retry_time": 2.0,
            "base_delay": 0.01,
            "max_delay": 0.05,
            "jitter": lambda: 0.5,
            "contacts": secret == CONTACTS_SECRET,
        }
        options.update(overrides)
        return WeComClient(**options)

    return make
