"""Fixtures of the SMS tests: the provider emulator on a loopback port, and a session to reach it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer

from sandbox.sms import SMS_SANDBOX_STATE, SmsAccount, SmsSandboxState, create_sms_sandbox

ACCOUNT = SmsAccount(
    key_id="AKIDsandbox0000000000000000000000000",
    key_secret="sandbox-secret-key-0000000000000",
    sign_name="上海工程技术大学",
    template_id="1234567",
    app_id="1400123456",
)


@pytest.fixture
async def sms_server(aiohttp_server: AiohttpServer) -> TestServer:
    """The emulator, served at the root of a loopback port."""
    return await aiohttp_server(create_sms_sandbox(ACCOUNT))


@pytest.fixture
def sms_state(sms_server: TestServer) -> SmsSandboxState:
    """The emulator's inbox and switches."""
    return sms_server.app[SMS_SANDBOX_STATE]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """The service's HTTP session."""
    async with aiohttp.ClientSession() as session:
        yield session
