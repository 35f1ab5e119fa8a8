"""The follow of the guide's step 4 over HTTP: direct, by SMS code, 2.3, 2.4, one WeChat one member."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestServer

from sandbox.wecom import APP, WECOM_SANDBOX_STATE, create_wecom_sandbox
from sandbox.wecom_state import STATUS_ACTIVE, STATUS_INACTIVE
from tests.store.support import FakeClock
from tests.wecom._support import (
    AGENT_ID,
    APP_SECRET,
    CORP_ID,
    browser,
    error_code,
    new_wechat,
    post_page,
    sms_code,
)
from tests.wecom.conftest import Sandbox


async def test_follow_without_a_wechat_asks_to_pick_one(sandbox: Sandbox) -> None:
    async with browser() as http, http.get(sandbox.url("/follow"), allow_redirects=False) as response:
        assert response.status == 303
        assert response.headers["Location"] == "/wechat?next=%2Ffollow"


async def test_matching_phone_follows_at_once(sandbox: Sandbox) -> None:
    async with browser() as http:
        await new_wechat(http, sandbox.base, "张三", "13800000001")
        async with http.get(sandbox.url("/follow")) as response:
            assert "关注" in await response.text()
        status, page = await post_page(http, sandbox.url("/follow"))
    assert status == 200
    assert "关注成功" in page
    assert 'data-member="2021001"' in page
    assert sandbox.state.follower("2021001") is not None
    assert sandbox.state.members["2021001"].status == STATUS_ACTIVE


async def test_other_phone_is_verified_with_the_shown_code(sandbox: Sandbox) -> None:
    async with browser() as http:
        await new_wechat(http, sandbox.base, "李四", "13900000002")
        status, page = await post_page(http, sandbox.url("/follow"))
        assert status == 200
        assert "验证身份" in page
        status, page = await post_page(http, sandbox.url("/follow/verify"), {"phone": "138 0000 0002"})
        assert status == 200
        assert "138****0002" in page
        code = sms_code(page)
        status, page = await post_page(http, sandbox.url("/follow/code"), {"code": code})
    assert status == 200
    assert "关注成功" in page
    assert 'data-member="2021002"' in page


async def test_a_wrong_code_does_not_follow(sandbox: Sandbox) -> None:
    async with browser() as http:
        await new_wechat(http, sandbox.base, "李四", "13900000002")
        _, page = await post_page(http, sandbox.url("/follow/verify"), {"phone": "13800000002"})
        code = sms_code(page)
        wrong = "000000" if code != "000000" else "111111"
        status, page = await post_page(http, sandbox.url("/follow/code"), {"code": wrong})
        assert status == 400
        assert "验证码错误" in page
        assert sandbox.state.follower("2021002") is None
        # The right code still works after one mistake.
        status, page = await post_page(http, sandbox.url("/follow/code"), {"code": code})
        assert "关注成功" in page


async def test_an_expired_code_does_not_follow(sandbox: Sandbox, clock: FakeClock) -> None:
    async with browser() as http:
        await new_wechat(http, sandbox.base, "李四", "13900000002")
        _, page = await post_page(http, sandbox.url("/follow/verify"), {"phone": "13800000002"})
        clock.advance(301)
        status, page = await post_page(http, sandbox.url("/follow/code"), {"code": sms_code(page)})
    assert status == 400
    assert "已过期" in page
    assert sandbox.state.follower("2021002") is None


async def test_phone_in_no_record_is_error_2_3(sandbox: Sandbox) -> None:
    async with browser() as http:
        await new_wechat(http, sandbox.base, "路人", "13900000009")
        status, page = await post_page(http, sandbox.url("/follow/verify"), {"phone": "13700000000"})
    assert status == 409
    assert error_code(page) == "PHONE_NOT_IN_CONTACTS"
    assert "手机号不存在于企业通讯录中" in page
    assert "重新验证" in page


async def test_member_followed_by_another_wechat_is_error_2_4(sandbox: Sandbox) -> None:
    async with browser() as first:
        await new_wechat(first, sandbox.base, "张三", "13800000001")
        await post_page(first, sandbox.url("/follow"))
    async with browser() as second:
        await new_wechat(second, sandbox.base, "冒充者", "13900000001")
        status, page = await post_page(second, sandbox.url("/follow/verify"), {"phone": "13800000001"})
        assert status == 409
        assert error_code(page) == "PHONE_VERIFIED_BY_OTHER"
        assert "手机号已被其他成员验证" in page
        # A second WeChat with the member's very phone does not get in directly either.
        await new_wechat(second, sandbox.base, "同号", "13800000001")
        status, page = await post_page(second, sandbox.url("/follow"))
        assert error_code(page) == "PHONE_VERIFIED_BY_OTHER"
    assert len(sandbox.state.follows) == 1


async def test_one_wechat_follows_as_one_member_only(sandbox: Sandbox) -> None:
    async with browser() as http:
        await new_wechat(http, sandbox.base, "张三", "13800000001")
        await post_page(http, sandbox.url("/follow"))
        status, page = await post_page(http, sandbox.url("/follow/verify"), {"phone": "13800000002"})
    assert status == 409
    assert error_code(page) == "ONE_WECHAT_ONE_MEMBER"
    assert sandbox.state.follower("2021002") is None
    assert sandbox.state.sms == {}


async def test_unfollow_frees_the_member_and_the_wechat(sandbox: Sandbox) -> None:
    async with browser() as http:
        await new_wechat(http, sandbox.base, "张三", "13800000001")
        await post_page(http, sandbox.url("/follow"))
        async with http.get(sandbox.url("/unfollow")) as response:
            assert "张三（2021001）" in await response.text()
        status, page = await post_page(http, sandbox.url("/unfollow"))
        assert status == 200
        assert "已取消关注" in page
        assert sandbox.state.follower("2021001") is None
        assert sandbox.state.members["2021001"].status == STATUS_INACTIVE
        # Free to follow again, as the same member or (after verification) another.
        _, page = await post_page(http, sandbox.url("/follow/verify"), {"phone": "13800000002"})
        _, page = await post_page(http, sandbox.url("/follow/code"), {"code": sms_code(page)})
    assert 'data-member="2021002"' in page


async def test_unfollow_keeps_a_member_who_uses_the_wecom_app_activated(sandbox: Sandbox) -> None:
    sandbox.state.set_uses_wecom_app("2021001", True)
    async with browser() as http:
        await new_wechat(http, sandbox.base, "张三", "13800000001")
        await post_page(http, sandbox.url("/follow"))
        await post_page(http, sandbox.url("/unfollow"))
    # document/path/90196: 已激活代表已激活企业微信或已关注微信插件: still activated by the app.
    assert sandbox.state.follower("2021001") is None
    assert sandbox.state.members["2021001"].status == STATUS_ACTIVE
    sandbox.state.set_uses_wecom_app("2021001", False)
    assert sandbox.state.members["2021001"].status == STATUS_INACTIVE


async def test_pages_escape_what_users_type(sandbox: Sandbox) -> None:
    async with browser() as http:
        await new_wechat(http, sandbox.base, "<b>x</b>", "13800000001")
        async with http.get(sandbox.url("/wechat")) as response:
            page = await response.text()
    assert "<b>x</b>" not in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page
    assert "13800000001" not in page


async def test_mounted_under_a_prefix_every_link_keeps_it() -> None:
    sandbox = create_wecom_sandbox(
        corp_id=CORP_ID, secrets={APP_SECRET: APP}, agent_id=AGENT_ID, callback=None
    )
    outer = web.Application()
    outer.add_subapp("/sandbox/wecom", sandbox)
    server = TestServer(outer)
    await server.start_server()
    base = str(server.make_url("/sandbox/wecom"))
    try:
        async with browser() as http:
            async with http.get(base + "/follow", allow_redirects=False) as response:
                expected = "/sandbox/wecom/wechat?next=%2Fsandbox%2Fwecom%2Ffollow"
                assert response.headers["Location"] == expected
            form = {"name": "甲", "phone": "13800000001", "next": "/sandbox/wecom/follow"}
            async with http.post(base + "/wechat", data=form, allow_redirects=False) as response:
                assert response.headers["Location"] == "/sandbox/wecom/follow"
                assert "Path=/sandbox/wecom" in response.headers["Set-Cookie"]
            # An outside target is never followed.
            form["next"] = "https://evil.example/"
            async with http.post(base + "/wechat", data=form, allow_redirects=False) as response:
                assert response.headers["Location"] == "/sandbox/wecom/follow"
            async with http.get(base + "/follow") as response:
                assert 'action="/sandbox/wecom/follow"' in await response.text()
            query = {"corpid": CORP_ID, "corpsecret": APP_SECRET}
            async with http.get(base + "/cgi-bin/gettoken", params=query) as response:
                answer = await response.json()
        assert answer["errcode"] == 0
        assert answer["expires_in"] == 7200
        assert sandbox[WECOM_SANDBOX_STATE].calls == ["gettoken"]
    finally:
        await server.close()


async def test_a_member_logging_in_to_the_wecom_app_is_activated_with_no_event(sandbox: Sandbox) -> None:
    assert sandbox.state.members["2021002"].status == STATUS_INACTIVE
    pushes = len(sandbox.state.pushes)
    async with browser() as http:
        status, page = await post_page(http, sandbox.url("/app-login"), {"userid": "2021002"})
        assert status == 200
        assert 'data-activated="2021002"' in page
        status, page = await post_page(http, sandbox.url("/app-login"), {"userid": "nobody"})
        assert status == 400
        assert "通讯录中没有这个成员" in page
    assert sandbox.state.members["2021002"].status == STATUS_ACTIVE
    assert sandbox.state.members["2021002"].uses_wecom_app
    assert sandbox.state.follower("2021002") is None
    assert len(sandbox.state.pushes) == pushes
