"""Status first (issue 17): right after the CAS login the member's status routes the student, and the
submit asks again. Joined, disabled, departed or unknown students see no phone page, and nothing is
written to WeCom for them."""

from __future__ import annotations

import re

from tests.pages.conftest import MakeEnv
from tests.pages.support import PagesEnv

HELP_CONTACT = "辅导员或学校信息中心（电话 021-00000000）"


def _outcome(page: str) -> str | None:
    found = re.search(r'id="outcome" data-outcome="([^"]+)"', page)
    return found.group(1) if found else None


async def _after_login(env: PagesEnv, member_id: str) -> str:
    assert (await env.login(member_id)).status == 302
    response = await env.client.get("/bind/phone", allow_redirects=False)
    assert response.status == 200
    return await response.text()


def _writes(env: PagesEnv) -> set[str]:
    return set(env.wecom_state.calls) & {"user/update", "user/create", "batch/invite"}


async def test_a_member_who_joined_through_the_wecom_app_is_told_so_with_no_phone_page(env: PagesEnv) -> None:
    env.wecom_state.set_uses_wecom_app("2021001", True)
    page = await _after_login(env, "2021001")
    assert _outcome(page) == "joined"
    assert "无需再绑定" in page
    assert 'name="phone"' not in page
    assert "微信插件" in page  # how to follow with this WeChat when only the app is used
    assert 'id="ACCOUNT_FOLLOWED"' in page  # "that was not me": the guide's 2.2 remedy
    assert "<script" not in page
    assert _writes(env) == set()


async def test_a_disabled_member_is_told_whom_to_ask(make_env: MakeEnv) -> None:
    env = await make_env(help_contact=HELP_CONTACT)
    env.wecom_state.set_enabled("2021002", False)
    page = await _after_login(env, "2021002")
    assert _outcome(page) == "disabled"
    assert "已停用" in page
    assert HELP_CONTACT in page
    assert 'name="phone"' not in page
    assert _writes(env) == set()


async def test_a_member_who_quit_is_told_whom_to_ask(make_env: MakeEnv) -> None:
    env = await make_env(help_contact=HELP_CONTACT)
    env.wecom_state.members["2021003"].status = 5
    page = await _after_login(env, "2021003")
    assert _outcome(page) == "quit"
    assert "已退出企业" in page
    assert HELP_CONTACT in page
    assert _writes(env) == set()


async def test_a_student_in_neither_the_directory_nor_wecom_is_told_at_once(env: PagesEnv) -> None:
    del env.wecom_state.members["2021009"]
    page = await _after_login(env, "2021009")
    assert _outcome(page) == "unknown"
    assert "未找到您的通讯录信息" in page
    assert "重新绑定" not in page  # a retry could only fail again
    assert 'name="phone"' not in page


async def test_a_member_not_activated_gets_the_phone_page(env: PagesEnv) -> None:
    page = await _after_login(env, "2021001")
    assert 'name="phone"' in page
    assert _outcome(page) is None


async def test_the_submit_asks_for_the_status_again(env: PagesEnv) -> None:
    assert (await env.login("2021002")).status == 302
    form = await env.form()
    env.wecom_state.set_enabled("2021002", False)  # disabled while the form was open
    response = await env.submit("13800000002", form=form)
    page = await response.text()
    assert _outcome(page) == "disabled"
    assert env.wecom_state.members["2021002"].mobile is None
    assert _writes(env) == set()
    assert await env.store.get_binding("2021002") is None


async def test_a_member_activated_after_the_form_opened_sees_the_joined_page(env: PagesEnv) -> None:
    assert (await env.login("2021002")).status == 302
    form = await env.form()
    env.wecom_state.set_uses_wecom_app("2021002", True)
    page = await (await env.submit("13800000002", form=form)).text()
    assert _outcome(page) == "joined"
    assert env.wecom_state.members["2021002"].mobile is None


async def test_me_shows_a_member_who_joined_through_the_wecom_app_as_joined(env: PagesEnv) -> None:
    assert "绑定成功" in await env.bind("2021001", "13800000001")
    env.wecom_state.set_uses_wecom_app("2021001", True)  # then logged in to the WeCom app: no follow here
    page = await _after_login(env, "2021001")
    assert _outcome(page) == "joined"
    me = await (await env.client.get("/me")).text()
    assert "已加入" in me
    assert "已绑定，未关注" not in me
    assert ">更换手机号</a>" not in me


async def test_me_shows_a_disabled_member_as_disabled(make_env: MakeEnv) -> None:
    env = await make_env(help_contact=HELP_CONTACT)
    env.wecom_state.set_enabled("2021002", False)
    await _after_login(env, "2021002")
    me = await (await env.client.get("/me")).text()
    assert "已停用" in me
    assert HELP_CONTACT in me


async def test_a_phone_changed_in_the_console_binds_for_the_next_student(env: PagesEnv) -> None:
    # Bound through the flow, then the administrator gives 张三 another mobile in WeCom's console: no
    # event tells the store, whose index still gives the phone to 张三.
    assert "绑定成功" in await env.bind("2021001", "13800000001")
    console = await env.http.post(env.wecom.make_url("/_sandbox/console/members/2021001"),
                                  json={"mobile": "13800000011"})
    assert console.status == 200, await console.text()
    env.client.session.cookie_jar.clear()
    page = await env.bind("2021003", "13800000001")
    assert "绑定成功" in page
    assert env.wecom_state.members["2021003"].mobile == "13800000001"
    assert "user/getuserid" in env.wecom_state.calls
    lost = (await env.store.audit_list(member_id="2021001"))[0]
    assert lost.action.value == "phone_lost"
    assert "stale" in lost.detail
