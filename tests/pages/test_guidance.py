"""What the pages tell a student who meets an error: where the number came from, which number 2.1
refused, where 取消关注 is, the guide's 1.2 and 1.3 on /help, and a typed phone kept across an
expired form or a ticket error."""

from __future__ import annotations

import re

from handlers.core.binding import Actor
from handlers.core.guide import GUIDE, RULES, STEPS, ErrorCode
from tests.cas._support import FakeClock
from tests.pages.conftest import MakeEnv
from tests.pages.support import PagesEnv, PhoneForm


def _links(page: str) -> list[str]:
    return re.findall(r'href="([^"]*)"', page)


def _no_full_phone(page: str) -> None:
    assert re.search(r"1[3-9]\d{9}", page) is None, "a full phone is on the page"


# /help: the guide's 1.2 and 1.3, and the ways on from each error


async def test_help_carries_the_rules_and_the_steps_with_anchors(env: PagesEnv) -> None:
    page = await (await env.client.get("/help")).text()
    assert 'id="rules"' in page
    assert "1.2</span> 注意事项" in page
    for rule in RULES:
        assert rule in page
    assert 'id="steps"' in page
    assert "1.3</span> 关注企业号的具体步骤" in page
    for step in STEPS:
        assert f'id="step-{step.number}"' in page
        assert f"步骤{step.number} {step.title.format(school='上海工程技术大学')}" in page
    assert "{school}" not in page


async def test_the_steps_cited_by_2_3_and_2_4_are_links_to_them(env: PagesEnv) -> None:
    page = await (await env.client.get("/help")).text()
    entries = {code: page[page.index(f'id="{code}"') :] for code in ErrorCode}
    not_in_contacts = _links(entries[ErrorCode.PHONE_NOT_IN_CONTACTS].split("</section>")[0])
    assert not_in_contacts == ["/help#step-2", "/help#step-3", "/bind"]
    assert _links(entries[ErrorCode.PHONE_VERIFIED_BY_OTHER].split("</section>")[0]) == ["/help#step-3", "/bind"]
    assert "/help#rules" in _links(entries[ErrorCode.PHONE_TAKEN].split("</section>")[0])
    assert "/me" in _links(entries[ErrorCode.ACCOUNT_FOLLOWED].split("</section>")[0])


# where the pre-filled number comes from


async def test_the_phone_page_says_where_its_number_comes_from(env: PagesEnv) -> None:
    await env.login("2021001")
    assert "来自“学校通讯录系统”" in await (await env.client.get("/bind/phone")).text()
    env.client.session.cookie_jar.clear()
    await env.login("2021002")
    assert "来自您的统一身份认证账号" in await (await env.client.get("/bind/phone")).text()
    env.client.session.cookie_jar.clear()
    await env.login("2021003")
    assert "都没有您的手机号" in await (await env.client.get("/bind/phone")).text()


# 2.1 and 2.2


async def test_2_1_names_the_refused_number_masked_and_does_not_offer_it_again(env: PagesEnv) -> None:
    await env.bind("2021003", "13800000001")
    env.client.session.cookie_jar.clear()
    # 张三's directory phone is the one 王五 holds.
    await env.login("2021001")
    assert (await env.form()).phone == "13800000001"
    page = await (await env.submit("13800000001")).text()
    assert "138****0001 已被其他成员绑定" in page
    assert "/help#PHONE_TAKEN" in _links(page)
    _no_full_phone(page)
    # 重新绑定: the field is empty, and the page says why.
    again = await (await env.client.get("/bind/phone")).text()
    assert PhoneForm.read(again).phone == ""
    assert "手机号 138****0001 已被其他成员绑定，无法使用，请输入其他手机号" in again
    _no_full_phone(again)
    assert "绑定成功" in await (await env.submit("13800000011")).text()


