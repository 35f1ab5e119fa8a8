"""What a browser may send twice: a double tap on 绑定, the same form from two tabs, a CAS ticket."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import Request, expect

from handlers.core.binding import AuditAction
from sandbox.demo import DEMO_STUDENTS, DemoStudent
from tests.browser._support import Demo, Phone

pytestmark = pytest.mark.browser

NewPhone = Callable[[str], Phone]
STUDENT = {student.member_id: student for student in DEMO_STUDENTS}
ZHANGSAN: DemoStudent = STUDENT["2021001"]
WANGWU: DemoStudent = STUDENT["2021003"]


def _binds(demo: Demo, member_id: str) -> int:
    return sum(1 for record in demo.audit(member_id) if record.action == AuditAction.BIND)


def test_a_double_tap_on_bind_binds_once(new_phone: NewPhone, demo: Demo) -> None:
    wangwu = new_phone("wangwu")
    page = wangwu.page
    wangwu.login(WANGWU.member_id)
    # 王五's phone is not the directory's (it has none): 绑定 sends a code, and 验证并绑定 binds.
    page.locator("#bind-submit").click()
    expect(page.locator("[data-sms-sent]")).to_be_visible()
    page.fill("#code", wangwu.sms_code(WANGWU.cas_mobile or ""))
    # WeCom answers slowly, so that the second tap comes while the first submit is on its way:
    # two taps at once make one request only, as the browser keeps the last form submission. 王五
    # is not yet a member of the demo's WeCom: the write is user/create (user/update is never called).
    armed = page.request.post(
        demo.url("/sandbox/wecom/_sandbox/faults"), data={"delay": 1.0, "api": "user/create"}
    )
    assert armed.ok, armed.text()
    posts: list[str] = []
    page.on("request", lambda request: posts.append(request.url) if request.method == "POST" else None)
    box = page.locator("#code-submit").bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    # Taps on the screen, as a finger does: they wait for nothing, unlike a locator's click.
    with page.expect_request(lambda request: request.method == "POST"):
        page.touchscreen.tap(x, y)
    page.touchscreen.tap(x, y)
    assert wangwu.outcome() == "bound"
    assert posts == [demo.url("/bind/code")] * 2
    result_url = page.url
    wangwu.shot("double-tap-bound")
    assert _binds(demo, WANGWU.member_id) == 1
    # The result stays what it was.
    page.reload()
    assert wangwu.outcome() == "bound"
    assert page.url == result_url


def test_the_same_form_sent_twice_lands_on_one_result(new_phone: NewPhone, demo: Demo) -> None:
    # 张三's own directory phone: the phone form binds at once, with no SMS code.
    zhangsan = new_phone("zhangsan")
    first = zhangsan.page
    zhangsan.login(ZHANGSAN.member_id)
    # The same form (its CSRF token and form id) in a second tab: a resend, as after going back.
    second = zhangsan.context.new_page()
    second.goto(zhangsan.demo.url("/help"))
    form = first.locator("form").evaluate("form => form.outerHTML")
    second.locator("main").evaluate("(main, form) => { main.innerHTML = form }", form)
    for tab in (first, second):
        tab.fill("#phone", ZHANGSAN.directory_phone or "")
    first.locator("#bind-submit").click()
    assert zhangsan.outcome() == "bound"
    second.locator("#bind-submit").click()
    expect(second.locator("#outcome")).to_have_attribute("data-outcome", "bound")
    assert second.url == first.url
    zhangsan.shot("resent-form", second)
    assert _binds(demo, ZHANGSAN.member_id) == 1


def test_a_replayed_ticket_gets_a_clear_page_and_no_login(new_phone: NewPhone, demo: Demo) -> None:
    zhangsan = new_phone("zhangsan")
    page = zhangsan.page
    tickets: list[str] = []

    def note_ticket(request: Request) -> None:
        if request.url.startswith(demo.url("/bind/cas?state=")) and "&ticket=" in request.url:
            tickets.append(request.url)

    page.on("request", note_ticket)
    zhangsan.login(ZHANGSAN.member_id)
    assert len(tickets) == 1
    ticket_url = tickets[0]
    # The student's own browser, back on the CAS return (history, a reload): the login stands, and
    # the return leads on to the phone page (it said 请重新登录 though the session was fine).
    page.goto(ticket_url)
    assert page.url == demo.url("/bind/phone")
    expect(page.get_by_role("heading", name="请重新登录")).to_have_count(0)
    zhangsan.shot("ticket-replayed-own-browser")
    zhangsan.open("/me")
    expect(page.locator("dl.who")).to_contain_text(ZHANGSAN.name)
    # Another browser with the same URL gets no session at all.
    other = new_phone("other")
    other.page.goto(ticket_url)
    _expect_ticket_spent(other, ticket_url)
    other.shot("ticket-replayed")
    other.open("/me")
    expect(other.page.locator("#outcome")).to_contain_text("您尚未登录")


def _expect_ticket_spent(phone: Phone, ticket_url: str) -> None:
    page = phone.page
    assert page.url == ticket_url, "no redirect: not to the phone page, not to a second login"
    expect(page.locator("#outcome")).to_have_attribute("data-outcome", "message")
    expect(page.get_by_role("heading", name="登录凭据已失效")).to_be_visible()
    expect(page.get_by_text("每个凭据只能使用一次")).to_be_visible()
    expect(page.locator("#password")).to_have_count(0)
