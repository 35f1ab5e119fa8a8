"""The administrators' console in headless Chromium, through the demo: an administrator follows a
campaign and resolves a 2.1 dispute; a student and an outsider who try /admin paths get 404."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable

import pytest
from playwright.sync_api import FilePayload, Page, ViewportSize, expect

from sandbox.demo import DEMO_ADMIN, DEMO_PASSWORD, DEMO_STUDENTS
from tests.browser._support import Demo, Phone

pytestmark = pytest.mark.browser

NewPhone = Callable[[str], Phone]
STUDENT = {student.member_id: student for student in DEMO_STUDENTS}
FULL_PHONE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
DESKTOP = ViewportSize(width=1280, height=900)
PHONE = ViewportSize(width=390, height=844)
ADMIN_PATHS = ("/admin", "/admin/stuck", "/admin/students/2021001", "/admin/export", "/admin/directory")


def cas_login(page: Page, member_id: str) -> None:
    """Fill the emulated unified identity login and submit."""
    expect(page.locator("#username")).to_be_visible()
    page.fill("#username", member_id)
    page.fill("#password", DEMO_PASSWORD)
    page.get_by_role("button", name="登录").click()


def _csv(name: str, text: str) -> FilePayload:
    return FilePayload(name=name, mimeType="text/csv", buffer=text.encode())


def count(page: Page, name: str) -> int:
    """A number of the overview."""
    return int(page.locator(f'[data-count="{name}"]').inner_text())


def test_an_administrator_follows_the_campaign_and_resolves_a_2_1_dispute(
    new_phone: NewPhone, demo: Demo
) -> None:
    # The campaign so far: 张三 binds and follows; 孙七, whose directory phone is 张三's, is refused 2.1.
    zhangsan = new_phone("zhangsan")
    zhangsan.bind("2021001")
    zhangsan.page.get_by_role("link", name="打开关注页面").click()
    zhangsan.use_wechat(STUDENT["2021001"].name)
    zhangsan.press_follow()
    zhangsan.expect_followed(STUDENT["2021001"].name)
    zhangsan.wait_for_state("已关注")
    lisi = new_phone("lisi")
    lisi.bind("2021002")
    sunqi = new_phone("sunqi")
    sunqi.login("2021005")
    assert sunqi.submit_phone() == "PHONE_TAKEN"

    admin = new_phone("admin")
    page = admin.page
    page.set_viewport_size(DESKTOP)
    admin.open("/admin")
    cas_login(page, DEMO_ADMIN)
    expect(page).to_have_url(demo.url("/admin"))
    expect(page.locator("#overall h1")).to_have_text("绑定进度概览")
    assert count(page, "students") == len(DEMO_STUDENTS)
    assert count(page, "bound") == 2
    assert count(page, "joined") == 1
    assert count(page, "refused") == 1
    expect(page.locator("svg.chart").first).to_be_visible()
    expect(page.locator("#activity")).to_contain_text("绑定 2")
    assert not FULL_PHONE.search(page.content())
    admin.shot("dashboard-desktop")
    page.set_viewport_size(PHONE)
    admin.shot("dashboard-phone")
    page.set_viewport_size(DESKTOP)

    # Who is stuck: 孙七 on 2.1, and who holds the phone.
    page.get_by_role("link", name="待处理").click()
    row = page.locator('tr[data-member="2021005"]')
    expect(row).to_contain_text("138****0001")
    expect(row).to_contain_text("2021001")
    expect(row).to_contain_text(STUDENT["2021001"].name)
    admin.shot("stuck")

    # One student: search by name, masked until an explicit reveal.
    page.get_by_role("link", name="查找学生").click()
    page.fill("#q", STUDENT["2021002"].name)
    page.get_by_role("button", name="查找").click()
    page.get_by_role("link", name="2021002").click()
    expect(page.locator('[data-phone="binding"]')).to_have_text("138****0002")
    expect(page.locator("#live-status")).to_have_text("未激活")
    admin.shot("student")
    page.locator("#reveal").click()
    expect(page.locator("#revealed")).to_be_visible()
    expect(page.locator('[data-phone="binding"]')).to_have_text("13800000002")
    admin.shot("student-revealed")
    assert any(r.action == "reveal" and r.who == f"admin:{DEMO_ADMIN}" for r in demo.audit("2021002"))

    # Release, with confirmation and a reason; the console says what it did.
    page.locator("#release").click()
    expect(page.locator("#confirm")).to_be_visible()
    page.fill("#reason", "学生申请更换手机号，工单 7")
    admin.shot("release-confirm")
    page.get_by_role("button", name="确定解除绑定").click()
    expect(page.locator("#outcome")).to_contain_text("已解除 2021002 的绑定")
    expect(page.locator("#outcome")).to_contain_text("138****0002")
    expect(page.locator("#outcome")).to_contain_text("企业微信")  # and what became of the phone there
    admin.shot("released")
    [release] = [r for r in demo.audit("2021002") if r.action == "delete"]
    assert release.who == f"admin:{DEMO_ADMIN}"
    assert "工单 7" in release.source

    # The list to chase: everyone who has not joined, as Excel-ready CSV.
    page.get_by_role("link", name="催办名单").click()
    with page.expect_download() as download:
        page.get_by_role("link", name=re.compile("^下载全部")).click()
    body = download.value.path().read_bytes()
    assert body.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(body[3:].decode("utf-8"))))
    assert rows[0] == ["学号", "姓名", "院系", "状态", "最近错误"]
    assert {row[0] for row in rows[1:]} == {s.member_id for s in DEMO_STUDENTS} - {"2021001"}
    assert not FULL_PHONE.search(body.decode("utf-8"))

    # The directory: a file with a bad line is refused by line; a good one previews, then imports.
    page.get_by_role("link", name="学校通讯录").click()
    bad = "学号,姓名,院系,手机\n2022001,新生甲,管理学院,13900000001\n2022002,新生乙,管理学院,123\n"
    page.set_input_files("#file", files=[_csv("bad.csv", bad)])
    page.get_by_role("button", name="上传并预览").click()
    expect(page.locator("#problems")).to_contain_text("第 3 行")
    admin.shot("upload-problems")
    page.get_by_role("link", name="重新上传").click()
    # The good file as Excel's "CSV (逗号分隔)" writes it on a Chinese Windows: GB18030, said so.
    good = "学号,姓名,院系,手机\n2022001,新生甲,管理学院,13900000001\n2022002,新生乙,管理学院,\n"
    page.set_input_files("#file", files=[FilePayload(name="good.csv", mimeType="text/csv", buffer=good.encode("gb18030"))])
    page.select_option("#encoding", "gb18030")
    admin.shot("upload-form")
    page.get_by_role("button", name="上传并预览").click()
    expect(page.locator("#preview")).to_contain_text("可以导入 2 条记录")
    expect(page.locator("#preview")).to_contain_text("编码 GB18030")
    expect(page.locator("#preview")).to_contain_text("新生乙")
    assert not FULL_PHONE.search(page.content())
    admin.shot("upload-preview")
    page.locator("#confirm-import").click()
    expect(page.locator("#outcome")).to_contain_text("已导入 2 条记录")
    page.get_by_role("link", name="概览").click()
    assert count(page, "students") == len(DEMO_STUDENTS) + 2


def test_a_student_and_an_outsider_get_404_on_every_admin_path(new_phone: NewPhone, demo: Demo) -> None:
    # A student logged in to the students' pages.
    zhangsan = new_phone("zhangsan")
    zhangsan.login("2021001")
    for path in ADMIN_PATHS:
        response = zhangsan.page.goto(demo.url(path))
        assert response is not None
        assert response.status == 404, path
        expect(zhangsan.page.locator("#outcome h1")).to_have_text("页面不存在")
    zhangsan.shot("admin-404")
    # An outsider to the console: a CAS account that is not listed, logged in through the console's door.
    outsider = new_phone("outsider")
    outsider.open("/admin/stuck")
    cas_login(outsider.page, "2021004")
    expect(outsider.page.locator("#outcome h1")).to_have_text("页面不存在")
    for path in ADMIN_PATHS:
        response = outsider.page.goto(demo.url(path))
        assert response is not None
        assert response.status == 404, path
    # Nothing in either browser is the console's.
    for person in (zhangsan, outsider):
        assert not [c for c in person.context.cookies() if c["name"] == "wecom_bind_admin"]
