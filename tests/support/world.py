"""The service and the WeCom emulator running side by side on loopback, pushing callbacks to each other."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from callback_service.web.app import create_app
from config import Settings
from sandbox.wecom import create_wecom_sandbox
from sandbox.wecom_keys import WECOM_SANDBOX_STATE
from sandbox.wecom_push import CallbackTarget
from sandbox.wecom_state import APP, CONTACTS, Member, WeComSandboxState
from testkit.callbacks import AES_KEY, AGENT_ID, CORP_ID, TOKEN
from testkit.settings import APP_SECRET as APP_SECRET
from testkit.settings import CLOSED_PORT_URL as CLOSED_PORT_URL
from testkit.settings import CONTACTS_SECRET as CONTACTS_SECRET
from testkit.settings import service_env as service_env
from testkit.settings import service_values as service_values
from testkit.settings import world_settings as world_settings
from tests.store.support import RedisServer

# The contacts-sync assistant's event server has its own Token and key.
CONTACTS_TOKEN = "contactsTokenForTheSyncAssistant"
CONTACTS_AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
ServerFactory = Callable[..., Awaitable[TestServer]]
T = TypeVar("T")

OLD_ASSISTANT: Final[dict[str, Any]] = {"contacts_reads_details": True, "contacts_event_server_since_2022": False}
"""Emulator options for a contacts-sync assistant configured before 2022-08-15: its address reads
members, mobiles included, and its event server hears update_user for every change. Today's, the
emulator's default, gets 48009 from user/get and hears update_user only for a department or UserID."""
old_assistant: Final = pytest.mark.parametrize("wecom_options", [OLD_ASSISTANT], ids=["assistant-before-2022-08-15"])
"""Runs a test whose `wecom_options` fixture configures its emulator against OLD_ASSISTANT."""


@dataclass
class World:
    """A running service and its emulated WeCom."""

    service: TestServer
    wecom_server: TestServer
    wecom: WeComSandboxState
    settings: Settings

    @property
    def service_url(self) -> str:
        return str(self.service.make_url("")).rstrip("/")

    @property
    def wecom_url(self) -> str:
        return str(self.wecom_server.make_url("")).rstrip("/")


def store_url_for(backend: str, tmp_path: Path, redis_server: RedisServer | None) -> str:
    """A fresh store URL on the backend: a SQLite file, or a key prefix of its own on the Redis server."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    assert redis_server is not None
    return f"{redis_server.url}?prefix=w{uuid.uuid4().hex[:12]}:"


def wecom_sandbox(
    *,
    callback_url: str,
    members: list[Member],
    admission_url: str | None = None,
    contacts_callback_url: str | None = None,
    **options: Any,
) -> web.Application:
    """The emulated WeCom, pushing to callback_url with the test Token and key; with admission_url,
    second verification (二次验证) sends joining members there first; with contacts_callback_url,
    console changes go there with the contacts-sync Token and key; options go to create_wecom_sandbox."""
    return create_wecom_sandbox(
        corp_id=CORP_ID,
        secrets={APP_SECRET: APP, CONTACTS_SECRET: CONTACTS},
        agent_id=AGENT_ID,
        callback=CallbackTarget(url=callback_url, token=TOKEN, encoding_aes_key=AES_KEY),
        contacts_callback=None if contacts_callback_url is None else CallbackTarget(
            url=contacts_callback_url, token=CONTACTS_TOKEN, encoding_aes_key=CONTACTS_AES_KEY
        ),
        members=members,
        push_timeout=5.0,
        push_retry_delay=0.1,
        admission_url=admission_url,
        **options,
    )


@asynccontextmanager
async def running_world(
    aiohttp_server: ServerFactory,
    *,
    store_url: str,
    members: list[Member],
    second_verification: bool = False,
    contacts_sync: bool = False,
    wecom_options: Mapping[str, Any] | None = None,
    **overrides: object,
) -> AsyncIterator[World]:
    """Start the emulator and the service (its workers running), each knowing the other's URL.

    second_verification turns the service's admission gate on and has the emulator send joining
    members to it; contacts_sync turns on /wecom/contacts-callback, where the emulator pushes
    change_contact; wecom_options go to create_wecom_sandbox (none: today's WeCom); overrides are
    further settings.
    """
    # The service's socket is bound now and handed to its server later: a port only looked up here
    # could be taken by another process before the service binds it.
    reserved = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    reserved.bind(("127.0.0.1", 0))
    port: int = reserved.getsockname()[1]
    wecom_app = wecom_sandbox(
        callback_url=f"http://127.0.0.1:{port}/wecom/callback",
        members=members,
        admission_url=f"http://127.0.0.1:{port}/wecom/admit" if second_verification else None,
        contacts_callback_url=f"http://127.0.0.1:{port}/wecom/contacts-callback" if contacts_sync else None,
        **(wecom_options or {}),
    )
    wecom_server = await aiohttp_server(wecom_app)
    contacts: dict[str, object] = (
        {"contacts_token": CONTACTS_TOKEN, "contacts_encoding_aes_key": CONTACTS_AES_KEY} if contacts_sync else {}
    )
    settings = world_settings(
        port=port,
        wecom_api_base=str(wecom_server.make_url("")).rstrip("/"),
        store_url=store_url,
        second_verification=second_verification,
        **contacts,
        **overrides,
    )
    service = TestServer(create_app(settings), port=port, socket_factory=lambda *_: reserved)
    try:
        await service.start_server()
        yield World(service=service, wecom_server=wecom_server, wecom=wecom_app[WECOM_SANDBOX_STATE],
                    settings=settings)
    finally:
        await service.close()
        reserved.close()


async def eventually(probe: Callable[[], Awaitable[T | None]], *, within: float = 10.0) -> T:
    """Poll probe until it returns something, for at most `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = await probe()
        if value is not None:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the condition did not hold in time")
        await asyncio.sleep(0.05)
