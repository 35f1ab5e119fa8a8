"""The console's pages and actions, for a listed administrator, over the real app, the CAS and WeCom
emulators and a SQLite file: the overview's counts against the store, who is stuck, one student
(reveal, release, refresh, invite), the lists to chase and the directory upload."""

from __future__ import annotations

import csv
import io
import re
import time

import aiohttp
import pytest

from handlers.core.binding import Actor, AuditAction, BindingState, DirectoryEntry
from handlers.core.member import MemberSeen, MemberStatus
from handlers.core.phone import Phone
from tests.admin.conftest import MakeEnv
from tests.admin.support import ADMIN, admin_login, count_of, csrf_of
from tests.pages.support import PagesEnv

FULL_PHONE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
WECOM = Actor(who="wecom", source="callback")


@pytest.fixture
async def console(make_env: MakeEnv) -> PagesEnv:
    """The pages' world with ADMIN listed, logged in to the console (and to no student's session)."""
    env = await make_env(admins=ADMIN)
    assert (await admin_login(env)).status == 200
    return env


async def _page(env: PagesEnv, path: str) -> str:
    response = await env.client.get(path, allow_redirects=False)
    assert response.status == 200, (path, response.status)
    return await response.text()


async def _post(env: PagesEnv, path: str, data: dict[str, str], *, page: str = "/admin") -> tuple[int, str]:
    token = csrf_of(await _page(env, page))
    response = await env.client.post(path, data={"csrf": token, **data}, allow_redirects=False)
    return response.status, await response.text()


async def _bind(env: PagesEnv, member_id: str, phone: str) -> str:
    """A student binds on the pages, in a browser of their own (the console's cookie stays aside)."""
    kept = env.client.session.cookie_jar
    page = await env.bind(member_id, phone)
    jar = [m for m in kept if m.key == "wecom_bind_session"]
    kept.clear(lambda morsel: morsel.key == "wecom_bind_session")
    assert jar
    return page


async def test_the_overview_counts_what_the_store_holds_after_a_campaign(console: PagesEnv) -> None:
    env = console
    # A scripted campaign: two bind on the pages (written to the WeCom emulator), one of them follows;
    # one is refused 2.1; WeCom says one more has activated through its app, and one is disabled.
    await _bind(env, "2021001", "13800000001")
    await _bind(env, "2021004", "13800000004")
    await env.store.follow("2021001", "openid-1", actor=WECOM)
    await _bind(env, "2021002", "13800000001")  # 2.1: 张三 holds it
    # WeCom's word, as `wecom-bind sync` records it (later than what the logins saw).
    later = time.time() + 60
    await env.store.record_members(
        [
            MemberSeen("2021003", MemberStatus.ACTIVATED, later, "sync"),
            MemberSeen("2021002", MemberStatus.NOT_ACTIVATED, later, "sync"),
            MemberSeen("2021001", MemberStatus.ACTIVATED, later, "sync"),
        ]
    )
    page = await _page(env, "/admin")

    directory = await env.store.directory_list()
    bindings = {b.member_id: b for b in await env.store.list_bindings()}
    seen = {s.member_id: s for s in await env.store.list_members_seen()}
    in_directory = {entry.member_id for entry in directory}
    followed = {m for m, b in bindings.items() if b.state is BindingState.FOLLOWED}
    activated = {m for m, s in seen.items() if s.status is MemberStatus.ACTIVATED}
    assert count_of(page, "students") == len(directory) == 4
    assert count_of(page, "members") == len(in_directory & set(seen)) == 3
    assert count_of(page, "joined") == len(in_directory & (followed | activated)) == 2
    bound = {m for m, b in bindings.items() if b.state is not BindingState.PENDING}
    assert count_of(page, "bound") == len(in_directory & (bound | activated)) == 3
    assert count_of(page, "refused") == 1
    assert count_of(page, "pending") == 0
    assert count_of(page, "disabled") == 0
    await env.store.record_members([MemberSeen("2021002", MemberStatus.DISABLED, later + 1, "sync")])
    # One reading serves the console's pages for half a minute; 立即刷新 reads the store again.
    assert count_of(await _page(env, "/admin"), "disabled") == 0
    page = await _page(env, "/admin?fresh=1")
    assert count_of(page, "disabled") == 1
    assert count_of(page, "refused") == 0
    # By 院系, and the chart drawn on the server: two bindings and one follow today.
    assert 'data-department="电子电气工程学院"' in page
    assert "<svg" in page
    assert "<script" not in page
    assert "绑定 2" in page
    assert "关注 1" in page
    assert not FULL_PHONE.search(page)


