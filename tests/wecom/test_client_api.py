"""The client's calls against the emulator: member CRUD, mobile uniqueness, list_id, OAuth, messages."""

from __future__ import annotations

import pytest

from callback_service.clients.wecom import (
    ApiForbidden,
    DeptUser,
    InvalidCode,
    InvalidMobile,
    MobileExists,
    UserIdExists,
    UserNotFound,
    WeComError,
)
from tests.store.support import FakeClock
from tests.wecom._support import APP_SECRET, CORP_ID, browser, new_wechat, oauth_code, post_page
from tests.wecom.conftest import ClientFactory, Sandbox, SandboxFactory


async def test_member_crud(start_sandbox: SandboxFactory, make_client: ClientFactory) -> None:
    # An assistant whose address was trusted before 2022-08-15 reads back what it wrote (today's gets 48009).
    sandbox = await start_sandbox(contacts_reads_details=True)
    contacts = make_client(api_base=sandbox.base)
    await contacts.user_create(userid="2021009", name="王五", department=[1], mobile="13800000009")
    member = await contacts.user_get("2021009")
    assert (member.name, member.mobile, member.department, member.status) == ("王五", "13800000009", (1,), 4)
    await contacts.user_update("2021009", mobile="13800000019", name="王五五")
    member = await contacts.user_get("2021009")
    assert (member.name, member.mobile) == ("王五五", "13800000019")
    # WeCom keeps a mobile or an email (60129, "成员手机和邮箱至少有个非空"): cleared once an email stands in.
    with pytest.raises(WeComError) as empty:
        await contacts.user_update("2021009", mobile="")
    assert empty.value.errcode == 60129
    await contacts.user_update("2021009", mobile="", extra={"email": "wangwu@example.edu.cn"})
    assert (await contacts.user_get("2021009")).mobile is None
    await contacts.user_update("2021009", new_userid="wangwu")
    assert (await contacts.user_get("wangwu")).name == "王五五"
    await contacts.user_delete("wangwu")
    with pytest.raises(UserNotFound):
        await contacts.user_get("wangwu")
    with pytest.raises(UserNotFound):
        await contacts.user_delete("wangwu")


async def test_mobile_is_unique(sandbox: Sandbox, make_client: ClientFactory) -> None:
    contacts = make_client()
    with pytest.raises(MobileExists) as raised:
        await contacts.user_create(userid="2021009", name="王五", department=[1], mobile="13800000001")
    assert raised.value.errcode == 60104
    assert "2021009" not in sandbox.state.members
    with pytest.raises(MobileExists):
        await contacts.user_update("2021002", mobile="13800000001")
    assert sandbox.state.members["2021002"].mobile == "13800000002"
    # A member may keep its own mobile.
    await contacts.user_update("2021002", mobile="13800000002")


async def test_refusals_carry_their_errcodes(sandbox: Sandbox, make_client: ClientFactory) -> None:
    contacts = make_client()
    with pytest.raises(UserIdExists):
        await contacts.user_create(userid="2021001", name="重复", department=[1])
    with pytest.raises(InvalidMobile):
        await contacts.user_create(userid="2021010", name="号码", department=[1], mobile="12345")
    with pytest.raises(UserNotFound):
        await contacts.user_update("nobody", mobile="13800000077")
    with pytest.raises(WeComError) as raised:
        await contacts.user_create(userid="2021011", name="部门", department=[99])
    assert raised.value.errcode == 40066


async def test_only_the_contacts_secret_writes(sandbox: Sandbox, make_client: ClientFactory) -> None:
    app = make_client(APP_SECRET)
    with pytest.raises(ApiForbidden) as raised:
        await app.user_create(userid="2021012", name="越权", department=[1])
    assert raised.value.errcode == 48002
    # Reads are open to the app's secret, and messages are closed to the contacts one.
    assert (await app.user_get("2021001")).name == "张三"
    with pytest.raises(ApiForbidden):
        await make_client().send_text(["2021001"], "hi", agent_id=sandbox.state.agent_id)


async def test_list_id_walks_every_page(sandbox: Sandbox, make_client: ClientFactory) -> None:
    contacts = make_client()
    sandbox.state.departments[2] = "机械学院"
    for n in range(10, 17):
        await contacts.user_create(userid=f"20210{n}", name=f"学生{n}", department=[1, 2] if n % 2 else [2])
    rows = [row async for row in contacts.user_list_id(limit=3)]
    expected = [DeptUser(u, d) for u, d in sandbox.state.dept_users()]
    assert rows == expected
    assert len(rows) == 2 + 7 + 3
    assert sandbox.state.calls.count("user/list_id") == 4


async def test_oauth_code_is_single_use(sandbox: Sandbox, make_client: ClientFactory) -> None:
    app = make_client(APP_SECRET)
    async with browser() as http:
        await new_wechat(http, sandbox.base, "张三", "13800000001")
        await post_page(http, sandbox.url("/follow"))
        code = await oauth_code(http, sandbox.base, CORP_ID)
    identity = await app.get_user_info(code)
    assert (identity.userid, identity.openid) == ("2021001", None)
    with pytest.raises(InvalidCode) as raised:
        await app.get_user_info(code)
    assert raised.value.errcode == 40029


async def test_oauth_code_expires_after_five_minutes(
    sandbox: Sandbox, make_client: ClientFactory, clock: FakeClock
) -> None:
    app = make_client(APP_SECRET)
    async with browser() as http:
        await new_wechat(http, sandbox.base, "路人", "13900000000")
        fresh = await oauth_code(http, sandbox.base, CORP_ID)
        stale = await oauth_code(http, sandbox.base, CORP_ID)
    clock.advance(299)
    identity = await app.get_user_info(fresh)
    assert identity.userid is None
    assert identity.openid is not None
    assert identity.openid.startswith("o")
    clock.advance(2)
    with pytest.raises(InvalidCode):
        await app.get_user_info(stale)


async def test_convert_to_openid_gives_the_followers_openid(
    sandbox: Sandbox, make_client: ClientFactory
) -> None:
    contacts = make_client()
    with pytest.raises(WeComError):
        await contacts.convert_to_openid("2021001")
    async with browser() as http:
        await new_wechat(http, sandbox.base, "张三", "13800000001")
        await post_page(http, sandbox.url("/follow"))
    follower = sandbox.state.follower("2021001")
    assert follower is not None
    assert await contacts.convert_to_openid("2021001") == follower.openid
    with pytest.raises(UserNotFound):
        await contacts.convert_to_openid("nobody")


async def test_send_text_invite_and_authsucc(sandbox: Sandbox, make_client: ClientFactory) -> None:
    app = make_client(APP_SECRET)
    sent = await app.send_text(["2021001", "ghost"], "绑定成功", agent_id=sandbox.state.agent_id)
    assert sent.msgid
    assert sent.invalid_users == ("ghost",)
    [message] = sandbox.state.messages
    assert (message.touser, message.content) == (("2021001",), "绑定成功")
    with pytest.raises(WeComError) as raised:
        await app.send_text(["ghost"], "nobody", agent_id=sandbox.state.agent_id)
    assert raised.value.errcode == 81013
    invited = await app.batch_invite(users=["2021002", "ghost"])
    assert invited.invalid_users == ("ghost",)
    assert sandbox.state.invites[-1].users == ("2021002",)
    await app.auth_succ("2021002")
    assert sandbox.state.authsucc == ["2021002"]
