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
from config import Settings, env_name
from sandbox.wecom import create_wecom_sandbox
from sandbox.wecom_keys import WECOM_SANDBOX_STATE
from sandbox.wecom_push import CallbackTarget
from sandbox.wecom_state import APP, CONTACTS, Member, WeComSandboxState
from tests.store.support import RedisServer
from tests.support.callbacks import AES_KEY, AGENT_ID, CORP_ID, TOKEN

APP_SECRET = "app-secret"
CONTACTS_SECRET = "contacts-secret"
# Nothing listens on port 9: a test that forgets to name its emulator never reaches WeCom's real host.
CLOSED_PORT_URL = "http://127.0.0.1:9"
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


def service_values(
    *, port: int = 8080, wecom_api_base: str = CLOSED_PORT_URL, store_url: str = ""
) -> dict[str, object]:
    """The settings of a test service on port, talking to WeCom at wecom_api_base: the one source
    for the settings objects, and the environment of the processes, that tests make."""
    values: dict[str, object] = {
        "corp_id": CORP_ID,
        "token": TOKEN,
        "encoding_aes_key": AES_KEY,
        "agent_id": AGENT_ID,
        "app_secret": APP_SECRET,
        "contacts_secret": CONTACTS_SECRET,
        "public_base_url": f"http://127.0.0.1:{port}",
        "cas_base_url": f"http://127.0.0.1:{port}/sandbox/cas",
        "wecom_api_base": wecom_api_base,
        "session_secret": "x" * 40,
    }
    if store_url:
        values["store_url"] = store_url
    return values


def world_settings(
    *, port: int = 8080, wecom_api_base: str = CLOSED_PORT_URL, store_url: str = "", **overrides: object
) -> Settings:
    """Settings of a service on port, talking to the emulator at wecom_api_base; overrides win."""
    values = service_values(port=port, wecom_api_base=wecom_api_base, store_url=store_url)
    return Settings.model_validate(values | overrides)


def service_env(port: int, *, wecom_api_base: str = CLOSED_PORT_URL, store_url: str = "") -> dict[str, str]:
    """The same settings as WECOM_BIND_* variables, for a `wecom-bind` process."""
    values = service_values(port=port, wecom_api_base=wecom_api_base, store_url=store_url)
    return {env_name(field): str(value) for field, value in values.items()}


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
