"""The four errors of the guide's chapter 2, each reached in headless Chromium and shown with its text."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import expect

from handlers.core.guide import ErrorCode
from handlers.core.phone import mask_phone
from sandbox.demo import DEMO_STUDENTS, DEMO_VISITOR_NAME, DEMO_VISITOR_PHONE, DemoStudent
from tests.browser._support import Phone, expect_guide_entry, expect_wecom_refusal

pytestmark = pytest.mark.browser

NewPhone = Callable[[str], Phone]
STUDENT = {student.member_id: student for student in DEMO_STUDENTS}
ZHANGSAN: DemoStudent = STUDENT["2021001"]
LISI: DemoStudent = STUDENT["2021002"]
SUNQI: DemoStudent = STUDENT["2021005"]
ZHAOLIU: DemoStudent = STUDENT["2021004"]
OTHER_PHONE = "13800000009"


def _bind_and_follow_directly(phone: Phone, student: DemoStudent) -> None:
    phone.bind(student.member_id)
    phone.scan_follow_qr(student.name)
    phone.press_follow()
    phone.expect_followed(student.name)
    phone.wait_for_state("已关注")


def test_2_1_a_phone_bound_by_another_member(new_phone: NewPhone) -> None:
    new_phone("zhangsan").bind(ZHANGSAN.member_id)
    sunqi = new_phone("sunqi")
    page = sunqi.page
    sunqi.login(SUNQI.member_id)
    assert SUNQI.directory_phone is not None
    assert SUNQI.directory_phone == ZHANGSAN.directory_phone
    expect(page.locator("#phone")).to_have_value(SUNQI.directory_phone)
    sunqi.shot("phone-prefilled-taken")
    assert sunqi.submit_phone() == ErrorCode.PHONE_TAKEN
    expect_guide_entry(page, ErrorCode.PHONE_TAKEN)
    taken = mask_phone(SUNQI.directory_phone)
    expect(page.locator("[data-refused-phone]")).to_contain_text(f"您提交的手机号 {taken} 已被其他成员绑定")
    sunqi.shot("2.1-phone-taken")
    # The remedy: another phone. The form does not offer the taken one again, and says why.
    page.get_by_role("link", name="重新绑定").click()
    expect(page).to_have_url(sunqi.demo.url("/bind/phone"))
    expect(page.locator("#phone")).to_have_value("")
    expect(page.locator("[data-source=refused]")).to_contain_text(f"手机号 {taken} 已被其他成员绑定")
    sunqi.shot("2.1-retry-empty")
    assert sunqi.submit_phone("+86 138-0000-0005") == "bound"
    expect(page.locator("#outcome")).to_contain_text("138****0005")
    sunqi.shot("bound-other-phone")


def test_2_2_for_a_member_activated_through_the_wecom_app(new_phone: NewPhone) -> None:
    # No follow, no subscribe: only WeCom knows the member is activated, and the flow asks it.
    zhaoliu = new_phone("zhaoliu")
    page = zhaoliu.page
    zhaoliu.bind(ZHAOLIU.member_id, ZHAOLIU.wechat_phone)
    zhaoliu.open("/sandbox/wecom/app-login")
    page.locator("#userid").fill(ZHAOLIU.member_id)
    page.get_by_role("button", name="登录企业微信 App").click()
    expect(page.locator(f'[data-activated="{ZHAOLIU.member_id}"]')).to_be_visible()
    zhaoliu.shot("activated-in-app")
    # Status first: the phone page is not offered; the page says the account has joined, with 2.2.
    zhaoliu.open("/bind/phone")
    assert zhaoliu.outcome() == "joined"
    expect(page.get_by_text("无需再绑定")).to_be_visible()
    expect(page.locator("#phone")).to_have_count(0)
    expect_guide_entry(page, ErrorCode.ACCOUNT_FOLLOWED)
    expect(page.get_by_text("企业微信 → 我 → 个人信息 → 手机", exact=False).first).to_be_visible()
    zhaoliu.shot("2.2-activated-in-app")
    zhaoliu.open("/me")
    expect(page.locator("dl.who .state")).to_have_text("已加入")


def test_2_2_a_followed_member_binding_another_phone(new_phone: NewPhone) -> None:
    zhangsan = new_phone("zhangsan")
    page = zhangsan.page
    _bind_and_follow_directly(zhangsan, ZHANGSAN)
    # A member who follows has joined: no phone page, the 2.2 remedy to change the phone.
    zhangsan.open("/bind/phone")
    assert zhangsan.outcome() == "joined"
    expect(page.locator("#phone")).to_have_count(0)
    expect_guide_entry(page, ErrorCode.ACCOUNT_FOLLOWED)
    # Where 取消关注 is, and a way to check the state.
    expect(page.locator("[data-unfollow]")).to_contain_text("企业微信插件")
    expect(page.locator("[data-unfollow]")).to_contain_text("选择“取消关注”")
    zhangsan.shot("2.2-account-followed")
    page.get_by_role("link", name="查看我的绑定").first.click()
    expect(page.locator("dl.who .state")).to_have_text("已关注")
    # The remedy: unfollow with the WeChat that follows, then bind again.
    zhangsan.open("/sandbox/wecom/unfollow")
    page.get_by_role("button", name="取消关注").click()
    expect(page.locator("[data-result=unfollowed]")).to_be_visible()
    zhangsan.shot("unfollowed")
    zhangsan.wait_for_state("已绑定，未关注")
    zhangsan.open("/bind/phone")
    assert zhangsan.submit_phone(OTHER_PHONE) == "bound"
    expect(page.locator("#outcome")).to_contain_text(mask_phone(OTHER_PHONE))


def test_2_3_a_phone_in_no_member_record(new_phone: NewPhone) -> None:
    visitor = new_phone("visitor")
    page = visitor.page
    visitor.scan_follow_qr(DEMO_VISITOR_NAME)
    visitor.press_follow()
    visitor.shot("verify")
    visitor.verify_phone(DEMO_VISITOR_PHONE)
    expect_wecom_refusal(page, ErrorCode.PHONE_NOT_IN_CONTACTS)
    visitor.shot("2.3-not-in-contacts")


def test_2_3_when_the_phone_typed_is_not_the_bound_one(new_phone: NewPhone) -> None:
    lisi = new_phone("lisi")
    page = lisi.page
    lisi.bind(LISI.member_id)
    lisi.scan_follow_qr(LISI.name)
    lisi.press_follow()
    # 原因一: the WeChat's own phone, not the one bound.
    lisi.verify_phone(LISI.wechat_phone)
    expect_wecom_refusal(page, ErrorCode.PHONE_NOT_IN_CONTACTS)
    # 重新验证 with the bound phone follows after all.
    page.get_by_role("link", name="重新验证").click()
    assert LISI.directory_phone is not None
    lisi.verify_phone(LISI.directory_phone)
    lisi.enter_sms_code()
    lisi.expect_followed(LISI.name)


def test_2_4_a_phone_verified_by_another_member(new_phone: NewPhone) -> None:
    _bind_and_follow_directly(new_phone("zhangsan"), ZHANGSAN)
    visitor = new_phone("visitor")
    page = visitor.page
    visitor.scan_follow_qr(DEMO_VISITOR_NAME)
    visitor.press_follow()
    assert ZHANGSAN.directory_phone is not None
    visitor.verify_phone(ZHANGSAN.directory_phone)
    expect_wecom_refusal(page, ErrorCode.PHONE_VERIFIED_BY_OTHER)
    visitor.shot("2.4-verified-by-other")


def test_help_shows_all_four(new_phone: NewPhone) -> None:
    student = new_phone("student")
    student.open("/help")
    for code in ErrorCode:
        expect(student.page.locator(f"#{code.value}")).to_be_visible()
        expect_guide_entry(student.page, code)
    student.shot("help")
