"""The emulator's login and logout pages, driven over HTTP as a browser would."""

from __future__ import annotations

import re

import aiohttp
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer
from yarl import URL

from sandbox.cas import CasUser, create_cas_sandbox
from tests.cas._support import (
    SERVICE,
    STUDENT,
    TICKET_TTL,
    USERS,
    FakeClock,
    login_for_ticket,
    post_login,
    ticket_of,
)

TICKET = re.compile(r"ST-[A-Za-z0-9]{32,}\Z")


async def test_login_form_is_the_unified_identity_page(http: aiohttp.ClientSession, login_url: URL) -> None:
    async with http.get(login_url, params={"service": SERVICE}) as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        assert response.headers["Cache-Control"] == "no-store"
        page = await response.text()
    assert "统一身份认证" in page
    assert "学号" in page
    assert "统一身份认证密码" in page
    assert 'name="viewport"' in page
    assert "<script" not in page
    assert 'method="post" action="/login"' in page
    assert 'name="username"' in page
    assert 'name="password"' in page
    # The service goes back in the form exactly; Jinja escapes the ampersand only.
    assert f'name="service" value="{SERVICE.replace("&", "&amp;")}"' in page
    assert STUDENT.password not in page


async def test_wrong_password_shows_the_form_again_without_a_session(
    http: aiohttp.ClientSession, login_url: URL
) -> None:
    response = await post_login(http, login_url, password="wrong")
    assert response.status == 200
    assert "Set-Cookie" not in response.headers
    wrong_password = await response.text()
    assert "用户名或密码错误" in wrong_password
    assert 'value="2021001"' in wrong_password

    unknown = await post_login(http, login_url, username="1999999", password="wrong")
    assert unknown.status == 200
    unknown_page = await unknown.text()
    # An unknown 学号 reads exactly like a wrong password: no account enumeration.
    assert unknown_page.replace("1999999", "2021001") == wrong_password


async def test_right_password_redirects_to_the_service_with_a_ticket(
    http: aiohttp.ClientSession, login_url: URL
) -> None:
    response = await post_login(http, login_url)
    assert response.status == 302
    assert response.headers["Cache-Control"] == "no-store"
    ticket = ticket_of(response.headers["Location"], SERVICE)
    assert TICKET.match(ticket), ticket
    cookie = response.cookies["TGC"]
    assert re.fullmatch(r"TGT-[A-Za-z0-9]{32,}", cookie.value)
    assert cookie["httponly"]
    assert cookie["path"] == "/"
    assert cookie["samesite"] == "Lax"


async def test_the_ticket_granting_cookie_issues_a_ticket_at_once(
    http: aiohttp.ClientSession, login_url: URL
) -> None:
    first = await login_for_ticket(http, login_url)
    async with http.get(login_url, params={"service": SERVICE}, allow_redirects=False) as again:
        assert again.status == 302
        second = ticket_of(again.headers["Location"], SERVICE)
    assert TICKET.match(second)
    assert second != first


async def test_renew_asks_for_credentials_despite_the_cookie(
    http: aiohttp.ClientSession, login_url: URL
) -> None:
    await login_for_ticket(http, login_url)
    params = {"service": SERVICE, "renew": "true"}
    async with http.get(login_url, params=params, allow_redirects=False) as response:
        assert response.status == 200
        assert 'name="password"' in await response.text()


async def test_the_session_ends_after_its_lifetime(
    aiohttp_server: AiohttpServer, http: aiohttp.ClientSession
) -> None:
    clock = FakeClock()
    app = create_cas_sandbox(users=USERS, ticket_ttl=TICKET_TTL, tgt_ttl=60.0, clock=clock)
    server = await aiohttp_server(app)
    login_url = server.make_url("/login")
    await login_for_ticket(http, login_url)
    clock.advance(60.0)
    async with http.get(login_url, params={"service": SERVICE}, allow_redirects=False) as response:
        assert response.status == 200
        assert 'name="password"' in await response.text()


async def test_login_without_service_says_logged_in(http: aiohttp.ClientSession, login_url: URL) -> None:
    response = await post_login(http, login_url, service=None)
    assert response.status == 200
    assert "TGC" in response.cookies
    page = await response.text()
    assert "登录成功" in page
    assert "张三" in page
    async with http.get(login_url) as again:
        assert "登录成功" in await again.text()


