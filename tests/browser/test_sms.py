"""The SMS proof of a typed phone, walked in headless Chromium on the demo (SMS_VERIFY=changed, its
SMS emulator as the provider): the directory's phone needs no code; any other phone is written to
WeCom only after the code that reached it is entered in this login session."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import expect

from handlers.core.binding import AuditAction
from sandbox.demo import DEMO_SMS_TIMEOUT, DEMO_STUDENTS, DemoStudent
from tests.browser._support import Phone

pytestmark = pytest.mark.browser

NewPhone = Callable[[str], Phone]
STUDENT = {student.member_id: student for student in DEMO_STUDENTS}
ZHANGSAN: DemoStudent = STUDENT["2021001"]
SUNQI: DemoStudent = STUDENT["2021005"]
ZHAOLIU: DemoStudent = STUDENT["2021004"]
OWN_PHONE = "13800000005"
"""The number 孙七 types instead of the directory's (which 张三 holds too)."""


def _faults(phone: Phone, **switches: str) -> None:
    form: dict[str, str | float | bool] = dict(switches)
    response = phone.page.request.post(phone.demo.url("/sandbox/sms/_sandbox/faults"), form=form)
    assert response.ok, response.text()


def _ask_code(student: Phone, member_id: str, typed: str) -> None:
    """Log in, type a phone that is not the directory's, click 绑定: on to the code page."""
    student.login(member_id)
    student.page.fill("#phone", typed)
    student.page.locator("#bind-submit").click()
    expect(student.page.locator("[data-sms-sent]")).to_be_visible()


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def _bind_records(student: Phone, member_id: str) -> list[str]:
    return [r.source for r in student.demo.audit(member_id) if r.action == AuditAction.BIND]


def test_the_directorys_phone_needs_no_code(new_phone: NewPhone) -> None:
    zhangsan = new_phone("zhangsan")
    zhangsan.login(ZHANGSAN.member_id)
    zhangsan.page.locator("#bind-submit").click()
    assert zhangsan.outcome() == "bound"
    assert zhangsan.sms_messages(ZHANGSAN.directory_phone or "") == []
    assert not any("sms-verified" in source for source in _bind_records(zhangsan, ZHANGSAN.member_id))


def test_a_changed_phone_is_bound_after_the_right_code(new_phone: NewPhone) -> None:
    sunqi = new_phone("sunqi")
    page = sunqi.page
    _ask_code(sunqi, SUNQI.member_id, OWN_PHONE)
    sent = page.locator("[data-sms-sent]")
    expect(sent).to_contain_text("138****0005")
    expect(sent).to_contain_text("10 分钟内有效")
    # Nothing is written before the code: no binding record yet.
    assert _bind_records(sunqi, SUNQI.member_id) == []
    assert OWN_PHONE not in page.content()
    assert OWN_PHONE not in page.url
    sunqi.shot("code-page")
    # A thumb's field on a phone, as wide as the button under it (not the browser's small default).
    field, button = page.locator("#code").bounding_box(), page.locator("#code-submit").bounding_box()
    assert field is not None
    assert button is not None
    assert abs(field["width"] - button["width"]) < 1, (field, button)
    assert field["height"] >= 40, field
    [text] = sunqi.sms_messages(OWN_PHONE)
    assert text.startswith("【上海工程技术大学】")
    sunqi.enter_code(sunqi.sms_code(OWN_PHONE))
    assert sunqi.outcome() == "bound"
    expect(page.locator("#outcome")).to_contain_text("138****0005")
    [source] = _bind_records(sunqi, SUNQI.member_id)
    assert "sms-verified" in source


def test_a_wrong_code_then_the_right_one(new_phone: NewPhone) -> None:
    sunqi = new_phone("sunqi")
    page = sunqi.page
    _ask_code(sunqi, SUNQI.member_id, OWN_PHONE)
    code = sunqi.sms_code(OWN_PHONE)
    sunqi.enter_code(_wrong(code))
    expect(page.get_by_role("alert")).to_contain_text("验证码不正确")
    # The typed phone survives the wrong code, kept server-side: the page still names it, masked.
    expect(page.locator("[data-sms-sent]")).to_contain_text("138****0005")
    assert _bind_records(sunqi, SUNQI.member_id) == []
    sunqi.shot("wrong-code")
    sunqi.enter_code(code)
    assert sunqi.outcome() == "bound"