async def test_who_is_stuck_on_2_1_with_who_holds_the_phone(console: PagesEnv) -> None:
    env = console
    await _bind(env, "2021001", "13800000001")
    await _bind(env, "2021002", "13800000001")
    await _bind(env, "2021002", "138 0000 0001")
    page = await _page(env, "/admin/stuck")
    assert "2.1 手机号已绑定其他账号（1 人）" in page
    row = page[page.index('data-member="2021002"') :]
    row = row[: row.index("</tr>")]
    assert "138****0001" in row
    assert row.endswith('class="num">2</td>\n    ')  # refused twice
    assert "2021001" in row
    assert "张三" in row
    assert "已绑定" in row
    assert not FULL_PHONE.search(page)


async def test_dead_letters_are_listed_retried_and_dropped_after_confirmation(console: PagesEnv) -> None:
    env = console
    for key in ("a", "b"):
        assert await env.store.inbox_append(key, "subscribe", "<xml/>")
    for item in await env.store.inbox_take(2, lease=60):
        await env.store.inbox_dead(item.id, "wecom 60111: userid not found")
    dead = await env.store.inbox_list_dead()
    page = await _page(env, "/admin/stuck")
    assert "wecom 60111: userid not found" in page
    row = page[page.index(f'data-dead="{dead[0].id}"') :]
    assert "<td>关注</td>" in row[: row.index("</tr>")]  # the event in the console's words
    first, second = sorted(item.id for item in dead)
    status, text = await _post(env, "/admin/inbox/retry", {"item": str(first)})
    assert status == 200
    assert f"死信 #{first} 已放回收件箱" in text
    status, text = await _post(env, "/admin/inbox/drop", {"item": str(second)})
    assert status == 200
    assert "确定删除" in text
    assert (await env.store.inbox_stats()).dead == 1
    status, text = await _post(env, "/admin/inbox/drop", {"item": str(second), "confirmed": "yes"})
    assert status == 200
    assert f"死信 #{second} 已删除" in text
    assert (await env.store.inbox_stats()).dead == 0
    notes = [r.detail for r in await env.store.audit_list(member_id="*")]
    assert notes == [f"inbox: dropped dead letter #{second}", f"inbox: requeued dead letter #{first}"]
    assert all(r.who == f"admin:{ADMIN}" for r in await env.store.audit_list(member_id="*"))


