"""The CAS login hardened: tied to the browser that started it, single logout, a ticket marked used
only once CAS has answered, and the attribute names read from settings."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.typedefs import Handler
from pytest_aiohttp import AiohttpServer
from yarl import URL

from callback_service.clients.cas import CAS, CasInvalidService
from callback_service.web.pages.session import COOKIE
from callback_service.web.pages.views import LOGIN_COOKIE
from sandbox.cas import CasUser, create_cas_sandbox
from tests.cas._support import FakeClock, post_login, ticket_of
from tests.pages.conftest import MakeEnv
from tests.pages.support import CAS_USERS, PASSWORD, PagesEnv

LOGOUT_REQUEST = (
    '<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
    'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="LR-1-x" Version="2.0" '
    'IssueInstant="2026-11-30T04:00:00Z"><saml:NameID>@NOT_USED@</saml:NameID>'
    "<samlp:SessionIndex>{ticket}</samlp:SessionIndex></samlp:LogoutRequest>"
)


async def _logged_in(env: PagesEnv) -> bool:
    return "您尚未登录" not in await (await env.client.get("/me")).text()


# login CSRF: the login is bound to the browser through the CAS service URL


async def _attackers_ticket(env: PagesEnv, member_id: str = "2021003") -> tuple[str, str]:
    """The attacker, in its own browser, starts a login at /bind, logs in at CAS as itself and stops
    at the return, keeping the link; return its ticket and the service URL CAS minted it for."""
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as attacker:
        async with attacker.get(env.client.make_url("/bind"), allow_redirects=False) as started:
            service = URL(started.headers["Location"]).query["service"]
        response = await post_login(
            attacker, env.cas.make_url("/login"), username=member_id, password=PASSWORD, service=service
        )
    assert response.status == 302
    return ticket_of(response.headers["Location"], service), service


async def _cas_still_accepts(env: PagesEnv, ticket: str, service: str) -> bool:
    async with env.http.get(
        env.cas.make_url("/p3/serviceValidate"), params={"ticket": ticket, "service": service}
    ) as validation:
        return "authenticationSuccess" in await validation.text()


async def test_a_ticket_link_opened_by_a_browser_that_started_no_login_logs_no_one_in(env: PagesEnv) -> None:
    ticket, service = await _attackers_ticket(env)
    response = await env.cas_return(ticket, state=URL(service).query["state"])
    page = await response.text()
    assert response.status == 400
    assert "请重新登录" in page
    assert 'href="/bind"' in page
    assert COOKIE not in response.cookies
    assert not await _logged_in(env)
    # The ticket was not even spent: it was never sent to CAS.
    assert await _cas_still_accepts(env, ticket, service)


@pytest.mark.parametrize("with_state", ["none", "the attacker's", "empty", "garbage"])
async def test_the_attackers_ticket_does_not_log_in_a_browser_that_started_its_own_login(
    env: PagesEnv, with_state: str
) -> None:
    # The attack: the attacker keeps its ticket; the victim's browser opens /bind and then
    # /bind/cas?ticket=THE_ATTACKERS (a page can do both).
    ticket, service = await _attackers_ticket(env)
    await env.start_login()
    states = {"none": None, "the attacker's": URL(service).query["state"], "empty": "", "garbage": "\u00e9" * 5}
    state = states[with_state]
    params = {"ticket": ticket} if state is None else {"state": state, "ticket": ticket}
    response = await env.client.get("/bind/cas", params=params, allow_redirects=False)
    page = await response.text()
    assert response.status == 400
    assert "请重新登录" in page
    assert COOKIE not in response.cookies
    assert not await _logged_in(env)
    assert await env.store.get_binding("2021003") is None
    assert await _cas_still_accepts(env, ticket, service)


async def test_cas_binds_the_ticket_to_the_service_url_of_its_login(env: PagesEnv) -> None:
    # Below the state check: even sent with the victim's state, the attacker's ticket does not
    # validate, since CAS (the emulator, as a real one) binds a ticket to its exact service URL.
    ticket, _ = await _attackers_ticket(env)
    await env.start_login()
    with pytest.raises(CasInvalidService):
        await env.client.app[CAS].validate(ticket, state=env.state)


async def test_a_login_cookie_the_service_never_issued_is_refused(env: PagesEnv) -> None:
    await env.start_login()
    ticket = await env.ticket("2021003")
    env.client.session.cookie_jar.clear()
    response = await env.cas_return(ticket, headers={"Cookie": f"{LOGIN_COOKIE}={'A' * 43}.1.x"})
    assert response.status == 400
    assert "请重新登录" in await response.text()


async def test_a_login_state_is_its_own_cookie_s_and_shows_nothing_of_it(env: PagesEnv) -> None:
    started = await env.client.get("/bind", allow_redirects=False)
    morsel = started.cookies[LOGIN_COOKIE]
    assert morsel["path"] == "/bind"
    assert morsel["httponly"]
    assert morsel["samesite"] == "Lax"
    assert int(morsel["max-age"]) == 600
    # The service URL that CAS sees is the settings' one, with this login's state only.
    service = URL(started.headers["Location"]).query["service"]
    state = URL(service).query["state"]
    assert service == f"{env.settings.public_base_url}/bind/cas?state={state}"
    assert len(state) >= 40
    assert state not in morsel.value
    assert morsel.value.split(".")[0] not in service
    again = await env.client.get("/bind", allow_redirects=False)
    assert URL(URL(again.headers["Location"]).query["service"]).query["state"] != state


async def test_the_login_cookie_opens_one_session(env: PagesEnv) -> None:
    await env.start_login()
    cookie = next(m.value for m in env.client.session.cookie_jar if m.key == LOGIN_COOKIE)
    response = await env.cas_return(await env.ticket("2021001"))
    assert response.status == 302
    assert response.cookies[LOGIN_COOKIE].value == ""
    # The same cookie, in a browser without a session, does not open a second login.
    env.client.session.cookie_jar.clear()
    again = await env.cas_return(await env.ticket("2021001"), headers={"Cookie": f"{LOGIN_COOKIE}={cookie}"})
    assert again.status == 400
    assert "请重新登录" in await again.text()


async def test_a_login_that_outlived_its_window_is_refused(make_env: MakeEnv) -> None:
    clock = FakeClock(time.time())
    env = await make_env(clock=clock)
    await env.start_login()
    ticket = await env.ticket("2021001")
    clock.advance(601)
    response = await env.cas_return(ticket)
    assert response.status == 400
    assert "请重新登录" in await response.text()


async def test_a_flood_of_bind_writes_nothing_to_the_store(env: PagesEnv) -> None:
    def rows() -> int:
        with sqlite3.connect(env.settings.store_url.get_secret_value().removeprefix("sqlite:///")) as db:
            return int(db.execute("SELECT count(*) FROM kv").fetchone()[0])

    before = rows()
    for _ in range(300):
        response = await env.client.get("/bind", allow_redirects=False)
        assert response.status == 302
    assert rows() == before


# the back button after the login


async def test_the_same_return_again_leads_on_to_the_phone_page(env: PagesEnv) -> None:
    await env.start_login()
    ticket = await env.ticket("2021001")
    assert (await env.cas_return(ticket)).status == 302
    session = next(m.value for m in env.client.session.cookie_jar if m.key == COOKIE)
    # Back, or a reload of the return: the ticket this browser's session already used.
    again = await env.cas_return(ticket)
    assert again.status == 302
    assert again.headers["Location"] == "/bind/phone"
    assert COOKIE not in again.cookies
    assert next(m.value for m in env.client.session.cookie_jar if m.key == COOKIE) == session
    assert "张三" in await (await env.client.get("/me")).text()


async def test_back_to_cas_after_the_login_leads_on_to_the_phone_page(env: PagesEnv) -> None:
    await env.start_login()
    assert (await env.cas_return(await env.ticket("2021001"))).status == 302
    # Back to CAS's login page: its single sign-on sends a new ticket for the same service URL.
    async with env.http.get(
        env.cas.make_url("/login"), params={"service": env.service_url}, allow_redirects=False
    ) as sso:
        assert sso.status == 302
        fresh = ticket_of(sso.headers["Location"], env.service_url)
    again = await env.cas_return(fresh)
    assert again.status == 302
    assert again.headers["Location"] == "/bind/phone"
    assert "张三" in await (await env.client.get("/me")).text()


# a ticket is spent once CAS has answered, not before


@dataclass
class Gate:
    """A CAS emulator behind a switch: down, it answers 502 as a broken proxy in front of CAS would."""

    server: TestServer
    down: bool = False

    @property
    def base(self) -> str:
        return str(self.server.make_url("/cas"))


async def _gated_cas(aiohttp_server: AiohttpServer, users: dict[str, CasUser]) -> Gate:
    gate: Gate

    @web.middleware
    async def switch(request: web.Request, handler: Handler) -> web.StreamResponse:
        if gate.down and request.path.endswith("serviceValidate"):
            return web.Response(status=502, text="bad gateway")
        return await handler(request)

    outer = web.Application(middlewares=[switch])
    outer.add_subapp("/cas", create_cas_sandbox(users=users))
    gate = Gate(server=await aiohttp_server(outer))
    return gate


async def _ticket_at(env: PagesEnv, gate: Gate, member_id: str) -> str:
    response = await post_login(
        env.http,
        gate.server.make_url("/cas/login"),
        username=member_id,
        password=PASSWORD,
        service=env.service_url,
    )
    assert response.status == 302
    return ticket_of(response.headers["Location"], env.service_url)


async def test_a_ticket_still_works_after_a_cas_outage(
    make_env: MakeEnv, aiohttp_server: AiohttpServer
) -> None:
    gate = await _gated_cas(aiohttp_server, dict(CAS_USERS))
    env = await make_env(cas_base_url=gate.base)
    await env.start_login()
    ticket = await _ticket_at(env, gate, "2021001")
    gate.down = True
    down = await env.cas_return(ticket)
    assert down.status == 503
    assert "服务暂时不可用" in await down.text()
    gate.down = False
    back = await env.cas_return(ticket)
    assert back.status == 302
    assert back.headers["Location"] == "/bind/phone"
    assert "张三" in await (await env.client.get("/me")).text()


# attribute names from settings


async def test_the_cas_attribute_names_come_from_settings(
    make_env: MakeEnv, aiohttp_server: AiohttpServer
) -> None:
    users = {
        "2021009": CasUser(
            member_id="2021009",
            password=PASSWORD,
            name="CAS 的 name",
            attributes={"cn": "孙七", "telephoneNumber": "13800000009", "mobile": "13900000000"},
        )
    }
    gate = await _gated_cas(aiohttp_server, users)
    env = await make_env(
        cas_base_url=gate.base, cas_mobile_attribute="telephoneNumber", cas_name_attribute="cn"
    )
    await env.start_login()
    ticket = await _ticket_at(env, gate, "2021009")
    assert (await env.cas_return(ticket)).status == 302
    page = await (await env.client.get("/bind/phone")).text()
    assert "孙七" in page
    assert "CAS 的 name" not in page
    assert (await env.form()).phone == "13800000009"


# single logout


async def _login_ticket(env: PagesEnv, member_id: str) -> str:
    await env.start_login()
    ticket = await env.ticket(member_id)
    response = await env.cas_return(ticket)
    assert response.status == 302
    return ticket


async def test_cas_single_logout_ends_the_session_of_its_ticket(env: PagesEnv) -> None:
    ticket = await _login_ticket(env, "2021001")
    assert await _logged_in(env)
    # Server to server: no session cookie, no CSRF token.
    async with env.http.post(
        env.client.make_url("/bind/cas"), data={"logoutRequest": LOGOUT_REQUEST.format(ticket=ticket)}
    ) as response:
        assert response.status == 200
    assert not await _logged_in(env)


async def test_single_logout_ends_only_the_session_it_names(env: PagesEnv) -> None:
    first = await _login_ticket(env, "2021001")
    env.client.session.cookie_jar.clear()
    await _login_ticket(env, "2021003")
    response = await env.client.post("/bind/cas", data={"logoutRequest": LOGOUT_REQUEST.format(ticket=first)})
    assert response.status == 200
    assert "王五" in await (await env.client.get("/me")).text()


BOMB = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
    '<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol">'
    "<samlp:SessionIndex>{ticket}&lol2;</samlp:SessionIndex></samlp:LogoutRequest>"
)
EXTERNAL = (
    '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY t SYSTEM "file:///etc/hostname">]>'
    '<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol">'
    "<samlp:SessionIndex>&t;{ticket}</samlp:SessionIndex></samlp:LogoutRequest>"
)


@pytest.mark.parametrize(
    "body",
    [
        "",
        "not xml at all {ticket}",
        BOMB,
        EXTERNAL,
        # Not a LogoutRequest, or not exactly one SessionIndex.
        "<LogoutRequest><SessionIndex>{ticket}</SessionIndex></LogoutRequest>",
        LOGOUT_REQUEST.replace("</samlp:L", "<samlp:SessionIndex>x</samlp:SessionIndex></samlp:L"),
        LOGOUT_REQUEST.replace("{ticket}", "{ticket}" + " " * 20_000),
    ],
)
async def test_a_malformed_or_hostile_logout_request_is_ignored(env: PagesEnv, body: str) -> None:
    ticket = await _login_ticket(env, "2021001")
    response = await env.client.post("/bind/cas", data={"logoutRequest": body.format(ticket=ticket)})
    assert response.status == 200
    assert await _logged_in(env)


async def test_a_logout_post_without_the_form_field_is_ignored(env: PagesEnv) -> None:
    ticket = await _login_ticket(env, "2021001")
    for send in (
        env.client.post("/bind/cas", data={"ticket": ticket}),
        env.client.post("/bind/cas", data=ticket.encode(), headers={"Content-Type": "application/xml"}),
    ):
        response = await send
        assert response.status == 200
    assert await _logged_in(env)


