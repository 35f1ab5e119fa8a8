"""The emulator plays today's WeCom: each behaviour its documentation describes, over real HTTP."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from sandbox.wecom import STATUS_ACTIVE, STATUS_DISABLED, STATUS_INACTIVE, STATUS_QUIT, Member
from sandbox.wecom_state import SENSITIVE_FIELDS, WRONG_SECRET_LIMIT
from tests.store.support import FakeClock
from tests.wecom._support import (
    APP_SECRET,
    CONTACTS_SECRET,
    CORP_ID,
    browser,
    new_wechat,
    post_page,
    sms_code,
)
from tests.wecom.conftest import Sandbox, SandboxFactory

NOT_LOOPBACK = ["10.0.0.0/8"]


class Api:
    """Raw calls to the emulator's /cgi-bin, so that each test sees WeCom's own JSON and errcodes."""

    def __init__(self, http: aiohttp.ClientSession, sandbox: Sandbox) -> None:
        self.http = http
        self.sandbox = sandbox

    async def token(self, secret: str) -> dict[str, Any]:
        params = {"corpid": CORP_ID, "corpsecret": secret}
        async with self.http.get(self.sandbox.url("/cgi-bin/gettoken"), params=params) as response:
            answer: dict[str, Any] = await response.json()
            return answer

    async def call(
        self, secret: str, name: str, *, query: dict[str, str] | None = None, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        granted = await self.token(secret)
        assert granted["errcode"] == 0, granted
        params = {"access_token": granted["access_token"], **(query or {})}
        url = self.sandbox.url("/cgi-bin/" + name)
        method = self.http.post if body is not None else self.http.get
        async with method(url, params=params, json=body) as response:
            assert response.status == 200
            answer: dict[str, Any] = await response.json()
            return answer


def test_status_constants_are_wecoms() -> None:
    assert (STATUS_ACTIVE, STATUS_DISABLED, STATUS_INACTIVE, STATUS_QUIT) == (1, 2, 4, 5)


async def test_update_ignores_an_activated_members_mobile(sandbox: Sandbox, http: aiohttp.ClientSession) -> None:
    api = Api(http, sandbox)
    async with browser() as wechat:
        await new_wechat(wechat, sandbox.base, "张三", "13800000001")
        await post_page(wechat, sandbox.url("/follow"))
    member = sandbox.state.members["2021001"]
    assert member.status == STATUS_ACTIVE
    body = {"userid": "2021001", "mobile": "13900000009", "position": "学生"}
    answer = await api.call(CONTACTS_SECRET, "user/update", body=body)
    # document/path/90197: "此情况下该参数被忽略，但不会报错": errcode 0, the mobile unchanged.
    assert answer["errcode"] == 0
    assert (member.mobile, member.position) == ("13800000001", "学生")
    # A member not activated takes the new mobile.
    assert (await api.call(CONTACTS_SECRET, "user/update", body={"userid": "2021002", "mobile": "13900000009"})
            )["errcode"] == 0
    assert sandbox.state.members["2021002"].mobile == "13900000009"


async def test_a_member_using_the_wecom_app_is_activated_without_any_event(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    url = sandbox.url("/_sandbox/members/2021002")
    async with http.post(url, json={"uses_wecom_app": True}) as response:
        assert (await response.json())["status"] == STATUS_ACTIVE
    for bad in ({"uses_wecom_app": "yes"}, {"uses_wecom_app": True, "status": 1}, {}):
        async with http.post(url, json=bad) as response:
            assert response.status == 400
    async with http.post(sandbox.url("/_sandbox/members/nobody"), json={"uses_wecom_app": True}) as response:
        assert response.status == 400
    answer = await Api(http, sandbox).call(CONTACTS_SECRET, "user/update",
                                           body={"userid": "2021002", "mobile": "13900000009"})
    assert answer["errcode"] == 0
    assert sandbox.state.members["2021002"].mobile == "13800000002"
    assert sandbox.state.pushes == []
    async with http.post(url, json={"uses_wecom_app": False}) as response:
        assert (await response.json())["status"] == STATUS_INACTIVE


async def test_the_console_changes_an_activated_members_mobile(
    start_sandbox: SandboxFactory, http: aiohttp.ClientSession
) -> None:
    sandbox = await start_sandbox(members=[
        Member(userid="2021001", name="张三", department=[1], mobile="13800000001", status=STATUS_ACTIVE)
    ])
    async with http.post(sandbox.url("/_sandbox/console/members/2021001"), json={"mobile": "13900000001"}) as r:
        assert r.status == 200
    assert sandbox.state.members["2021001"].mobile == "13900000001"


async def test_user_get_hides_the_sensitive_fields_from_an_app(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    api = Api(http, sandbox)
    shown = await api.call(APP_SECRET, "user/get", query={"userid": "2021001"})
    # document/path/90196: no 头像、性别、手机、邮箱、企业邮箱、员工个人二维码、地址 for an app since 2022-06-20.
    assert shown["errcode"] == 0
    assert not set(SENSITIVE_FIELDS) & set(shown)
    assert (shown["name"], shown["department"], shown["status"]) == ("张三", [1], STATUS_INACTIVE)


async def test_a_switch_answers_the_hidden_fields_empty_instead(
    start_sandbox: SandboxFactory, http: aiohttp.ClientSession
) -> None:
    sandbox = await start_sandbox(hidden_as_empty=True)
    shown = await Api(http, sandbox).call(APP_SECRET, "user/get", query={"userid": "2021001"})
    assert shown["errcode"] == 0
    assert (shown["mobile"], shown["email"], shown["gender"]) == ("", "", "0")
    assert set(SENSITIVE_FIELDS) <= set(shown)
    assert sandbox.state.members["2021001"].mobile == "13800000001"


async def test_an_assistant_trusted_before_2022_08_15_reads_every_field(
    start_sandbox: SandboxFactory, http: aiohttp.ClientSession
) -> None:
    sandbox = await start_sandbox(contacts_reads_details=True)
    full = await Api(http, sandbox).call(CONTACTS_SECRET, "user/get", query={"userid": "2021001"})
    assert (full["mobile"], full["gender"], full["email"]) == ("13800000001", "0", "")


async def test_an_app_from_before_2022_still_sees_the_mobile(
    start_sandbox: SandboxFactory, http: aiohttp.ClientSession
) -> None:
    sandbox = await start_sandbox(app_sees_sensitive=True)
    shown = await Api(http, sandbox).call(APP_SECRET, "user/get", query={"userid": "2021001"})
    assert shown["mobile"] == "13800000001"


async def test_untrusted_ips_get_60020_for_either_secret_on_the_api_not_on_gettoken(
    start_sandbox: SandboxFactory, http: aiohttp.ClientSession
) -> None:
    # document/path/90313, 60020: "若调用者是企业自建应用或通讯录同步助手，请确认该IP是本企业服务器IP".
    sandbox = await start_sandbox(contacts_trusted_ips=NOT_LOOPBACK, app_trusted_ips=NOT_LOOPBACK)
    api = Api(http, sandbox)
    assert (await api.token(CONTACTS_SECRET))["errcode"] == 0
    refused = await api.call(CONTACTS_SECRET, "user/get", query={"userid": "2021001"})
    assert refused["errcode"] == 60020
    assert "127.0.0.1" in refused["errmsg"]
    write = await api.call(CONTACTS_SECRET, "user/update", body={"userid": "2021002", "name": "改"})
    assert write["errcode"] == 60020
    assert sandbox.state.members["2021002"].name == "李四"
    assert (await api.call(APP_SECRET, "user/get", query={"userid": "2021001"}))["errcode"] == 60020


async def test_by_default_the_assistant_writes_members_but_may_not_read_them(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    # Its address was trusted after 2022-08-15, as every deployment's since (document/path/90196);
    # contacts_reads_details=True plays an older one.
    api = Api(http, sandbox)
    refused = await api.call(CONTACTS_SECRET, "user/get", query={"userid": "2021001"})
    assert refused["errcode"] == 48009
    write = await api.call(CONTACTS_SECRET, "user/update", body={"userid": "2021002", "name": "改"})
    assert write["errcode"] == 0
    assert sandbox.state.members["2021002"].name == "改"
    assert (await api.call(CONTACTS_SECRET, "user/list_id", body={"limit": 10}))["errcode"] == 0
    shown = await api.call(APP_SECRET, "user/get", query={"userid": "2021002"})
    assert (shown["errcode"], shown["status"]) == (0, STATUS_INACTIVE)
    assert "mobile" not in shown  # and a new app sees no mobile: nothing reads it


async def test_trusted_ips_none_means_any_address(start_sandbox: SandboxFactory, http: aiohttp.ClientSession) -> None:
    sandbox = await start_sandbox(contacts_trusted_ips=None, app_trusted_ips=["127.0.0.1", "::1"])
    api = Api(http, sandbox)
    assert (await api.call(CONTACTS_SECRET, "user/list_id", body={"limit": 10}))["errcode"] == 0
    assert (await api.call(APP_SECRET, "user/get", query={"userid": "2021001"}))["errcode"] == 0


async def test_an_ip_presenting_wrong_secrets_is_banned_for_an_hour(
    sandbox: Sandbox, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    api = Api(http, sandbox)
    for _ in range(WRONG_SECRET_LIMIT):
        assert (await api.token("wrong-secret"))["errcode"] == 40001
    # document/path/90313, 45009: "应用的secret错误多次，会导致同一个IP被禁用一小时".
    assert (await api.token(APP_SECRET))["errcode"] == 45009
    clock.advance(3599)
    assert (await api.token(APP_SECRET))["errcode"] == 45009
    clock.advance(2)
    assert (await api.token(APP_SECRET))["errcode"] == 0


async def test_the_visible_range_refuses_an_app_with_60011(
    start_sandbox: SandboxFactory, http: aiohttp.ClientSession
) -> None:
    sandbox = await start_sandbox(departments={1: "校", 2: "院"}, visible_departments=[2], members=[
        Member(userid="2021001", name="张三", department=[1], mobile="13800000001"),
        Member(userid="2021002", name="李四", department=[2], mobile="13800000002"),
    ])
    api = Api(http, sandbox)
    assert (await api.call(APP_SECRET, "user/get", query={"userid": "2021001"}))["errcode"] == 60011
    assert (await api.call(APP_SECRET, "user/get", query={"userid": "2021002"}))["errcode"] == 0
    # The contacts-sync assistant is not bound by the app's range: it writes any member.
    assert (await api.call(CONTACTS_SECRET, "user/update", body={"userid": "2021001", "position": "学生"})
            )["errcode"] == 0
    openid = await api.call(APP_SECRET, "user/convert_to_openid", body={"userid": "2021001"})
    assert openid["errcode"] == 60011
    message = {"touser": "2021001", "msgtype": "text", "agentid": sandbox.state.agent_id,
               "text": {"content": "欢迎"}}
    assert (await api.call(APP_SECRET, "message/send", body=message))["errcode"] == 60011
    assert sandbox.state.messages == []


async def test_user_create_invites_and_batch_invite_invites_again(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    api = Api(http, sandbox)
    new = {"userid": "2021003", "name": "王五", "department": [1], "mobile": "13800000003"}
    assert (await api.call(CONTACTS_SECRET, "user/create", body=new))["errcode"] == 0
    quiet = {"userid": "2021004", "name": "赵六", "department": [1], "to_invite": False}
    assert (await api.call(CONTACTS_SECRET, "user/create", body=quiet))["errcode"] == 0
    # document/path/90195: to_invite "默认值为true".
    assert sandbox.state.invitations == {"2021003": 1}
    assert (await api.call(CONTACTS_SECRET, "batch/invite", body={"user": ["2021003"]}))["errcode"] == 0
    assert sandbox.state.invitations == {"2021003": 2}


async def test_the_duplicate_check_drops_a_repeat_within_its_interval(
    sandbox: Sandbox, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    api = Api(http, sandbox)
    message = {"touser": "2021001", "msgtype": "text", "agentid": sandbox.state.agent_id,
               "text": {"content": "欢迎"}, "enable_duplicate_check": 1, "duplicate_check_interval": 600}
    for _ in range(2):
        assert (await api.call(APP_SECRET, "message/send", body=message))["errcode"] == 0
    assert [m.touser for m in sandbox.state.messages] == [("2021001",)]
    assert [m.touser for m in sandbox.state.duplicates] == [("2021001",)]
    clock.advance(601)
    assert (await api.call(APP_SECRET, "message/send", body=message))["errcode"] == 0
    unchecked = {key: value for key, value in message.items() if key != "enable_duplicate_check"}
    assert (await api.call(APP_SECRET, "message/send", body=unchecked))["errcode"] == 0
    assert len(sandbox.state.messages) == 3
    too_long = message | {"duplicate_check_interval": 5 * 3600}
    assert (await api.call(APP_SECRET, "message/send", body=too_long))["errcode"] == 40058
    assert len(sandbox.state.messages) == 3


async def test_the_duplicate_check_defaults_to_half_an_hour(
    sandbox: Sandbox, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    api = Api(http, sandbox)
    message = {"touser": "2021001|2021002", "msgtype": "text", "agentid": sandbox.state.agent_id,
               "text": {"content": "欢迎"}, "enable_duplicate_check": 1}
    assert (await api.call(APP_SECRET, "message/send", body=message | {"touser": "2021001"}))["errcode"] == 0
    clock.advance(1799)
    assert (await api.call(APP_SECRET, "message/send", body=message))["errcode"] == 0
    # Only the member who had it already is spared the repeat.
    assert [m.touser for m in sandbox.state.messages] == [("2021001",), ("2021002",)]


async def test_a_45009_block_lasts_its_duration(
    sandbox: Sandbox, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    api = Api(http, sandbox)
    async with http.post(sandbox.url("/_sandbox/faults"), json={"block": 3600}) as response:
        assert (await response.json())["blocks"] == 1
    for _ in range(3):
        assert (await api.token(APP_SECRET))["errcode"] == 45009
    clock.advance(3599)
    assert (await api.token(APP_SECRET))["errcode"] == 45009
    clock.advance(1)
    assert (await api.token(APP_SECRET))["errcode"] == 0
    sandbox.faults.block(60, api="user/get")
    assert (await api.call(APP_SECRET, "user/get", query={"userid": "2021001"}))["errcode"] == 45009
    clock.advance(60)
    assert (await api.call(APP_SECRET, "user/get", query={"userid": "2021001"}))["errcode"] == 0
    async with http.post(sandbox.url("/_sandbox/faults"), json={"block": -1}) as response:
        assert response.status == 400


async def admission_code(sandbox: Sandbox, phone: str) -> str:
    """Verify a new WeChat as the member with this phone; return the code the admission page gets."""
    async with browser() as wechat:
        await new_wechat(wechat, sandbox.base, "李四", "13900000002")
        _, page = await post_page(wechat, sandbox.url("/follow/verify"), {"phone": phone})
        form = {"code": sms_code(page)}
        async with wechat.post(sandbox.url("/follow/code"), data=form, allow_redirects=False) as response:
            assert response.status == 302
            return response.headers["Location"].split("code=", 1)[1].split("&", 1)[0]


@pytest.mark.parametrize("secret", [APP_SECRET, CONTACTS_SECRET])
async def test_tfa_info_then_tfa_succ_admits_the_member(
    start_sandbox: SandboxFactory, http: aiohttp.ClientSession, secret: str
) -> None:
    sandbox = await start_sandbox(admission_url="https://bind.example.edu/admit")
    api = Api(http, sandbox)
    code = await admission_code(sandbox, "13800000002")
    info = await api.call(secret, "auth/get_tfa_info", body={"code": code})
    assert info["userid"] == "2021002"
    assert (await api.call(secret, "auth/get_tfa_info", body={"code": code}))["errcode"] == 40029
    wrong = await api.call(secret, "user/tfa_succ", body={"userid": "2021001", "tfa_code": info["tfa_code"]})
    assert wrong["errcode"] == 40207
    assert sandbox.state.follower("2021002") is None
    done = await api.call(secret, "user/tfa_succ", body={"userid": "2021002", "tfa_code": info["tfa_code"]})
    assert done["errcode"] == 0
    assert sandbox.state.members["2021002"].status == STATUS_ACTIVE
    # document/path/99500: the tfa_code is used once.
    again = await api.call(secret, "user/tfa_succ", body={"userid": "2021002", "tfa_code": info["tfa_code"]})
    assert again["errcode"] == 40207


async def test_a_tfa_code_expires_after_five_minutes(
    start_sandbox: SandboxFactory, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    sandbox = await start_sandbox(admission_url="https://bind.example.edu/admit")
    api = Api(http, sandbox)
    info = await api.call(APP_SECRET, "auth/get_tfa_info", body={"code": await admission_code(sandbox, "13800000002")})
    clock.advance(300)
    late = await api.call(APP_SECRET, "user/tfa_succ", body={"userid": "2021002", "tfa_code": info["tfa_code"]})
    assert late["errcode"] == 40207
    assert sandbox.state.follower("2021002") is None


async def test_the_documented_authsucc_path_uses_the_contacts_secret(
    start_sandbox: SandboxFactory, http: aiohttp.ClientSession
) -> None:
    sandbox = await start_sandbox(admission_url="https://bind.example.edu/admit")
    api = Api(http, sandbox)
    code = await admission_code(sandbox, "13800000002")
    # document/path/90203: "使用'通讯录同步助手'调用接口'根据code获取成员信息'获取成员的userid".
    assert (await api.call(CONTACTS_SECRET, "auth/getuserinfo", query={"code": code}))["userid"] == "2021002"
    assert (await api.call(CONTACTS_SECRET, "user/authsucc", query={"userid": "2021002"}))["errcode"] == 0
    assert sandbox.state.members["2021002"].status == STATUS_ACTIVE


async def test_the_state_view_shows_status_invitations_and_messages(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    api = Api(http, sandbox)
    await api.call(CONTACTS_SECRET, "user/create",
                   body={"userid": "2021003", "name": "王五", "department": [1]})
    await api.call(APP_SECRET, "message/send", body={"touser": "2021001", "msgtype": "text",
                                                     "agentid": sandbox.state.agent_id,
                                                     "text": {"content": "欢迎"}})
    async with http.get(sandbox.url("/_sandbox/state")) as response:
        summary = await response.json()
    assert [(m["userid"], m["status"], m["uses_wecom_app"]) for m in summary["members"]] == [
        ("2021001", 4, False), ("2021002", 4, False), ("2021003", 4, False)
    ]
    assert summary["invitations"] == {"2021003": 1}
    assert [(m["touser"], m["content"]) for m in summary["messages"]] == [(["2021001"], "欢迎")]