async def test_search_by_id_or_name(console: PagesEnv) -> None:
    env = console
    response = await env.client.get("/admin/students", params={"q": "2021001"}, allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == "/admin/students/2021001"
    page = await (await env.client.get("/admin/students", params={"q": "李"})).text()
    assert "/admin/students/2021002" in page
    assert "2021001" not in page
    page = await (await env.client.get("/admin/students", params={"q": "2021"})).text()
    assert all(f"/admin/students/{m}" in page for m in ("2021001", "2021002", "2021003", "2021004"))
    page = await (await env.client.get("/admin/students", params={"q": "<b>无此人"})).text()
    assert "没有找到" in page
    assert "<b>无此人" not in page


async def test_one_student_masked_until_an_audited_reveal(console: PagesEnv) -> None:
    env = console
    await _bind(env, "2021001", "13800000001")
    page = await _page(env, "/admin/students/2021001")
    assert "138****0001" in page
    assert not FULL_PHONE.search(page)
    assert "已绑定，未关注" in page
    assert 'id="live-status">未激活' in page  # read live from the WeCom emulator
    status, text = await _post(env, "/admin/students/2021001/reveal", {}, page="/admin/students/2021001")
    assert status == 200
    assert "13800000001" in text
    [note] = [r for r in await env.store.audit_list(member_id="2021001") if r.action is AuditAction.REVEAL]
    assert note.who == f"admin:{ADMIN}"
    assert note.source.startswith("console 127.0.0.1")
    # A reveal is one page: the next view is masked again.
    assert not FULL_PHONE.search(await _page(env, "/admin/students/2021001"))


async def test_release_asks_for_confirmation_and_a_reason_then_frees_the_phone(console: PagesEnv) -> None:
    env = console
    await _bind(env, "2021001", "13800000001")
    path = "/admin/students/2021001/release"
    status, text = await _post(env, path, {}, page="/admin/students/2021001")
    assert status == 200
    assert "确定解除绑定" in text
    assert await env.store.get_binding("2021001") is not None
    status, text = await _post(
        env, path, {"confirmed": "yes", "reason": "  "}, page="/admin/students/2021001"
    )
    assert status == 400
    assert "请填写解除绑定的原因" in text
    assert await env.store.get_binding("2021001") is not None
    status, text = await _post(
        env, path, {"confirmed": "yes", "reason": "工单 42"}, page="/admin/students/2021001"
    )
    assert status == 200
    assert "已解除 2021001 的绑定" in text
    assert "138****0001" in text
    assert await env.store.get_binding("2021001") is None
    [record] = await env.store.audit_list(member_id="2021001", limit=1)
    assert record.action is AuditAction.DELETE
    assert record.who == f"admin:{ADMIN}"
    assert "工单 42" in record.source
    # The store holds the phone for no one now (WeCom's contacts are WeCom's: the release says so).
    assert await env.store.get_binding_by_phone(Phone("13800000001")) is None


async def test_refresh_reads_wecom_and_records_its_word(console: PagesEnv) -> None:
    env = console
    env.wecom_state.members["2021002"].status = 1
    status, text = await _post(
        env, "/admin/students/2021002/refresh", {"confirmed": "yes"}, page="/admin/students/2021002"
    )
    assert status == 200
    assert "已激活" in text
    seen = await env.store.member_seen("2021002")
    assert seen is not None
    assert seen.status is MemberStatus.ACTIVATED
    assert seen.source == "admin"
    [note] = await env.store.audit_list(member_id="2021002", limit=1)
    assert (note.action, note.who) == (AuditAction.CONSOLE, f"admin:{ADMIN}")


async def test_invite_again_asks_then_invites(console: PagesEnv) -> None:
    env = console
    path = "/admin/students/2021002/invite"
    status, text = await _post(env, path, {}, page="/admin/students/2021002")
    assert status == 200
    assert "确定重新发送邀请" in text
    invites = len(env.wecom_state.invitations)
    status, text = await _post(env, path, {"confirmed": "yes"}, page="/admin/students/2021002")
    assert status == 200
    assert "再次发送加入邀请" in text
    assert len(env.wecom_state.invitations) == invites + 1
    [note] = await env.store.audit_list(member_id="2021002", limit=1)
    assert (note.action, note.detail, note.who) == (
        AuditAction.INVITE,
        "invited again (batch/invite)",
        f"admin:{ADMIN}",
    )


async def test_the_chase_list_is_excel_ready_csv_without_phones(console: PagesEnv) -> None:
    env = console
    await _bind(env, "2021001", "13800000001")
    await env.store.follow("2021001", "openid-1", actor=WECOM)
    await _bind(env, "2021002", "13800000001")  # refused 2.1
    response = await env.client.get("/admin/export/chase.csv", params={"department": "电子电气工程学院"})
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in response.headers["Content-Disposition"]
    body = await response.read()
    assert body.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(body[3:].decode("utf-8"))))
    assert rows[0] == ["学号", "姓名", "院系", "状态", "最近错误"]
    assert rows[1:] == [
        ["2021002", "李四", "电子电气工程学院", "绑定被拒绝", "2.1 手机号已绑定其他账号"],
        ["2021004", "赵六", "电子电气工程学院", "未开始", ""],
    ]
    everyone = await (await env.client.get("/admin/export/chase.csv")).read()
    assert b"2021001" not in everyone  # followed: joined
    assert not FULL_PHONE.search(everyone.decode("utf-8"))
    notes = [r.detail for r in await env.store.audit_list(member_id="*")]
    assert notes == ["export chase list: all", "export chase list: 电子电气工程学院"]
    assert (await env.client.get("/admin/export/chase.csv", params={"department": "无此院系"})).status == 404


