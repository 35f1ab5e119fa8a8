"""The service, the CAS emulator and the WeCom emulator on loopback ports, on a real SQLite file."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpClient, AiohttpServer

from callback_service.admin import setup_admin
from callback_service.store import STORE
from callback_service.web.app import create_app
from callback_service.web.pages import PagesConfig
from callback_service.web.pages.config import PAGES_CONFIG
from sandbox.cas import create_cas_sandbox
from sandbox.sms import create_sms_sandbox
from sandbox.wecom import APP, CONTACTS, WECOM_SANDBOX_STATE, create_wecom_sandbox
from tests.pages.support import CAS_USERS, DEPARTMENTS, DIRECTORY, SMS_ACCOUNT, PagesEnv, wecom_members
from tests.support.callbacks import AGENT_ID, CORP_ID
from tests.support.world import APP_SECRET, CONTACTS_SECRET, world_settings

MakeEnv = Callable[..., Awaitable[PagesEnv]]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """The browser's session at CAS (its cookie jar takes 127.0.0.1's cookies)."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


@pytest.fixture
def make_env(
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> MakeEnv:
    """Start the emulators and the service (on port, if given); settings and the pages' config may
    be overridden."""

    async def make(
        config: PagesConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        port: int | None = None,
        **overrides: Any,
    ) -> PagesEnv:
        cas = await aiohttp_server(create_cas_sandbox(users=CAS_USERS))
        wecom = await aiohttp_server(
            create_wecom_sandbox(
                corp_id=CORP_ID,
                secrets={APP_SECRET: APP, CONTACTS_SECRET: CONTACTS},
                agent_id=AGENT_ID,
                callback=None,
                departments=DEPARTMENTS,
                members=wecom_members(),
            )
        )
        wecom_base = str(wecom.make_url("")).rstrip("/")
        values: dict[str, Any] = {
            "store_url": f"sqlite:///{tmp_path / 'store.db'}",
            "cas_base_url": str(cas.make_url("")).rstrip("/"),
            "wecom_api_base": wecom_base,
            "follow_url": wecom_base + "/follow",
            **overrides,
        }
        settings = world_settings(**values)
        app = create_app(settings, clock=clock, run_workers=False)
        setup_admin(app)
        app[PAGES_CONFIG] = config or replace(app[PAGES_CONFIG], departments={"电子电气工程学院": 2})
        # port: where public_base_url says the service is (a CAS server posts its single logout there).
        client = await aiohttp_client(app, server_kwargs={} if port is None else {"port": port})
        await app[STORE].directory_upsert(DIRECTORY)
        return PagesEnv(
            client=client,
            settings=settings,
            cas=cas,
            wecom=wecom,
            wecom_state=wecom.app[WECOM_SANDBOX_STATE],
            http=http,
        )

    return make


@pytest.fixture
async def env(make_env: MakeEnv) -> PagesEnv:
    """The usual setup."""
    return await make_env()


@pytest.fixture
async def sms_server(aiohttp_server: AiohttpServer) -> TestServer:
    """The SMS emulator, for make_env(**sms_settings(sms_server))."""
    return await aiohttp_server(create_sms_sandbox(SMS_ACCOUNT))