def test_five_wrong_codes_end_it_and_the_typed_phone_is_kept(new_phone: NewPhone) -> None:
    sunqi = new_phone("sunqi")
    page = sunqi.page
    _ask_code(sunqi, SUNQI.member_id, OWN_PHONE)
    code = sunqi.sms_code(OWN_PHONE)
    for _ in range(4):
        sunqi.enter_code(_wrong(code))
        expect(page.get_by_role("alert")).to_contain_text("验证码不正确")
    sunqi.enter_code(_wrong(code))
    expect(page.get_by_role("heading", name="验证码已失效")).to_be_visible()
    sunqi.shot("five-wrong")
    # The right code is no good any more either.
    sunqi.open("/bind/code")
    expect(page).to_have_url(sunqi.demo.url("/bind/phone"))
    expect(page.locator("#phone")).to_have_value(OWN_PHONE)
    assert _bind_records(sunqi, SUNQI.member_id) == []


def test_an_expired_code(new_phone: NewPhone) -> None:
    sunqi = new_phone("sunqi")
    page = sunqi.page
    _ask_code(sunqi, SUNQI.member_id, OWN_PHONE)
    code = sunqi.sms_code(OWN_PHONE)
    _faults(sunqi, advance="601")
    sunqi.enter_code(code)
    expect(page.get_by_role("heading", name="验证码已过期")).to_be_visible()
    sunqi.shot("expired")
    assert _bind_records(sunqi, SUNQI.member_id) == []


def test_a_resend_too_soon(new_phone: NewPhone) -> None:
    sunqi = new_phone("sunqi")
    page = sunqi.page
    _ask_code(sunqi, SUNQI.member_id, OWN_PHONE)
    resend = page.locator("#code-resend")
    expect(resend).to_be_disabled()
    expect(resend).to_contain_text("秒后可用")
    sunqi.shot("resend-disabled")
    # The button's state is not the guard: a forced resend is refused by the server's clock.
    resend.evaluate("button => button.removeAttribute('disabled')")
    resend.click()
    expect(page.get_by_role("alert")).to_contain_text("获取验证码过于频繁")
    assert len(sunqi.sms_messages(OWN_PHONE)) == 1
    # The way back keeps the number to change.
    page.locator("#code-change").click()
    expect(page).to_have_url(sunqi.demo.url("/bind/phone"))
    expect(page.locator("#phone")).to_have_value(OWN_PHONE)


@pytest.mark.parametrize(
    ("switches", "reads"),
    [
        ({"refusal": "INVALID_NUMBER"}, "号码无效"),
        ({"refusal": "DAILY_LIMIT"}, "今日发送次数已达上限"),
        ({"hang": str(DEMO_SMS_TIMEOUT + 2)}, "请稍后再试"),
    ],
    ids=["refuses-number", "refuses-daily", "times-out"],
)
def test_a_provider_that_refuses_or_times_out(new_phone: NewPhone, switches: dict[str, str], reads: str) -> None:
    sunqi = new_phone("sunqi")
    page = sunqi.page
    sunqi.login(SUNQI.member_id)
    _faults(sunqi, **switches)
    page.fill("#phone", OWN_PHONE)
    page.locator("#bind-submit").click()
    expect(page.get_by_role("alert")).to_contain_text(reads)
    # The typed phone stays in the form; nothing was written.
    expect(page.locator("#phone")).to_have_value(OWN_PHONE)
    assert _bind_records(sunqi, SUNQI.member_id) == []
    sunqi.shot("provider-refused")
    # No request left held in the emulator when the demo stops.
    _faults(sunqi, hang="0", refusal="")


def test_a_code_used_in_another_students_session(new_phone: NewPhone) -> None:
    sunqi = new_phone("sunqi")
    _ask_code(sunqi, SUNQI.member_id, OWN_PHONE)
    code = sunqi.sms_code(OWN_PHONE)
    zhaoliu = new_phone("zhaoliu")
    _ask_code(zhaoliu, ZHAOLIU.member_id, ZHAOLIU.wechat_phone)
    zhaoliu.enter_code(code)
    expect(zhaoliu.page.get_by_role("alert")).to_contain_text("验证码不正确")
    assert _bind_records(zhaoliu, ZHAOLIU.member_id) == []
    sunqi.enter_code(code)
    assert sunqi.outcome() == "bound"