async def _upload(env: PagesEnv, data: bytes, encoding: str | None = None) -> tuple[int, str]:
    token = csrf_of(await _page(env, "/admin/directory"))
    form = aiohttp.FormData()
    form.add_field("csrf", token)
    if encoding is not None:
        form.add_field("encoding", encoding)
    form.add_field("file", data, filename="students.csv", content_type="text/csv")
    response = await env.client.post("/admin/directory", data=form)
    return response.status, await response.text()


async def test_an_upload_with_bad_rows_lists_each_by_line_and_writes_nothing(console: PagesEnv) -> None:
    env = console
    before = await env.store.directory_list()
    data = "学号,姓名,院系,手机\n2022001,新生甲,管理学院,13900000001\n2022002,,管理学院,\n2022003,新生丙,管理学院,12345\n"
    status, text = await _upload(env, data.encode())
    assert status == 400
    assert "第 3 行" in text
    # The import's own messages, in their Chinese wording (the CLI prints the English one).
    assert "缺少姓名" in text
    assert "第 4 行" in text
    assert "手机号不是中国大陆的手机号码" in text
    assert "no name" not in text
    assert "mainland" not in text
    assert "确认导入" not in text
    assert await env.store.directory_list() == before


async def test_an_upload_in_two_encodings_is_refused_in_chinese(console: PagesEnv) -> None:
    data = "学号,姓名,院系,手机\n2022001,张三,管理学院,\n".encode() + "2022002,李四,管理学院,\n".encode("gb18030")
    status, text = await _upload(console, data)
    assert status == 400
    assert "编码 无法判断" in text
    assert "不是有效的 UTF-8 编码" in text
    assert "另存为“CSV UTF-8”" in text
    assert "undecided" not in text
    assert "does not decode" not in text


async def test_an_excel_export_in_gb18030_is_imported_when_the_administrator_says_so(
    console: PagesEnv,
) -> None:
    env = console
    # What Excel's "CSV (逗号分隔)" writes on a Chinese Windows: GB18030, whose bytes for 学号 happen
    # to hold a valid UTF-8 character, so the strict automatic choice cannot tell it from a mixed file.
    data = "学号,姓名,院系,手机\n2022001,欧阳娜娜,管理学院,13900000001\n".encode("gb18030")
    status, text = await _upload(env, data)
    assert status == 400
    assert "选为 GB18030" in text
    assert "开头是“学号”" in text
    status, text = await _upload(env, data, encoding="gb18030")
    assert status == 200
    assert "编码 GB18030" in text
    assert "欧阳娜娜" in text
    token = re.search(r'name="token" value="([^"]+)"', text)
    assert token is not None
    status, done = await _post(
        env, "/admin/directory/confirm", {"token": token.group(1)}, page="/admin/directory"
    )
    assert status == 200, done
    assert await env.store.directory_get("2022001") == DirectoryEntry(
        "2022001", "欧阳娜娜", "管理学院", Phone("13900000001")
    )
    # Told UTF-8, the same file is refused (nothing guessed), and an unknown choice reads as automatic.
    assert (await _upload(env, data, encoding="utf-8"))[0] == 400
    assert "选为 GB18030" in (await _upload(env, data, encoding="latin-1"))[1]


async def test_an_upload_previews_then_imports_all_on_confirmation(console: PagesEnv) -> None:
    env = console
    data = "\ufeff学号,姓名,院系,手机\n2022001,新生甲,管理学院,13900000001\n2022002,新生乙,管理学院,\n"
    status, text = await _upload(env, data.encode())
    assert status == 200
    assert "可以导入 2 条记录" in text
    assert "139****0001" in text
    assert not FULL_PHONE.search(text)
    assert await env.store.directory_get("2022001") is None  # nothing yet
    token = re.search(r'name="token" value="([^"]+)"', text)
    assert token is not None
    status, done = await _post(
        env, "/admin/directory/confirm", {"token": token.group(1)}, page="/admin/directory"
    )
    assert status == 200
    assert "已导入 2 条记录" in done
    assert await env.store.directory_get("2022001") == DirectoryEntry(
        "2022001", "新生甲", "管理学院", Phone("13900000001")
    )
    # The preview is used once.
    status, _ = await _post(
        env, "/admin/directory/confirm", {"token": token.group(1)}, page="/admin/directory"
    )
    assert status == 400
    [note] = await env.store.audit_list(member_id="*", limit=1)
    assert note.detail == "directory import: 2 entries from students.csv"


