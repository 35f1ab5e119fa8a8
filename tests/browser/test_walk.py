"""The guide's steps 1 to 5 in headless Chromium, through the demo, as its start page tells a newcomer."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import expect

from callback_service.web.pages.views import PHONE_FORMAT_ERROR
from handlers.core.guide import GUIDE, ErrorCode
from handlers.core.phone import mask_phone
from sandbox.demo import DEMO_OUTSIDER, DEMO_PASSWORD, DEMO_STUDENTS, DEMO_VISITOR_NAME, DemoStudent
from tests.browser._support import Demo, Phone

pytestmark = pytest.mark.browser

NewPhone = Callable[[str], Phone]
STUDENT = {student.member_id: student for student in DEMO_STUDENTS}
ZHANGSAN: DemoStudent = STUDENT["2021001"]
LISI: DemoStudent = STUDENT["2021002"]
WANGWU: DemoStudent = STUDENT["2021003"]
ZHAOLIU: DemoStudent = STUDENT["2021004"]


def test_the_start_page_lists_the_urls_the_accounts_and_what_to_click(
    new_phone: NewPhone, demo: Demo
) -> None:
    newcomer = new_phone("newcomer")
    page = newcomer.page
    newcomer.open("/")
    for path in ("/bind", "/me", "/help", "/sandbox/cas/login", "/sandbox/wecom/wechat",
                 "/sandbox/wecom/follow", "/sandbox/wecom/unfollow"):
        expect(page.locator(f'#urls a[href="{demo.url(path)}"]')).to_be_visible()
    expect(page.locator("#accounts")).to_contain_text(DEMO_PASSWORD)
    for student in DEMO_STUDENTS:
        row = page.locator(f'tr[data-student="{student.member_id}"]')
        expect(row).to_contain_text(student.name)
        expect(row).to_contain_text(student.walks)
    expect(page.locator('tr[data-student="visitor"]')).to_contain_text(DEMO_VISITOR_NAME)
    expect(page.locator(f'tr[data-student="{DEMO_OUTSIDER[0]}"]')).to_contain_text("学校通讯录和企业号通讯录中都没有")
    for code in ErrorCode:
        title = page.locator(f'[data-scenario="{code.value}"] h3')
        expect(title).to_contain_text(GUIDE[code].section + GUIDE[code].title)
    newcomer.shot("start")
    # Read on a phone, as its own text advises: nothing wider than the 390 px viewport.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.locator("#urls").get_by_role("link", name="/bind", exact=True).click()
    expect(page.locator("#username")).to_be_visible()


def test_a_student_nobody_knows_is_told_at_once_whom_to_ask(new_phone: NewPhone, demo: Demo) -> None:
    member_id, name = DEMO_OUTSIDER
    outsider = new_phone("outsider")
    outsider.login(member_id)
    page = outsider.page
    expect(page.locator("#outcome")).to_have_attribute("data-outcome", "unknown")
    expect(page.locator("#outcome")).to_contain_text(f"学校通讯录和“企业号通讯录”中都没有学号 {member_id} 的信息")
    expect(page.locator("[data-help-contact]")).to_contain_text("请联系")
    expect(page.locator("#phone")).to_have_count(0)
    outsider.shot("unknown")
    # Nothing was written about them, and /me says the same, with no way on to a phone page.
    assert demo.audit(member_id) == []
    outsider.open("/me")
    expect(page.locator("dl.who")).to_contain_text(name)
    expect(page.locator("dl.who")).to_contain_text("未找到通讯录信息")
    expect(page.locator("[data-help-contact]")).to_contain_text("请联系")
    expect(page.get_by_role("link", name="绑定手机号")).to_have_count(0)
    outsider.shot("me")


def test_steps_1_to_5_with_a_direct_follow(new_phone: NewPhone) -> None:
    zhangsan = new_phone("zhangsan")
    page = zhangsan.page
    zhangsan.login(ZHANGSAN.member_id, shot=True)
    # Figure 1-3: the directory's phone, pre-filled.
    assert ZHANGSAN.directory_phone is not None
    expect(page.locator("#phone")).to_have_value(ZHANGSAN.directory_phone)
    expect(page.locator("dl.who")).to_contain_text(ZHANGSAN.name)
    expect(page.locator("dl.who")).to_contain_text(ZHANGSAN.department)
    zhangsan.shot("phone-prefilled")
    assert zhangsan.submit_phone() == "bound"
    expect(page.locator("#outcome")).to_contain_text(mask_phone(ZHANGSAN.directory_phone))
    expect(page.get_by_text("免验证，直接关注")).to_be_visible()
    zhangsan.expect_image_shown("企业号关注二维码")
    zhangsan.shot("bound")
    # Step 4: the follow QR. The emulated WeChat app asks whose WeChat this phone is, once.
    page.get_by_role("link", name="打开关注页面").click()
    zhangsan.shot("wechat-pick")
    zhangsan.use_wechat(ZHANGSAN.name)
    zhangsan.expect_image_shown("关注二维码")
    zhangsan.shot("follow")
    zhangsan.press_follow()
    # Figure 1-4: the WeChat's phone is the bound one, so no verification.
    zhangsan.expect_followed(ZHANGSAN.name)
    zhangsan.shot("followed")
    # Step 5: WeCom pushes subscribe; the service records the follow.
    zhangsan.wait_for_state("已关注")
    expect(page.locator("dl.who")).to_contain_text(mask_phone(ZHANGSAN.directory_phone))
    assert ZHANGSAN.directory_phone not in page.content()
    zhangsan.shot("me-followed")


def test_steps_1_to_5_with_sms_verification(new_phone: NewPhone) -> None:
    lisi = new_phone("lisi")
    page = lisi.page
    assert LISI.directory_phone is not None
    lisi.login(LISI.member_id)
    expect(page.locator("#phone")).to_have_value(LISI.directory_phone)
    assert lisi.submit_phone() == "bound"
    lisi.shot("bound")
    page.get_by_role("link", name="打开关注页面").click()
    lisi.use_wechat(LISI.name)
    lisi.press_follow()
    # Figure 1-5: the WeChat's phone is another one, so WeCom asks who it is.
    expect(page.locator("[data-step=verify]")).to_be_visible()
    lisi.shot("verify")
    lisi.verify_phone(LISI.directory_phone)
    expect(page.locator("[data-step=code]")).to_contain_text(mask_phone(LISI.directory_phone))
    lisi.shot("sms-code")
    lisi.enter_sms_code()
    lisi.expect_followed(LISI.name)
    lisi.shot("followed")
    lisi.wait_for_state("已关注")
    expect(page.locator("dl.who")).to_contain_text(mask_phone(LISI.directory_phone))
    lisi.shot("me-followed")


def test_a_changed_phone_is_bound_in_place_of_the_prefilled_one(new_phone: NewPhone) -> None:
    wangwu = new_phone("wangwu")
    page = wangwu.page
    wangwu.login(WANGWU.member_id)
    # No phone in the directory: CAS's mobile attribute fills the field.
    assert WANGWU.directory_phone is None
    assert WANGWU.cas_mobile is not None
    expect(page.locator("#phone")).to_have_value(WANGWU.cas_mobile)
    page.fill("#phone", "+86 139-0000-0003")
    wangwu.shot("phone-changed")
    assert wangwu.submit_phone() == "bound"
    expect(page.locator("#outcome")).to_contain_text("139****0003")
    wangwu.shot("bound-changed")
    wangwu.wait_for_state("已绑定，未关注")
    expect(page.locator("dl.who")).to_contain_text("139****0003")
    wangwu.shot("me-bound")


def test_an_empty_field_is_typed_and_a_wrong_format_is_explained(new_phone: NewPhone) -> None:
    zhaoliu = new_phone("zhaoliu")
    page = zhaoliu.page
    zhaoliu.login(ZHAOLIU.member_id)
    expect(page.locator("#phone")).to_have_value("")
    zhaoliu.shot("phone-empty")
    page.fill("#phone", "12345")
    page.locator("#bind-submit").click()
    expect(page.get_by_role("alert")).to_have_text(PHONE_FORMAT_ERROR)
    expect(page.locator("#phone")).to_have_value("12345")
    zhaoliu.shot("phone-format-error")
    assert zhaoliu.submit_phone("138 0000 0004") == "bound"
    expect(page.locator("#outcome")).to_contain_text("138****0004")


def test_logging_out_of_both_lets_another_student_log_in(new_phone: NewPhone, demo: Demo) -> None:
    shared = new_phone("shared")
    page = shared.page
    shared.login(ZHANGSAN.member_id)
    shared.open("/me")
    page.get_by_role("button", name="退出登录").click()
    expect(page.locator("#outcome")).to_contain_text("您已退出登录")
    shared.shot("logged-out")
    # Without the CAS logout, its single sign-on would log 张三 in again at /bind.
    page.get_by_role("link", name="退出统一身份认证").click()
    expect(page.get_by_text("您已安全退出统一身份认证")).to_be_visible()
    page.get_by_role("link", name="返回应用").click()
    expect(page.locator("#username")).to_have_value("")
    shared.login(LISI.member_id)
    expect(page.locator("dl.who")).to_contain_text(LISI.name)


def test_logging_out_of_cas_ends_the_session_here(new_phone: NewPhone, demo: Demo) -> None:
    shared = new_phone("shared")
    page = shared.page
    shared.login(ZHANGSAN.member_id)
    # Straight to the unified identity's logout: its single logout reaches the service.
    shared.open("/sandbox/cas/logout")
    expect(page.get_by_text("您已安全退出统一身份认证")).to_be_visible()
    shared.open("/me")
    expect(page.locator("#outcome")).to_contain_text("您尚未登录")
    shared.shot("cas-single-logout")
