"""/help (the guide's chapter 2) and /me (the student's own binding, the phone masked)."""

from __future__ import annotations

from handlers.core.binding import Actor
from handlers.core.guide import GUIDE
from tests.pages.conftest import MakeEnv
from tests.pages.support import PagesEnv


async def test_help_lists_2_1_to_2_4_with_causes_and_remedies(env: PagesEnv) -> None:
    response = await env.client.get("/help")
    page = await response.text()
    assert response.status == 200
    positions = []
    for entry in GUIDE.values():
        assert f"{entry.section}</span> {entry.title}" in page
        for text in (*entry.causes, *entry.remedies):
            assert text in page
        positions.append(page.index(entry.title))
    assert positions == sorted(positions)
    assert page.count("错误原因") == 4
    assert page.count("解决方法") == 4


async def test_me_asks_to_log_in_first(env: PagesEnv) -> None:
    page = await (await env.client.get("/me")).text()
    assert "您尚未登录" in page
    assert 'href="/bind"' in page


async def test_me_shows_an_unbound_student(env: PagesEnv) -> None:
    await env.login("2021003")
    page = await (await env.client.get("/me")).text()
    assert "王五" in page
    assert "管理学院" in page
    assert "未绑定" in page
    assert 'href="/bind/phone"' in page


async def test_me_shows_the_bound_phone_masked(env: PagesEnv) -> None:
    await env.bind("2021001", "13800000001")
    page = await (await env.client.get("/me")).text()
    assert "已绑定，未关注" in page
    assert "138****0001" in page
    assert "13800000001" not in page
    assert 'src="/bind/follow-qr.png"' in page


async def test_me_shows_a_followed_student(env: PagesEnv) -> None:
    await env.bind("2021001", "13800000001")
    await env.store.follow("2021001", "o-wechat", actor=Actor(who="wecom", source="test"))
    page = await (await env.client.get("/me")).text()
    assert "已关注" in page
    assert "取消关注" in page
    assert "13800000001" not in page


async def test_the_poster_qr_is_served(env: PagesEnv) -> None:
    response = await env.client.get("/bind/qr.png")
    assert response.status == 200
    assert response.content_type == "image/png"
    assert (await response.read()).startswith(b"\x89PNG")


async def test_the_school_is_named_by_settings(make_env: MakeEnv) -> None:
    env = await make_env(school_name="某某理工大学")
    for path in ("/help", "/me", "/bind/nowhere"):
        page = await (await env.client.get(path)).text()
        assert "某某理工大学" in page
        assert "上海工程技术大学" not in page
