"""Status first, in headless Chromium (issue 17): an existing organisation's members log in and are
routed by WeCom's status right after the CAS login: activated (1), disabled (2), not activated (4),
departed (5). The demo runs with `--wecom-members`, as a university rehearses its first morning."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.browser._support import ORGANISATION, Demo, Phone, Screenshots, start_demo
from tests.support.processes import free_port, stop, wait_healthy

pytestmark = pytest.mark.browser



@pytest.fixture
def org_demo(tmp_path: Path) -> Iterator[Demo]:
    """The demo with `--wecom-members FILE`: the organisation above in WeCom, the directory and CAS."""
    members = tmp_path / "organisation.csv"
    members.write_text(ORGANISATION, encoding="utf-8")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    data_dir = tmp_path / "demo"
    process = start_demo(port, data_dir, "--wecom-members", str(members))
    try:
        wait_healthy(base, process)
        yield Demo(base=base, data_dir=data_dir, process=process)
    finally:
        stop(process)


@pytest.fixture
def org_phone(browser: Browser, org_demo: Demo, shots: Screenshots) -> Iterator[Callable[[str], Phone]]:
    phones: list[Phone] = []

    def make(who: str) -> Phone:
        phone = Phone(browser, org_demo, shots, who)
        phones.append(phone)
        return phone

    yield make
    for phone in phones:
        phone.close()


def test_an_activated_member_is_told_it_has_joined(org_phone: Callable[[str], Phone]) -> None:
    chen = org_phone("chenyi")
    chen.login("2019001")
    page = chen.page
    expect(page.locator("#outcome")).to_have_attribute("data-outcome", "joined")
    expect(page.get_by_role("heading", name="您的账号已加入企业号")).to_be_visible()
    expect(page.get_by_text("无需再绑定")).to_be_visible()
    expect(page.locator("#phone")).to_have_count(0)
    expect(page.locator("#ACCOUNT_FOLLOWED")).to_be_visible()  # "that was not me": the guide's 2.2
    chen.shot("joined")
    chen.open("/me")
    expect(page.locator("dl.who .state")).to_have_text("已加入")
    chen.shot("me-joined")
    assert [r.action for r in chen.demo.audit("2019001")] == ["joined"]


def test_a_disabled_member_is_told_whom_to_ask(org_phone: Callable[[str], Phone]) -> None:
    huang = org_phone("huangsan")
    huang.login("2019003")
    page = huang.page
    expect(page.locator("#outcome")).to_have_attribute("data-outcome", "disabled")
    expect(page.get_by_role("heading", name="您的账号已停用")).to_be_visible()
    expect(page.locator("[data-help-contact]")).to_contain_text("请联系")
    expect(page.locator("#phone")).to_have_count(0)
    huang.shot("disabled")


def test_a_member_not_activated_binds_on_the_phone_page(org_phone: Callable[[str], Phone]) -> None:
    zhou = org_phone("zhousi")
    zhou.login("2019004")
    expect(zhou.page.locator("#phone")).to_be_visible()
    zhou.shot("phone-page")
    assert zhou.submit_phone("13900000004") == "bound"
    zhou.shot("bound")


def test_a_departed_member_is_told_whom_to_ask(org_phone: Callable[[str], Phone]) -> None:
    wu = org_phone("wuwu")
    wu.login("2019005")
    page = wu.page
    expect(page.locator("#outcome")).to_have_attribute("data-outcome", "quit")
    expect(page.get_by_role("heading", name="您的账号已退出企业")).to_be_visible()
    expect(page.locator("[data-help-contact]")).to_contain_text("请联系")
    expect(page.locator("#phone")).to_have_count(0)
    wu.shot("quit")
