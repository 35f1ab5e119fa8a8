"""The emulator's own edges: gettoken errcodes, the fault endpoint, second verification, OAuth checks."""

from __future__ import annotations

from typing import Any

import aiohttp

from sandbox.wecom import CallbackTarget
from tests.wecom._support import (
    AES_KEY,
    APP_SECRET,
    CONTACTS_SECRET,
    CORP_ID,
    TOKEN,
    browser,
    new_wechat,
    post_page,
    sms_code,
)
from tests.wecom.conftest import ClientFactory, Sandbox, SandboxFactory


async def get_json(http: aiohttp.ClientSession, url: str, **params: str) -> dict[str, Any]:
    async with http.get(url, params=params) as response:
        assert response.status == 200
        answer: dict[str, Any] = await response.json()
        return answer


async def test_gettoken_errcodes(sandbox: Sandbox, http: aiohttp.ClientSession) -> None:
    url = sandbox.url("/cgi-bin/gettoken")
    assert (await get_json(http, url, corpid="wrong", corpsecret=APP_SECRET))["errcode"] == 40013
    assert (await get_json(http, url, corpid=CORP_ID, corpsecret="wrong"))["errcode"] == 40001
    assert (await get_json(http, url, corpid=CORP_ID))["errcode"] == 41004
    first = await get_json(http, url, corpid=CORP_ID, corpsecret=APP_SECRET)
    again = await get_json(http, url, corpid=CORP_ID, corpsecret=APP_SECRET)
    other = await get_json(http, url, corpid=CORP_ID, corpsecret=CONTACTS_SECRET)
    # WeCom repeats a live token for the same secret; each secret has its own.
    assert first["access_token"] == again["access_token"] != other["access_token"]
    user = sandbox.url("/cgi-bin/user/get")
    assert (await get_json(http, user, userid="2021001"))["errcode"] == 41001
    assert (await get_json(http, user, userid="2021001", access_token="nope"))["errcode"] == 40014


async def test_faults_are_armed_over_http(sandbox: Sandbox, http: aiohttp.ClientSession) -> None:
    async with http.post(sandbox.url("/_sandbox/faults"), json={"errcode": 45009, "count": 2}) as response:
        assert (await response.json())["armed"] == 1
    async with http.post(sandbox.url("/_sandbox/faults"), json={"nonsense": 1}) as response:
        assert response.status == 400
    url = sandbox.url("/cgi-bin/gettoken")
    for _ in range(2):
        assert (await get_json(http, url, corpid=CORP_ID, corpsecret=APP_SECRET))["errcode"] == 45009
    assert (await get_json(http, url, corpid=CORP_ID, corpsecret=APP_SECRET))["errcode"] == 0
    sandbox.faults.status(502, count=3)
    async with http.delete(sandbox.url("/_sandbox/faults")) as response:
        assert (await response.json())["armed"] == 0
    assert sandbox.faults.armed == []


async def test_state_page_and_qr(sandbox: Sandbox, http: aiohttp.ClientSession) -> None:
    summary = await get_json(http, sandbox.url("/_sandbox/state"))
    assert [m["userid"] for m in summary["members"]] == ["2021001", "2021002"]
    async with http.get(sandbox.url("/follow/qr.svg")) as response:
        assert response.content_type == "image/svg+xml"
        assert "<svg" in await response.text()


async def test_authorize_refuses_bad_parameters(sandbox: Sandbox) -> None:
    good = {"appid": CORP_ID, "redirect_uri": "https://bind.example.edu/x", "response_type": "code",
            "scope": "snsapi_base", "state": "s1"}
    async with browser() as http:
        await new_wechat(http, sandbox.base, "甲", "13900000001")
        for bad in ({"appid": "other"}, {"redirect_uri": "javascript:alert(1)"}, {"state": "a b"},
                    {"response_type": "token"}):
            url = sandbox.url("/connect/oauth2/authorize")
            async with http.get(url, params={**good, **bad}, allow_redirects=False) as response:
                assert response.status == 400, bad
    assert sandbox.state.oauth_codes == {}


async def test_second_verification_waits_for_authsucc(
    start_sandbox: SandboxFactory, make_client: ClientFactory
) -> None:
    admission = "https://bind.example.edu/admit"
    sandbox = await start_sandbox(admission_url=admission)
    app = make_client(APP_SECRET, api_base=sandbox.base)
    async with browser() as http:
        await new_wechat(http, sandbox.base, "李四", "13900000002")
        _, page = await post_page(http, sandbox.url("/follow/verify"), {"phone": "13800000002"})
        form = {"code": sms_code(page)}
        async with http.post(sandbox.url("/follow/code"), data=form, allow_redirects=False) as response:
            assert response.status == 302
            location = response.headers["Location"]
    assert location.startswith(admission + "?code=")
    assert sandbox.state.follower("2021002") is None
    code = location.split("code=", 1)[1].split("&", 1)[0]
    identity = await app.get_user_info(code)
    assert identity.userid == "2021002"
    await app.auth_succ("2021002")
    assert sandbox.state.follower("2021002") is not None


async def test_no_callback_target_means_no_pushes(sandbox: Sandbox) -> None:
    assert not sandbox.pusher.enabled
    async with browser() as http:
        await new_wechat(http, sandbox.base, "张三", "13800000001")
        await post_page(http, sandbox.url("/follow"))
    assert sandbox.state.pushes == []


def test_callback_target_hides_its_secrets() -> None:
    shown = repr(CallbackTarget(url="http://127.0.0.1/wecom/callback", token=TOKEN, encoding_aes_key=AES_KEY))
    assert TOKEN not in shown
    assert AES_KEY not in shown
