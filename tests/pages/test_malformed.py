"""Bytes a browser would never send: a malformed cookie is no session, and nothing answers 500."""

from __future__ import annotations

import pytest

from callback_service.web.pages.session import COOKIE
from callback_service.web.pages.views import LOGIN_COOKIE
from tests.pages.conftest import MakeEnv
from tests.pages.support import PagesEnv
from tests.support.rawhttp import raw_request

PAGES = [
    (b"GET", b"/me"),
    (b"GET", b"/bind"),
    (b"GET", b"/bind/phone"),
    (b"POST", b"/bind/phone"),
    (b"GET", b"/logout"),
    (b"POST", b"/logout"),
    (b"GET", b"/bind/result/AAAAAAAAAAAAAAAAAAAAAA"),
    (b"GET", b"/bind/cas?state=x&ticket=ST-1"),
]


@pytest.mark.parametrize(("method", "target"), PAGES)
@pytest.mark.parametrize("value", [b"\xe9\xe9.a", b"\xe9", b"a.\xff\xfe", b"\xc3\xa9.\xc3\xa9"])
async def test_a_session_cookie_that_is_not_ascii_is_no_session(
    env: PagesEnv, method: bytes, target: bytes, value: bytes
) -> None:
    cookie = COOKIE.encode() + b"=" + value
    answer = await raw_request(env.client.port or 0, method, target, headers=[(b"Cookie", cookie)])
    assert answer.status < 500, answer.head
    assert b"Traceback" not in answer.body


@pytest.mark.parametrize("value", [b"\xe9", b"\xe9\xe9.1.a", b"\xc3\xa9"])
async def test_a_login_cookie_that_is_not_ascii_is_no_login(env: PagesEnv, value: bytes) -> None:
    await env.start_login()
    ticket = await env.ticket("2021001")
    target = f"/bind/cas?state={env.state}&ticket={ticket}".encode()
    cookie = LOGIN_COOKIE.encode() + b"=" + value
    answer = await raw_request(env.client.port or 0, b"GET", target, headers=[(b"Cookie", cookie)])
    assert answer.status == 400, answer.head
    assert "请重新登录" in answer.body.decode()


async def test_a_logged_in_student_with_a_stray_byte_in_another_cookie_stays_logged_in(env: PagesEnv) -> None:
    await env.login("2021001")
    session = next(m.value for m in env.client.session.cookie_jar if m.key == COOKIE)
    cookie = b"other=\xe9\xe9; " + COOKIE.encode() + b"=" + session.encode()
    answer = await raw_request(env.client.port or 0, b"GET", b"/me", headers=[(b"Cookie", cookie)])
    assert answer.status == 200
    assert "张三" in answer.body.decode()


@pytest.mark.parametrize("value", [b"\xe9", b"Bearer \xe9", b"Bearer \x80\x81"])
async def test_a_bearer_that_is_not_utf8_is_no_bearer(make_env: MakeEnv, value: bytes) -> None:
    env = await make_env(metrics_token="metrics-token-for-the-test-0123456789")
    answer = await raw_request(env.client.port or 0, b"GET", b"/metrics", headers=[(b"Authorization", value)])
    assert answer.status == 404


@pytest.mark.parametrize("target", [b"/bind/phone", b"/logout"])
@pytest.mark.parametrize(
    "content_type",
    [b"application/x-www-form-urlencoded", b"application/x-www-form-urlencoded; charset=no-such-charset"],
)
async def test_a_form_that_does_not_decode_is_a_400_page(
    env: PagesEnv, target: bytes, content_type: bytes
) -> None:
    await env.login("2021001")
    session = next(m.value for m in env.client.session.cookie_jar if m.key == COOKIE)
    answer = await raw_request(
        env.client.port or 0,
        b"POST",
        target,
        headers=[(b"Cookie", COOKIE.encode() + b"=" + session.encode()), (b"Content-Type", content_type)],
        body=b"csrf=\xe9\x80&phone=1380000\xff0001",
    )
    assert answer.status == 400
    assert "请求无效" in answer.body.decode()
    assert await env.store.get_binding("2021001") is None
