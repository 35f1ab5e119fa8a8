"""The emulator's single logout: its logout POSTs a LogoutRequest for each ticket a service validated."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer

from callback_service.clients.cas import logout_request_ticket
from sandbox.cas import create_cas_sandbox
from tests.cas._support import USERS, login_for_ticket

Received = list[dict[str, str]]


async def _receiver(aiohttp_server: AiohttpServer) -> tuple[TestServer, Received]:
    received: Received = []

    async def note(request: web.Request) -> web.Response:
        form = await request.post()
        received.append({name: str(value) for name, value in form.items()})
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/cas/callback", note)
    return await aiohttp_server(app), received


async def _validate(http: aiohttp.ClientSession, cas: TestServer, ticket: str, service: str) -> None:
    async with http.get(cas.make_url("/p3/serviceValidate"), params={"ticket": ticket, "service": service}) as r:
        assert "authenticationSuccess" in await r.text()


async def test_logout_tells_each_service_that_validated_a_ticket(
    aiohttp_server: AiohttpServer, http: aiohttp.ClientSession
) -> None:
    receiver, received = await _receiver(aiohttp_server)
    service = str(receiver.make_url("/cas/callback"))
    cas = await aiohttp_server(create_cas_sandbox(users=USERS))
    validated = await login_for_ticket(http, cas.make_url("/login"), service=service)
    await _validate(http, cas, validated, service)
    # A second ticket of the same single sign-on, never validated: no service knows it.
    async with http.get(cas.make_url("/login"), params={"service": service}, allow_redirects=False) as again:
        assert again.status == 302
    async with http.get(cas.make_url("/logout")) as response:
        assert response.status == 200
    assert len(received) == 1
    assert logout_request_ticket(received[0]["logoutRequest"]) == validated
    # Logged out once: a second logout tells no one again.
    async with http.get(cas.make_url("/logout")) as response:
        assert response.status == 200
    assert len(received) == 1


async def test_single_logout_can_be_turned_off(aiohttp_server: AiohttpServer, http: aiohttp.ClientSession) -> None:
    receiver, received = await _receiver(aiohttp_server)
    service = str(receiver.make_url("/cas/callback"))
    cas = await aiohttp_server(create_cas_sandbox(users=USERS, single_logout=False))
    ticket = await login_for_ticket(http, cas.make_url("/login"), service=service)
    await _validate(http, cas, ticket, service)
    async with http.get(cas.make_url("/logout")) as response:
        assert response.status == 200
    assert received == []


async def test_a_service_that_is_down_does_not_stop_the_logout(
    aiohttp_server: AiohttpServer, http: aiohttp.ClientSession
) -> None:
    service = "http://127.0.0.1:9/cas/callback"
    cas = await aiohttp_server(create_cas_sandbox(users=USERS))
    ticket = await login_for_ticket(http, cas.make_url("/login"), service=service)
    await _validate(http, cas, ticket, service)
    async with http.get(cas.make_url("/logout")) as response:
        assert response.status == 200
        assert "您已安全退出统一身份认证" in await response.text()