async def test_logout_ends_the_session_and_only_links_back(
    http: aiohttp.ClientSession, cas_server: TestServer, login_url: URL
) -> None:
    await login_for_ticket(http, login_url)
    logout = cas_server.make_url("/logout")
    async with http.get(logout, params={"service": SERVICE}, allow_redirects=False) as response:
        assert response.status == 200
        page = await response.text()
    assert "已退出" in page
    assert f'href="{SERVICE.replace("&", "&amp;")}"' in page
    assert response.cookies["TGC"].value == ""
    async with http.get(login_url, params={"service": SERVICE}, allow_redirects=False) as after:
        assert after.status == 200
        assert 'name="password"' in await after.text()

    async with http.get(logout, params={"service": "javascript:alert(1)"}) as hostile:
        assert "javascript:" not in await hostile.text()


async def test_the_session_cookie_is_server_side(
    http: aiohttp.ClientSession, cas_server: TestServer, login_url: URL
) -> None:
    response = await post_login(http, login_url)
    tgt = response.cookies["TGC"].value
    async with http.get(cas_server.make_url("/logout")):
        pass
    # Replaying the old cookie after logout gets the form, not a ticket.
    async with (
        aiohttp.ClientSession() as replay,
        replay.get(
            login_url, params={"service": SERVICE}, headers={"Cookie": f"TGC={tgt}"}, allow_redirects=False
        ) as again,
    ):
        assert again.status == 200


async def test_services_that_are_not_web_urls_are_refused(
    http: aiohttp.ClientSession, login_url: URL
) -> None:
    for service in ("javascript:alert(1)", "/relative", "https://a b.test/", "https://ü.test/"):
        async with http.get(login_url, params={"service": service}) as response:
            assert response.status == 400, service
            assert "未获授权" in await response.text()
    refused = await post_login(http, login_url, service="javascript:alert(1)")
    assert refused.status == 400
    assert "Set-Cookie" not in refused.headers


async def test_everything_shown_is_escaped(http: aiohttp.ClientSession, login_url: URL) -> None:
    service = 'https://bind.example.edu/cb?q="><script>alert(1)</script>'
    async with http.get(login_url, params={"service": service}) as response:
        page = await response.text()
    assert "<script>" not in page
    assert "&#34;&gt;&lt;script&gt;" in page

    wrong = await post_login(http, login_url, username="<img src=x>", password="x")
    assert "<img src=x>" not in await wrong.text()

    awkward = await post_login(http, login_url, username="2021002", password="另一个密码", service=None)
    page = await awkward.text()
    assert "李四 &lt;b&gt;&amp;&#34;x&#34;" in page


async def test_the_ticket_respects_the_services_query_and_fragment(
    http: aiohttp.ClientSession, login_url: URL
) -> None:
    for service in (
        "https://bind.example.edu/cb",
        "https://bind.example.edu/cb?",
        "https://bind.example.edu/cb?a=1&",
        "https://bind.example.edu/cb?a=%26b#step-3",
    ):
        response = await post_login(http, login_url, service=service)
        location = response.headers["Location"]
        ticket = ticket_of(location, service) if not service.endswith(("?", "&")) else None
        if ticket is None:
            assert location.startswith(service + "ticket=ST-"), location
        else:
            assert TICKET.match(ticket), location


async def test_demo_accounts_are_listed_only_when_asked(
    aiohttp_server: AiohttpServer, http: aiohttp.ClientSession, login_url: URL
) -> None:
    async with http.get(login_url) as hidden:
        assert "演示账号" not in await hidden.text()
    demo = await aiohttp_server(create_cas_sandbox(users=USERS, show_accounts=True))
    async with http.get(demo.make_url("/login")) as shown:
        page = await shown.text()
    assert "演示账号" in page
    assert STUDENT.password in page


async def test_injected_randomness_names_the_tickets(
    aiohttp_server: AiohttpServer, http: aiohttp.ClientSession
) -> None:
    counter = iter(range(100))

    def random(length: int) -> str:
        return str(next(counter)).rjust(length, "0")

    server = await aiohttp_server(create_cas_sandbox(users=USERS, random=random))
    ticket = await login_for_ticket(http, server.make_url("/login"))
    # Numbered 1: 0 went to the ticket-granting ticket of the same login.
    assert ticket == "ST-" + "1".rjust(32, "0")


def test_seeded_users_are_checked_at_creation() -> None:
    mismatched = {"x": STUDENT}
    bad_name = {"1": CasUser(member_id="1", password="p", name="n", attributes={"a b": "v"})}
    reserved = {"1": CasUser(member_id="1", password="p", name="n", attributes={"name": "v"})}
    control = {"1": CasUser(member_id="1", password="p", name="n\x00", attributes={})}
    for users in (mismatched, bad_name, reserved, control):
        try:
            create_cas_sandbox(users=users)
        except ValueError:
            continue
        raise AssertionError(f"accepted {users!r}")