async def test_a_2_1_dispute_resolved_in_the_console(console: PagesEnv) -> None:
    env = console
    # 赵六 is created in WeCom by the flow with 13800000004; 李四 says the phone is his and meets 2.1.
    await _bind(env, "2021004", "13800000004")
    assert "手机号已绑定其他账号" in await _bind(env, "2021002", "13800000004")
    stuck = await _page(env, "/admin/stuck")
    row = stuck[stuck.index('data-member="2021002"') :]
    assert "2021004" in row[: row.index("</tr>")]
    # After checking with both students, the administrator releases 赵六's binding.
    status, text = await _post(
        env,
        "/admin/students/2021004/release",
        {"confirmed": "yes", "reason": "号码属于李四，已核实"},
        page="/admin/students/2021004",
    )
    assert status == 200
    # WeCom keeps a member with neither mobile nor email from being (60129): the console says what to
    # do there, and the administrator does it in WeCom's admin console (here the emulator's).
    assert "60129" in text
    assert "138****0004" in text
    async with env.http.post(
        env.wecom.make_url("/_sandbox/console/members/2021004"),
        json={"email": "zhaoliu@example.edu", "mobile": ""},
    ) as cleared:
        assert cleared.status == 200, await cleared.text()
    # 李四 binds the phone now, and is no longer stuck.
    assert "手机号已绑定其他账号" not in await _bind(env, "2021002", "13800000004")
    binding = await env.store.get_binding("2021002")
    assert binding is not None
    assert binding.phone == "13800000004"
    assert 'data-member="2021002"' not in await _page(env, "/admin/stuck")


async def test_who_wecom_says_holds_a_disputed_phone(console: PagesEnv) -> None:
    env = console
    await _bind(env, "2021004", "13800000004")
    await _bind(env, "2021002", "13800000004")
    stuck = await _page(env, "/admin/stuck")
    assert "向企业微信核实" in stuck
    status, text = await _post(env, "/admin/stuck/verify", {"holder": "2021004"}, page="/admin/stuck")
    assert status == 200
    assert "企业微信确认：138****0004 属于 2021004" in text
    # The phone changed in WeCom's admin console, and nobody told the store: WeCom says so.
    async with env.http.post(
        env.wecom.make_url("/_sandbox/console/members/2021004"), json={"email": "z@example.edu", "mobile": ""}
    ) as cleared:
        assert cleared.status == 200
    status, text = await _post(env, "/admin/stuck/verify", {"holder": "2021004"}, page="/admin/stuck")
    assert "企业微信中没有成员使用 138****0004" in text
    assert not FULL_PHONE.search(text)
    notes = [
        r.detail for r in await env.store.audit_list(member_id="2021004") if r.action is AuditAction.CONSOLE
    ]
    assert notes == [
        "asked WeCom who holds 138****0004: nobody",
        "asked WeCom who holds 138****0004: 2021004",
    ]


async def test_the_audit_history_reads_in_chinese(console: PagesEnv) -> None:
    # The console's notes are stored in English (the CLI's audit prints them) but shown in Chinese.
    env = console
    await _bind(env, "2021001", "13800000001")
    student = "/admin/students/2021001"
    for action, data in (
        ("reveal", {}),
        ("refresh", {"confirmed": "yes"}),
        ("invite", {"confirmed": "yes"}),
        ("release", {"confirmed": "yes", "reason": "工单 42"}),
    ):
        status, _ = await _post(env, f"{student}/{action}", data, page=student)
        assert status == 200, action
    page = await _page(env, student)
    assert "来源：管理后台" in page  # who last told the store WeCom's status: the refresh
    history = page[page.index("审计记录"):]
    for shown in ("查看了完整手机号", "从企业微信重新读取：未激活", "请企业微信再次发送加入邀请", "原因：工单 42",
                  "管理后台 127.0.0.1", "绑定页面 127.0.0.1"):
        assert shown in history, shown
    for internal in ("full phone", "batch/invite", "not_activated", "console ", "release:", "bind-page"):
        assert internal not in history, internal
