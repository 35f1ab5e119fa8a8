"""Pages a student reaches by mistake: every error a browser can reach is a Chinese page in the
site's layout with a way back, a trailing slash leads to the page without it, and the paths that
machines call keep their plain answers."""

from __future__ import annotations

import pytest

from tests.pages.support import PagesEnv


def _a_page_of_ours(page: str) -> None:
    assert '<html lang="zh-CN">' in page
    assert "<header>" in page
    assert "上海工程技术大学 · 企业号" in page
    assert 'name="viewport"' in page
    assert 'class="button"' in page
    for english in ("Not Found", "Method Not Allowed", "Request Entity Too Large", "Traceback"):
        assert english not in page


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ("/bind/", "/bind"),
        ("/bind/phone/", "/bind/phone"),
        ("/help/", "/help"),
        ("/me//", "/me"),
        ("/bind/cas/?ticket=ST-1", "/bind/cas?ticket=ST-1"),
    ],
)
async def test_a_trailing_slash_leads_to_the_page_without_it(env: PagesEnv, path: str, target: str) -> None:
    response = await env.client.get(path, allow_redirects=False)
    assert response.status in (301, 308)
    assert response.headers["Location"] == target


@pytest.mark.parametrize("path", ["//evil.example/", "/%2F%2Fevil.example/", "///evil.example//"])
async def test_a_trailing_slash_never_leads_off_site(env: PagesEnv, path: str) -> None:
    target = env.client.make_url("/").with_path(path, encoded=True)
    assert target.raw_path == path
    async with env.http.get(target, allow_redirects=False) as response:
        location = response.headers.get("Location", "")
    assert not location.startswith("//")
    assert "evil" not in location or location.startswith("/evil")


@pytest.mark.parametrize("path", ["/nonexistent", "/bind/nowhere", "/", "/wecom/admit"])
async def test_an_unknown_path_is_a_chinese_page(env: PagesEnv, path: str) -> None:
    response = await env.client.get(path)
    page = await response.text()
    assert response.status == 404
    assert response.content_type == "text/html"
    assert "页面不存在" in page
    assert 'href="/bind"' in page
    assert response.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    _a_page_of_ours(page)


async def test_a_wrong_method_is_a_chinese_page(env: PagesEnv) -> None:
    response = await env.client.put("/bind/phone")
    page = await response.text()
    assert response.status == 405
    assert "无法打开此页面" in page
    assert set(response.headers["Allow"].split(",")) == {"GET", "HEAD", "POST"}
    _a_page_of_ours(page)


async def test_get_logout_offers_the_logout_button(env: PagesEnv) -> None:
    anonymous = await env.client.get("/logout")
    page = await anonymous.text()
    assert anonymous.status == 200
    assert "您尚未登录" in page
    _a_page_of_ours(page)
    await env.login("2021001")
    response = await env.client.get("/logout")
    page = await response.text()
    assert response.status == 200
    assert 'method="post" action="/logout"' in page
    assert 'name="csrf"' in page
    # Opening it logs no one out: only its button does.
    assert "张三" in await (await env.client.get("/me")).text()


async def test_a_body_over_the_limit_is_a_chinese_page(env: PagesEnv) -> None:
    await env.login("2021001")
    form = await env.form()
    response = await env.client.post(
        "/bind/phone", data={"csrf": form.csrf, "form_id": form.form_id, "phone": "1" * (2 * 1024 * 1024)}
    )
    page = await response.text()
    assert response.status == 413
    assert "提交的内容过长" in page
    assert 'href="/bind/phone"' in page
    _a_page_of_ours(page)
    assert await env.store.get_binding("2021001") is None


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/wecom/callback", 400),
        ("PUT", "/wecom/callback", 405),
        ("POST", "/health", 405),
        ("POST", "/ready", 405),
        ("POST", "/metrics", 405),
    ],
)
async def test_machines_keep_their_plain_answers(env: PagesEnv, method: str, path: str, status: int) -> None:
    response = await env.client.request(method, path)
    assert response.status == status
    assert "<html" not in await response.text()
