"""Pages a student reaches by mistake, in headless Chromium: a trailing slash, a wrong address, GET
/logout, a body over the limit; each a Chinese page of the site, on a phone's screen, with a way on;
and the guide's steps on /help, reached from the errors that cite them."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from handlers.core.guide import ErrorCode
from sandbox.demo import DEMO_STUDENTS
from tests.browser._support import Phone

pytestmark = pytest.mark.browser

NewPhone = Callable[[str], Phone]
ZHANGSAN = next(student for student in DEMO_STUDENTS if student.member_id == "2021001")


def _expect_our_page(page: Page, heading: str) -> None:
    """A page of the site: its header, the heading in Chinese, no English error, fits a phone's width."""
    expect(page.locator("header .school")).to_contain_text("企业号")
    expect(page.get_by_role("heading", name=heading)).to_be_visible()
    body = page.locator("body").inner_text()
    for english in ("Not Found", "Method Not Allowed", "Request Entity Too Large"):
        assert english not in body
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_a_trailing_slash_and_a_wrong_address(new_phone: NewPhone) -> None:
    student = new_phone("student")
    page = student.page
    # /bind/ as typed by hand: on to the CAS login, as /bind does.
    student.open("/bind/")
    expect(page.locator("#username")).to_be_visible()
    student.open("/help/")
    expect(page).to_have_url(student.demo.url("/help"))
    student.open("/nonexistent")
    _expect_our_page(page, "页面不存在")
    student.shot("404")
    page.get_by_role("link", name="重新开始认证绑定").click()
    expect(page.locator("#username")).to_be_visible()


def test_get_logout_and_a_body_over_the_limit(new_phone: NewPhone) -> None:
    student = new_phone("zhangsan")
    page = student.page
    student.open("/logout")
    _expect_our_page(page, "您尚未登录")
    student.login(ZHANGSAN.member_id)
    # A form's phone of 2 MB (past the field's maxlength, as a script or a broken keyboard could).
    page.locator("#phone").evaluate("input => { input.removeAttribute('maxlength'); input.value = '1'.repeat(2 << 20) }")
    page.locator("#bind-submit").click()
    _expect_our_page(page, "提交的内容过长")
    student.shot("413")
    page.get_by_role("link", name="返回手机号绑定页面").click()
    expect(page.locator("#phone")).to_have_value(ZHANGSAN.directory_phone or "")
    # A kept or typed /logout: a button, not a bare error.
    student.open("/logout")
    _expect_our_page(page, "退出登录")
    student.shot("logout-get")
    page.get_by_role("button", name="退出登录").click()
    expect(page.locator("#outcome")).to_contain_text("您已退出登录")


def test_the_steps_that_the_errors_cite_are_on_help(new_phone: NewPhone) -> None:
    student = new_phone("student")
    page = student.page
    student.open(f"/help#{ErrorCode.PHONE_VERIFIED_BY_OTHER}")
    entry = page.locator(f"#{ErrorCode.PHONE_VERIFIED_BY_OTHER}")
    entry.get_by_role("link", name="查看 1.3 关注企业号的具体步骤：步骤3").click()
    expect(page.locator("#step-3")).to_be_in_viewport()
    expect(page.locator("#step-3")).to_contain_text("进行认证绑定")
    student.shot("help-step-3")
    page.locator(f"#{ErrorCode.PHONE_NOT_IN_CONTACTS}").get_by_role("link", name="原因二：去认证绑定").click()
    expect(page.locator("#username")).to_be_visible()
    student.open("/help#rules")
    expect(page.locator("#rules")).to_be_in_viewport()
    expect(page.locator("#rules li")).to_have_count(3)
