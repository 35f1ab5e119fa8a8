"""Step 3: the phone page (figure 1-3), the rules on submit, WeCom's contacts, and the result."""

from __future__ import annotations

import asyncio
import re

import pytest

from callback_service.clients.budget import WECOM_BUDGET
from callback_service.compose import BINDING_FLOW
from handlers.core.binding import Actor, AuditAction, BindingState
from handlers.core.guide import GUIDE, ErrorCode
from handlers.core.phone import Phone
from tests.pages.conftest import MakeEnv
from tests.pages.support import OTHER_MEMBER, OTHER_PHONE, PagesEnv

STUDENT_ACTOR = Actor(who="test", source="test")


def _assert_guide_entry(page: str, code: ErrorCode) -> None:
    entry = GUIDE[code]
    assert entry.section in page
    assert entry.title in page
    for text in (*entry.causes, *entry.remedies):
        assert text in page


def _no_full_phone(page: str) -> None:
    assert re.search(r"1[3-9]\d{9}", page) is None, "a full phone is on the page"


async def _actions(env: PagesEnv, member_id: str) -> list[AuditAction]:
    return [record.action for record in reversed(await env.store.audit_list(member_id=member_id))]


# the page of figure 1-3


async def test_phone_page_needs_a_login(env: PagesEnv) -> None:
    response = await env.client.get("/bind/phone", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == "/bind"


async def test_phone_page_prefills_the_directory_phone(env: PagesEnv) -> None:
    await env.login("2021001")
    assert (await env.form()).phone == "13800000001"


async def test_phone_page_prefills_the_cas_mobile_when_the_directory_has_none(env: PagesEnv) -> None:
    await env.login("2021002")
    assert (await env.form()).phone == "13800000002"


async def test_phone_page_is_empty_without_a_phone_anywhere(env: PagesEnv) -> None:
    await env.login("2021003")
    page = await (await env.client.get("/bind/phone")).text()
    assert (await env.form()).phone == ""
    assert "王五" in page


async def test_phone_page_escapes_what_cas_says(env: PagesEnv) -> None:
    await env.login("2021009")
    page = await (await env.client.get("/bind/phone")).text()
    assert "<b>孙七</b>" not in page
    assert "&lt;b&gt;孙七&lt;/b&gt;" in page


# the phone's format


@pytest.mark.parametrize(
    "typed", ["13800000003", "138 0000 0003", "138-0000-0003", "+86 138 0000 0003", "0086-13800000003"]
)
async def test_the_accepted_phone_formats_bind_the_11_digits(env: PagesEnv, typed: str) -> None:
    await env.login("2021003")
    response = await env.submit(typed)
    page = await response.text()
    assert response.status == 200
    assert "绑定成功" in page
    assert "138****0003" in page
    assert env.wecom_state.members["2021003"].mobile == "13800000003"
    binding = await env.store.get_binding("2021003")
    assert binding is not None
    assert binding.phone == "13800000003"


@pytest.mark.parametrize("typed", ["", "12345", "2380000000", "1380000000a", "+1 415 555 0100", "<script>1</script>"])
async def test_a_malformed_phone_shows_the_form_again_with_the_input_kept(env: PagesEnv, typed: str) -> None:
    await env.login("2021003")
    response = await env.submit(typed, follow=False)
    page = await response.text()
    assert response.status == 400
    assert "手机号格式不正确" in page
    assert "<script>1" not in page
    refreshed = type(await env.form()).read(page)
    assert refreshed.phone == typed
    assert await env.store.get_binding("2021003") is None
    assert env.wecom_state.members["2021003"].mobile is None


async def test_a_full_width_cas_mobile_prefills_its_ascii_digits(env: PagesEnv) -> None:
    await env.login("2021005")
    assert (await env.form()).phone == "13800000005"


async def test_a_cas_mobile_in_another_script_is_not_prefilled(env: PagesEnv) -> None:
    await env.login("2021006")
    assert (await env.form()).phone == ""


async def test_full_width_digits_bind_as_their_ascii_digits(env: PagesEnv) -> None:
    await env.login("2021003")
    page = await (await env.submit("１３８ ００００ ０００３")).text()
    assert "绑定成功" in page
    assert env.wecom_state.members["2021003"].mobile == "13800000003"
    binding = await env.store.get_binding("2021003")
    assert binding is not None
    assert binding.phone == "13800000003"


async def test_a_phone_with_one_full_width_digit_is_the_same_phone_2_1(env: PagesEnv) -> None:
    await env.bind("2021001", "13800000001")
    env.client.session.cookie_jar.clear()
    page = await env.bind("2021003", "13８00000001")
    _assert_guide_entry(page, ErrorCode.PHONE_TAKEN)
    assert await env.store.get_binding("2021003") is None
    holder = await env.store.get_binding_by_phone(Phone("13800000001"))
    assert holder is not None
    assert holder.member_id == "2021001"
    assert [b.phone for b in await env.store.list_bindings()] == ["13800000001"]


@pytest.mark.parametrize(
    "typed",
    [
        "13800000٠٠1",  # Arabic-Indic
        "1380000०००१",  # Devanagari
        "①3800000001",  # circled
        "13600000321" + " " * 53 + "'; DROP TABLE bindings; --",  # cut to 64 and accepted before
        "136" + " " * 40 + "00000321",
    ],
)
async def test_other_scripts_and_overlong_text_are_a_format_error(env: PagesEnv, typed: str) -> None:
    await env.bind("2021001", "13800000001")
    env.client.session.cookie_jar.clear()
    await env.login("2021003")
    response = await env.submit(typed, follow=False)
    page = await response.text()
    assert response.status == 400
    assert "手机号格式不正确" in page
    assert await env.store.get_binding("2021003") is None
    assert await _actions(env, "2021003") == []
    assert env.wecom_state.members["2021003"].mobile is None


# binding


async def test_binding_writes_wecom_commits_and_invites(env: PagesEnv) -> None:
    page = await env.bind("2021001", "13800000001")
    assert "绑定成功" in page
    assert env.wecom_state.members["2021001"].mobile == "13800000001"
    binding = await env.store.get_binding("2021001")
    assert binding is not None
    assert binding.state is BindingState.BOUND
    assert await _actions(env, "2021001") == [AuditAction.CLAIM, AuditAction.BIND]
    assert [invite.users for invite in env.wecom_state.invites] == [("2021001",)]
    record = (await env.store.audit_list(member_id="2021001"))[0]
    assert record.who == "2021001"
    assert record.source.startswith("bind-page 127.0.0.1")


async def test_the_result_says_what_happens_next_and_shows_the_follow_qr(env: PagesEnv) -> None:
    page = await env.bind("2021001", "13800000001")
    assert "免验证，直接关注" in page
    assert "关注身份验证" in page
    assert "验证码" in page
    assert 'src="/bind/follow-qr.png"' in page
    assert f'href="{env.settings.follow_url}"' in page
    _no_full_phone(page.replace(str(env.settings.follow_url), ""))
    qr = await env.client.get("/bind/follow-qr.png")
    assert qr.status == 200
    assert qr.content_type == "image/png"
    assert (await qr.read()).startswith(b"\x89PNG")


async def test_without_a_follow_url_the_result_points_to_the_posters(make_env: MakeEnv) -> None:
    env = await make_env(follow_url=None)
    page = await env.bind("2021001", "13800000001")
    assert "绑定成功" in page
    assert "海报" in page
    assert "follow-qr.png" not in page
    assert (await env.client.get("/bind/follow-qr.png")).status == 404


async def test_a_member_missing_in_wecom_is_created_from_the_directory(env: PagesEnv) -> None:
    assert "2021004" not in env.wecom_state.members
    page = await env.bind("2021004", "13800000004")
    assert "绑定成功" in page
    member = env.wecom_state.members["2021004"]
    assert (member.name, member.department, member.mobile) == ("赵六", [2], "13800000004")
    assert env.wecom_state.calls.count("user/create") == 1


async def test_a_student_in_neither_wecom_nor_the_directory_is_told_so(env: PagesEnv) -> None:
    # Removed from WeCom after the phone page opened: the submit is told so too, with no retry.
    await env.login("2021009")
    form = await env.form()
    del env.wecom_state.members["2021009"]
    page = await (await env.submit("13800000009", form=form)).text()
    assert "未找到您的通讯录信息" in page
    assert "重新绑定" not in page
    assert await env.store.get_binding("2021009") is None
    assert await _actions(env, "2021009") == [AuditAction.CLAIM, AuditAction.RELEASE, AuditAction.CONFLICT]


async def test_binding_the_same_phone_again_writes_nothing(env: PagesEnv) -> None:
    await env.bind("2021001", "13800000001")
    updates = env.wecom_state.calls.count("user/update")
    response = await env.submit("138 0000 0001")
    assert "绑定成功" in await response.text()
    assert env.wecom_state.calls.count("user/update") == updates
    assert await _actions(env, "2021001") == [AuditAction.CLAIM, AuditAction.BIND]


async def test_changing_the_phone_before_following_frees_the_old_one(env: PagesEnv) -> None:
    await env.bind("2021001", "13800000001")
    page = await (await env.submit("13800000011")).text()
    assert "138****0011" in page
    assert env.wecom_state.members["2021001"].mobile == "13800000011"
    assert await env.store.get_binding_by_phone(Phone("13800000001")) is None


# the guide's errors


async def test_a_phone_bound_by_another_member_is_2_1(env: PagesEnv) -> None:
    await env.bind("2021001", "13800000001")
    env.client.session.cookie_jar.clear()
    page = await env.bind("2021003", "138-0000-0001")
    assert "绑定失败" in page
    _assert_guide_entry(page, ErrorCode.PHONE_TAKEN)
    _no_full_phone(page)
    assert await env.store.get_binding("2021003") is None
    assert env.wecom_state.members["2021003"].mobile is None


async def test_a_followed_member_changing_its_phone_is_2_2(env: PagesEnv) -> None:
    await env.bind("2021001", "13800000001")
    await env.store.follow("2021001", "o-wechat-of-2021001", actor=STUDENT_ACTOR)
    form_page = await (await env.client.get("/bind/phone")).text()
    assert "138****0001" in form_page
    page = await (await env.submit("13800000021")).text()
    _assert_guide_entry(page, ErrorCode.ACCOUNT_FOLLOWED)
    binding = await env.store.get_binding("2021001")
    assert binding is not None
    assert binding.phone == "13800000001"
    assert binding.state is BindingState.FOLLOWED
    assert env.wecom_state.members["2021001"].mobile == "13800000001"


async def test_a_member_activated_in_the_wecom_app_has_joined_with_both_ways_out(env: PagesEnv) -> None:
    # Activated through the WeCom app: no subscribe ever reached the store, WeCom's status says so.
    await env.login("2021003")
    form = await env.form()
    env.wecom_state.set_uses_wecom_app("2021003", True)
    page = await (await env.submit("13800000003", form=form)).text()
    assert "绑定成功" not in page
    assert "无需再绑定" in page
    _assert_guide_entry(page, ErrorCode.ACCOUNT_FOLLOWED)
    assert "取消关注" in page
    assert "企业微信 → 我 → 个人信息 → 手机" in page
    assert await env.store.get_binding("2021003") is None
    assert "user/update" not in env.wecom_state.calls


async def test_a_wecom_block_45009_binds_nothing_and_says_try_later(env: PagesEnv) -> None:
    await env.login("2021003")
    form = await env.form()
    env.wecom_state.faults.errcode(45009, count=10, api="user/get")
    page = await (await env.submit("13800000003", form=form)).text()
    assert "稍后再试" in page
    assert "绑定成功" not in page
    assert env.wecom_state.calls.count("user/get") == 2  # the status at login, then the submit's
    assert await env.store.get_binding("2021003") is None


async def test_a_spent_call_budget_says_try_later_at_once_and_sends_nothing(make_env: MakeEnv) -> None:
    # One user/get a minute for this process: the inbox's workers (or sync) just used it, and a
    # student does not wait for the next.
    env = await make_env(wecom_calls_per_minute=1)
    budget = env.client.app[WECOM_BUDGET]
    await budget.take("user/get")
    page = await env.bind("2021003", "13800000003")
    assert "稍后再试" in page
    assert "绑定成功" not in page
    assert env.wecom_state.calls.count("user/get") == 0
    assert await env.store.get_binding("2021003") is None
    assert budget.refused >= 1


async def test_an_untrusted_ip_is_the_unavailable_page_and_binds_nothing(env: PagesEnv) -> None:
    env.wecom_state.faults.errcode(48009, count=10, api="user/get")
    page = await env.bind("2021003", "13800000003")
    assert "服务暂时不可用" in page
    assert "48009" not in page
    assert "企业可信IP" not in page
    assert await env.store.get_binding("2021003") is None


async def test_a_write_whose_answer_was_lost_says_confirming_then_bound(env: PagesEnv) -> None:
    # Every try of user/update goes unanswered within the student's request; WeCom answers later.
    env.wecom_state.faults.status(502, count=4, api="user/update")
    await env.login("2021003")
    response = await env.submit("13800000003")
    page = await response.text()
    assert "正在确认" in page
    assert "138****0003" in page
    _no_full_phone(page)
    assert "没有生效" not in page
    me = await (await env.client.get("/me")).text()
    assert "绑定处理中" in me
    # The flow replays the write in the background (its first pause is a second): wait for it to end.
    await asyncio.wait_for(env.client.app[BINDING_FLOW].replays_ended(), timeout=60)
    page = await (await env.client.get(response.url.path)).text()
    assert "绑定成功" in page
    binding = await env.store.get_binding("2021003")
    assert binding is not None
    assert (binding.state, binding.phone) == (BindingState.BOUND, "13800000003")
    assert env.wecom_state.members["2021003"].mobile == "13800000003"


async def test_wecom_60104_is_shown_as_2_1_and_the_store_corrected(env: PagesEnv) -> None:
    # The store has never heard of OTHER_PHONE; WeCom holds it for another member.
    assert await env.store.get_binding_by_phone(OTHER_PHONE) is None
    page = await env.bind("2021001", OTHER_PHONE)
    _assert_guide_entry(page, ErrorCode.PHONE_TAKEN)
    assert await env.store.get_binding("2021001") is None
    assert await env.store.get_binding_by_phone(OTHER_PHONE) is None
    records = list(reversed(await env.store.audit_list(member_id="2021001")))
    assert [r.action for r in records] == [AuditAction.CLAIM, AuditAction.RELEASE, AuditAction.CONFLICT]
    assert "60104" in records[2].detail
    assert records[2].phone_masked == "139****0099"
    assert env.wecom_state.members["2021001"].mobile is None
    assert env.wecom_state.members[OTHER_MEMBER].mobile == OTHER_PHONE
    assert await env.store.integrity_problems() == []


# double submits


async def test_a_double_submit_binds_once_and_both_see_the_result(env: PagesEnv) -> None:
    await env.login("2021001")
    form = await env.form()
    first, second = await asyncio.gather(env.submit("13800000001", form=form), env.submit("13800000001", form=form))
    pages = [await first.text(), await second.text()]
    assert [first.status, second.status] == [200, 200]
    for page in pages:
        assert "绑定成功" in page or "绑定正在处理中" in page
    assert any("绑定成功" in page for page in pages)
    assert first.url == second.url
    assert await _actions(env, "2021001") == [AuditAction.CLAIM, AuditAction.BIND]
    assert env.wecom_state.calls.count("user/update") == 1


async def test_two_forms_racing_bind_once(env: PagesEnv) -> None:
    await env.login("2021001")
    forms = [await env.form(), await env.form()]
    responses = await asyncio.gather(*(env.submit("13800000001", form=form) for form in forms))
    pages = [await response.text() for response in responses]
    assert any("绑定成功" in page for page in pages)
    for page in pages:
        assert "绑定成功" in page or "绑定正在处理中" in page
    actions = await _actions(env, "2021001")
    assert actions.count(AuditAction.BIND) == 1
    assert await env.store.integrity_problems() == []


async def test_a_result_is_only_its_students(env: PagesEnv) -> None:
    await env.login("2021001")
    response = await env.submit("13800000001")
    result_path = response.url.path
    env.client.session.cookie_jar.clear()
    await env.login("2021003")
    other = await env.client.get(result_path)
    assert other.status == 404
    assert "找不到绑定结果" in await other.text()


async def test_no_read_back_where_wecom_would_hide_the_mobile_again(env: PagesEnv) -> None:
    # The assistant may not read (48009) and the app hides the mobile: once the flow knows that,
    # the read-back after user/update could tell nothing, and each user/get counts against WeCom's
    # per-API minute limit. The status read before the write stays. That is today's WeCom, the
    # emulator's default.
    assert (env.wecom_state.contacts_reads_details, env.wecom_state.app_sees_sensitive) == (False, False)
    assert "绑定成功" in await env.bind("2021003", "13800000003")
    await env.login("2021001")
    form = await env.form()
    before = len(env.wecom_state.calls)
    assert "绑定成功" in await (await env.submit("13800000001", form=form)).text()
    assert env.wecom_state.calls[before:].count("user/get") == 1
    assert env.wecom_state.members["2021001"].mobile == "13800000001"


async def test_the_write_is_read_back_where_wecom_shows_the_mobile(env: PagesEnv) -> None:
    env.wecom_state.contacts_reads_details = True  # an assistant trusted before 2022-08-15
    assert "绑定成功" in await env.bind("2021003", "13800000003")
    await env.login("2021001")
    form = await env.form()
    before = len(env.wecom_state.calls)
    assert "绑定成功" in await (await env.submit("13800000001", form=form)).text()
    assert env.wecom_state.calls[before:].count("user/get") == 2


async def test_a_contacts_assistant_that_may_not_read_still_binds_and_refuses_by_status(env: PagesEnv) -> None:
    # Today's WeCom, the emulator's default: the assistant's trusted address was added after
    # 2022-08-15, its user/get answers 48009, its writes work. The status comes from the app's
    # secret, which never hides it.
    assert not env.wecom_state.contacts_reads_details
    page = await env.bind("2021003", "13800000003")
    assert "绑定成功" in page
    binding = await env.store.get_binding("2021003")
    assert binding is not None
    assert binding.phone == "13800000003"
    assert env.wecom_state.members["2021003"].mobile == "13800000003"
    form = await env.form()
    env.wecom_state.set_uses_wecom_app("2021003", True)
    page = await (await env.submit("13800000023", form=form)).text()
    assert "无需再绑定" in page
    _assert_guide_entry(page, ErrorCode.ACCOUNT_FOLLOWED)
    assert env.wecom_state.members["2021003"].mobile == "13800000003"
