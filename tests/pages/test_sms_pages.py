"""The SMS step of the phone page over HTTP (the service in process, the SMS emulator on a loopback
port): when a code is asked, what the code page holds and never holds, and the forms' guards."""

from __future__ import annotations

import re

import pytest
from aiohttp.test_utils import TestServer

from handlers.core.binding import AuditAction
from sandbox.sms import SMS_SANDBOX_STATE, SmsSandboxState
from tests.pages.conftest import MakeEnv
from tests.pages.support import PagesEnv, sms_settings


def inbox(server: TestServer) -> SmsSandboxState:
    return server.app[SMS_SANDBOX_STATE]


def hidden(page: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert found is not None, name
    return found.group(1)


async def code_page(env: PagesEnv) -> str:
    response = await env.client.get("/bind/code", allow_redirects=False)
    assert response.status == 200, response.status
    return await response.text()


async def test_a_typed_phone_waits_for_its_code_and_is_never_in_a_url(
    make_env: MakeEnv, sms_server: TestServer
) -> None:
    env = await make_env(**sms_settings(sms_server))
    await env.login("2021001")
    response = await env.submit("13900000123", follow=False)
    assert response.status == 303
    assert response.headers["Location"] == "/bind/code"
    page = await code_page(env)
    assert "139****0123" in page
    assert "13900000123" not in page
    code = inbox(sms_server).last_code("13900000123")
    assert code is not None
    assert code not in page
    assert await env.store.audit_list(member_id="2021001") == []
    bound = await env.client.post(
        "/bind/code", data={"csrf": hidden(page, "csrf"), "form_id": hidden(page, "form_id"), "code": code},
        allow_redirects=False,
    )
    assert bound.status == 303
    assert "13900000123" not in bound.headers["Location"]
    [record] = [r for r in await env.store.audit_list(member_id="2021001") if r.action == AuditAction.BIND]
    assert record.source.endswith("sms-verified")


async def test_the_directorys_phone_needs_no_code(make_env: MakeEnv, sms_server: TestServer) -> None:
    env = await make_env(**sms_settings(sms_server))
    await env.login("2021001")
    response = await env.submit("13800000001", follow=False)
    assert response.headers["Location"].startswith("/bind/result/")
    assert inbox(sms_server).messages() == []


async def test_always_asks_even_for_the_directorys_phone(make_env: MakeEnv, sms_server: TestServer) -> None:
    env = await make_env(**sms_settings(sms_server, verify="always"))
    await env.login("2021001")
    response = await env.submit("13800000001", follow=False)
    assert response.headers["Location"] == "/bind/code"
    assert len(inbox(sms_server).messages("13800000001")) == 1


async def test_without_a_provider_no_code_is_asked(make_env: MakeEnv) -> None:
    env = await make_env()
    await env.login("2021001")
    response = await env.submit("13900000123", follow=False)
    assert response.headers["Location"].startswith("/bind/result/")
    assert (await env.client.get("/bind/code", allow_redirects=False)).status == 302


async def test_a_code_that_is_not_six_digits_is_a_slip_not_an_attempt(
    make_env: MakeEnv, sms_server: TestServer
) -> None:
    env = await make_env(**sms_settings(sms_server))
    await env.login("2021001")
    await env.submit("13900000123", follow=False)
    page = await code_page(env)
    for typed in ["12345", "abcdef", "1" * 40, "", "12345"]:
        response = await env.client.post("/bind/code", data={"csrf": hidden(page, "csrf"), "code": typed})
        assert response.status == 400
        assert "6 位数字验证码" in await response.text()
    code = inbox(sms_server).last_code("13900000123") or ""
    response = await env.client.post(
        "/bind/code", data={"csrf": hidden(page, "csrf"), "form_id": hidden(page, "form_id"), "code": code}
    )
    assert 'data-outcome="bound"' in await response.text()


@pytest.mark.parametrize("path", ["/bind/code", "/bind/code/resend", "/bind/code/change"])
async def test_the_code_forms_refuse_a_missing_csrf_token(
    make_env: MakeEnv, sms_server: TestServer, path: str
) -> None:
    env = await make_env(**sms_settings(sms_server))
    await env.login("2021001")
    await env.submit("13900000123", follow=False)
    code = inbox(sms_server).last_code("13900000123") or ""
    response = await env.client.post(path, data={"csrf": "forged", "code": code}, allow_redirects=False)
    assert response.status == 403
    assert len(inbox(sms_server).messages()) == 1
    assert await env.store.audit_list(member_id="2021001") == []
    assert (await env.client.get("/bind/code", allow_redirects=False)).status == 200