async def test_2_2_says_where_to_unfollow_and_leads_to_me(env: PagesEnv) -> None:
    await env.bind("2021001", "13800000001")
    await env.store.follow("2021001", "o-wechat", actor=Actor(who="wecom", source="test"))
    form_page = await (await env.client.get("/bind/phone")).text()
    assert "企业微信插件" in form_page
    page = await (await env.submit("13800000021")).text()
    assert GUIDE[ErrorCode.ACCOUNT_FOLLOWED].title in page
    assert "打开“上海工程技术大学”企业号（企业微信插件）" in page
    assert "选择“取消关注”" in page
    links = _links(page.split("<nav")[0])
    assert "/me" in links
    assert "/help#ACCOUNT_FOLLOWED" in links


# a typed phone kept across an expired form and a ticket error


async def _relogin(env: PagesEnv, member_id: str) -> None:
    response = await env.login(member_id)
    assert response.status == 302
    assert response.headers["Location"] == "/bind/phone"


async def test_a_phone_typed_after_the_login_expired_is_kept_for_the_next_login(make_env: MakeEnv) -> None:
    clock = FakeClock()
    env = await make_env(clock=clock)
    await env.login("2021003")
    form = await env.form()
    clock.advance(31 * 60)
    response = await env.submit("138 0000 0003", form=form, follow=False)
    page = await response.text()
    assert response.status == 403
    assert "页面已过期" in page
    assert "您输入的手机号已为您保留" in page
    assert await env.store.get_binding("2021003") is None
    # A ticket error on the way back loses nothing.
    await env.start_login()
    ticket = await env.ticket("2021003")
    assert (await env.cas_return(ticket + "x")).status == 400
    await _relogin(env, "2021003")
    again = await (await env.client.get("/bind/phone")).text()
    assert PhoneForm.read(again).phone == "138 0000 0003"
    assert "已为您保留上次未提交成功时输入的手机号" in again
    assert "绑定成功" in await (await env.submit("138 0000 0003")).text()
    # Once submitted, it is no longer a draft.
    assert "已为您保留" not in await (await env.client.get("/bind/phone")).text()


async def test_a_phone_typed_into_a_form_of_an_earlier_login_is_kept(env: PagesEnv) -> None:
    await env.login("2021003")
    old = await env.form()
    await _relogin(env, "2021003")
    response = await env.submit("13800000013", form=old, follow=False)
    page = await response.text()
    assert response.status == 403
    assert "页面已过期" in page
    assert 'href="/bind/phone"' in page
    assert PhoneForm.read(await (await env.client.get("/bind/phone")).text()).phone == "13800000013"


async def test_another_students_draft_is_not_shown(make_env: MakeEnv) -> None:
    clock = FakeClock()
    env = await make_env(clock=clock)
    await env.login("2021003")
    form = await env.form()
    clock.advance(31 * 60)
    assert (await env.submit("13800000013", form=form, follow=False)).status == 403
    await _relogin(env, "2021001")
    assert (await env.form()).phone == "13800000001"


async def test_a_form_of_unknown_origin_keeps_nothing(env: PagesEnv) -> None:
    await env.login("2021001")
    form = await env.form()
    forged = PhoneForm(csrf="forged-token", form_id=form.form_id, phone="")
    response = await env.submit("13900000666", form=forged, follow=False)
    assert response.status == 403
    assert "请求无效" in await response.text()
    assert (await env.form()).phone == "13800000001"
    # Without any session, a submit sets nothing either.
    env.client.session.cookie_jar.clear()
    anonymous = await env.submit("13900000666", form=forged, follow=False)
    assert anonymous.status == 403
    assert "Set-Cookie" not in anonymous.headers


async def test_me_says_where_to_unfollow_a_followed_student(env: PagesEnv) -> None:
    await env.bind("2021001", "13800000001")
    await env.store.follow("2021001", "o-wechat", actor=Actor(who="wecom", source="test"))
    page = await (await env.client.get("/me")).text()
    assert "打开“上海工程技术大学”企业号（企业微信插件）" in page
