"""Steps 1 and 2: /bind to the CAS login, the ticket checked once, the session rotated."""

from __future__ import annotations

from http.cookies import SimpleCookie
from urllib.parse import quote

import pytest
from yarl import URL

from callback_service.web.pages.session import COOKIE
from callback_service.web.pages.views import LOGIN_COOKIE
from tests.pages.conftest import MakeEnv
from tests.pages.support import PagesEnv


def _cookie(response_headers: list[str]) -> SimpleCookie:
    jar: SimpleCookie = SimpleCookie()
    for header in response_headers:
        jar.load(header)
    return jar


async def test_bind_redirects_to_cas_with_the_service_from_settings(env: PagesEnv) -> None:
    response = await env.client.get(
        "/bind",
        params={"service": "https://evil.example/steal", "next": "https://evil.example/"},
        headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example"},
        allow_redirects=False,
    )
    assert response.status == 302
    location = response.headers["Location"]
    service = URL(location).query["service"]
    assert location == f"{env.settings.cas_base_url}/login?service={quote(service, safe='')}"
    assert service.startswith(f"{env.service_url}?state=")
    assert "evil" not in location


async def test_ticket_logs_in_and_goes_to_the_phone_page(env: PagesEnv) -> None:
    response = await env.login("2021001")
    assert response.status == 302
    assert response.headers["Location"] == "/bind/phone"
    page = await env.client.get("/bind/phone")
    text = await page.text()
    assert page.status == 200
    assert "2021001" in text
    assert "张三" in text


async def test_session_cookie_is_httponly_lax_and_not_secure_on_http(env: PagesEnv) -> None:
    response = await env.login("2021001")
    morsel = _cookie(response.headers.getall("Set-Cookie"))[COOKIE]
    assert morsel["httponly"]
    assert morsel["samesite"] == "Lax"
    assert not morsel["secure"]
    assert morsel["path"] == "/"


@pytest.mark.parametrize("public_base_url", ["https://bind.example.edu.cn", "HTTPS://Bind.Example.edu.cn/"])
async def test_session_cookie_is_secure_when_the_public_url_is_https(make_env: MakeEnv, public_base_url: str) -> None:
    env = await make_env(public_base_url=public_base_url)
    started = await env.client.get("/bind", allow_redirects=False)
    login = _cookie(started.headers.getall("Set-Cookie"))[LOGIN_COOKIE]
    assert login["secure"]
    assert login["httponly"]
    env.login_service = URL(started.headers["Location"]).query["service"]
    # The test client speaks http: the Secure cookie is sent by hand, as a browser on https would.
    ticket = await env.ticket("2021001")
    response = await env.cas_return(ticket, headers={"Cookie": f"{LOGIN_COOKIE}={login.value}"})
    assert response.status == 302
    morsel = _cookie(response.headers.getall("Set-Cookie"))[COOKIE]
    assert morsel["secure"]
    assert morsel["httponly"]
    assert morsel["samesite"] == "Lax"


async def test_session_id_is_rotated_at_each_login(env: PagesEnv) -> None:
    first = _cookie((await env.login("2021001")).headers.getall("Set-Cookie"))[COOKIE].value
    second = _cookie((await env.login("2021002")).headers.getall("Set-Cookie"))[COOKIE].value
    assert first != second
    # The session before the login is gone, not merely replaced in the browser.
    env.client.session.cookie_jar.clear()
    env.client.session.cookie_jar.update_cookies({COOKIE: first}, URL(str(env.client.make_url("/"))))
    page = await (await env.client.get("/me")).text()
    assert "您尚未登录" in page
    env.client.session.cookie_jar.update_cookies({COOKIE: second}, URL(str(env.client.make_url("/"))))
    page = await (await env.client.get("/me")).text()
    assert "李四" in page


async def test_a_forged_cookie_is_no_session(env: PagesEnv) -> None:
    value = _cookie((await env.login("2021001")).headers.getall("Set-Cookie"))[COOKIE].value
    sid, _, mac = value.rpartition(".")
    env.client.session.cookie_jar.clear()
    # One character changed (never to itself: that would be the real cookie).
    other_mac, other_sid = ("y" if mac[-1] == "x" else "x"), ("B" if sid[-1] == "A" else "A")
    for forged in (f"{sid}.{mac[:-1]}{other_mac}", f"{sid[:-1]}{other_sid}.{mac}", sid, "x" * 500):
        env.client.session.cookie_jar.update_cookies({COOKIE: forged}, URL(str(env.client.make_url("/"))))
        response = await env.client.get("/bind/phone", allow_redirects=False)
        assert response.status == 302
        assert response.headers["Location"] == "/bind"


async def test_a_logged_in_student_goes_from_bind_to_the_phone_page(env: PagesEnv) -> None:
    await env.login("2021001")
    response = await env.client.get("/bind", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == "/bind/phone"


async def test_a_replayed_ticket_shows_a_page_to_start_again(env: PagesEnv) -> None:
    await env.start_login()
    ticket = await env.ticket("2021001")
    first = await env.cas_return(ticket)
    assert first.status == 302
    env.client.session.cookie_jar.clear()
    again = await env.cas_return(ticket)
    text = await again.text()
    assert again.status == 400
    assert "登录凭据已失效" in text
    assert 'href="/bind"' in text
    assert COOKIE not in again.cookies
    # Nobody is logged in by the replay.
    assert "您尚未登录" in await (await env.client.get("/me")).text()


async def test_a_ticket_that_cas_already_spent_is_refused(env: PagesEnv) -> None:
    await env.start_login()
    ticket = await env.ticket("2021001")
    # Someone else validated it first, straight at CAS.
    async with env.http.get(
        env.cas.make_url("/p3/serviceValidate"), params={"ticket": ticket, "service": env.service_url}
    ) as response:
        assert "authenticationSuccess" in await response.text()
    answer = await env.cas_return(ticket)
    assert answer.status == 400
    assert "登录凭据已失效" in await answer.text()


@pytest.mark.parametrize("query", [{}, {"ticket": ""}, {"ticket": "ST-1<script>"}, {"ticket": "S" * 300}])
async def test_a_missing_or_malformed_ticket_is_a_page(env: PagesEnv, query: dict[str, str]) -> None:
    response = await env.client.get("/bind/cas", params=query, allow_redirects=False)
    text = await response.text()
    assert response.status == 400
    assert "未收到登录凭据" in text
    assert "<script>" not in text


async def test_no_parameter_steers_the_redirect_after_login(env: PagesEnv) -> None:
    await env.start_login()
    ticket = await env.ticket("2021001")
    response = await env.client.get(
        "/bind/cas",
        params={
            "state": env.state,
            "ticket": ticket,
            "service": "https://evil.example/",
            "next": "//evil.example/",
        },
        headers={"Host": "evil.example"},
        allow_redirects=False,
    )
    assert response.status == 302
    assert response.headers["Location"] == "/bind/phone"


async def test_cas_down_is_a_503_page(make_env: MakeEnv) -> None:
    env = await make_env()
    await env.start_login()
    ticket = await env.ticket("2021001")
    await env.cas.close()
    response = await env.cas_return(ticket)
    text = await response.text()
    assert response.status == 503
    assert "服务暂时不可用" in text
    assert "Traceback" not in text
    assert "Cas" not in text
