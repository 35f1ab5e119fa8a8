"""Who may enter the console: the listed administrators, through CAS; everyone else gets 404."""

from __future__ import annotations

import html
import re
import time
from http.cookies import SimpleCookie
from urllib.parse import unquote

import aiohttp
from yarl import URL

from handlers.core.binding import AuditAction
from tests.admin.conftest import MakeEnv
from tests.admin.support import ADMIN, ADMIN_COOKIE, admin_cookie, admin_login, csrf_of
from tests.pages.support import PagesEnv

PATHS = (
    "/admin",
    "/admin/stuck",
    "/admin/students?q=2021",
    "/admin/students/2021001",
    "/admin/export",
    "/admin/export/chase.csv",
    "/admin/directory",
    "/admin/no-such-page",
)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def test_without_administrators_there_is_no_console(env: PagesEnv) -> None:
    for path in PATHS:
        response = await env.client.get(path, allow_redirects=False)
        assert response.status == 404, path
        assert "页面不存在" in await response.text()


async def test_a_visitor_is_sent_to_cas_with_the_consoles_own_service_url(make_env: MakeEnv) -> None:
    env = await make_env(admins=ADMIN)
    for path in PATHS:
        response = await env.client.get(path, allow_redirects=False)
        assert response.status == 302, path
        location = response.headers["Location"]
        assert location.startswith(env.settings.cas_base_url + "/login?service=")
        assert "%2Fadmin%2Fcas" in location
        assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
    # Nothing of the console was shown: no session, and a POST is no action either.
    response = await env.client.post(
        "/admin/students/2021001/release", data={"confirmed": "yes"}, allow_redirects=False
    )
    assert response.status == 302
    assert admin_cookie(env) is None


async def test_an_administrator_logs_in_with_a_strict_cookie_of_the_consoles_own(make_env: MakeEnv) -> None:
    env = await make_env(admins=f"{ADMIN}, T0001")
    answer = await admin_login(env)
    assert answer.status == 200
    assert 'http-equiv="refresh"' in await answer.text()
    cookie = SimpleCookie(answer.headers["Set-Cookie"])[ADMIN_COOKIE]
    assert cookie["path"] == "/admin"
    assert cookie["httponly"]
    assert cookie["samesite"] == "Strict"
    assert not cookie["secure"]  # the test's public URL is http
    page = await env.client.get("/admin", allow_redirects=False)
    assert page.status == 200
    text = await page.text()
    assert "绑定进度概览" in text
    assert f"管理员 {ADMIN}" in text
    assert page.headers["Cache-Control"] == "no-store"
    # The students' session is another: the console's login opened none.
    assert (await env.client.get("/me")).status == 200
    assert "您尚未登录" in await (await env.client.get("/me")).text()


async def test_a_logged_in_student_gets_404_on_every_console_path(make_env: MakeEnv) -> None:
    env = await make_env(admins=ADMIN)
    assert (await env.login("2021001")).status == 302
    for path in PATHS:
        response = await env.client.get(path, allow_redirects=False)
        assert response.status == 404, path
        assert "页面不存在" in await response.text()
    response = await env.client.post(
        "/admin/students/2021001/release", data={"confirmed": "yes"}, allow_redirects=False
    )
    assert response.status == 404


async def test_anyone_cas_knows_who_is_not_listed_gets_404_and_no_session(make_env: MakeEnv) -> None:
    env = await make_env(admins=ADMIN)
    answer = await admin_login(env, "2021009")
    assert answer.status == 404
    assert "页面不存在" in await answer.text()
    assert admin_cookie(env) is None


async def test_an_administrator_struck_off_the_list_gets_404(make_env: MakeEnv) -> None:
    env = await make_env(admins=ADMIN)
    assert (await admin_login(env)).status == 200
    # The same store and cookie, served by an app whose settings no longer list this id.
    object.__setattr__(env.settings, "admins", frozenset({"T0001"}))
    response = await env.client.get("/admin", allow_redirects=False)
    assert response.status == 404


async def test_the_session_ends_after_thirty_idle_minutes(make_env: MakeEnv) -> None:
    clock = Clock()
    env = await make_env(clock=clock, admins=ADMIN)
    assert (await admin_login(env)).status == 200
    clock.now += 29 * 60
    assert (await env.client.get("/admin", allow_redirects=False)).status == 200
    clock.now += 29 * 60  # 58 minutes since the login, 29 since the last page
    assert (await env.client.get("/admin", allow_redirects=False)).status == 200
    clock.now += 31 * 60
    response = await env.client.get("/admin", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"].startswith(env.settings.cas_base_url)


async def test_a_form_without_its_csrf_token_does_nothing(make_env: MakeEnv) -> None:
    env = await make_env(admins=ADMIN)
    await env.store.directory_upsert([])
    assert (await admin_login(env)).status == 200
    for data in ({}, {"csrf": "forged"}):
        response = await env.client.post("/admin/students/2021001/reveal", data=data)
        assert response.status == 403
        assert "13800000001" not in await response.text()
    assert [r for r in await env.store.audit_list() if r.action is AuditAction.REVEAL] == []
    page = await (await env.client.get("/admin/students/2021001")).text()
    response = await env.client.post("/admin/students/2021001/reveal", data={"csrf": csrf_of(page)})
    assert response.status == 200
    assert "13800000001" in await response.text()


async def test_logout_ends_the_consoles_session(make_env: MakeEnv) -> None:
    env = await make_env(admins=ADMIN)
    assert (await admin_login(env)).status == 200
    page = await (await env.client.get("/admin")).text()
    response = await env.client.post("/admin/logout", data={"csrf": csrf_of(page)})
    assert response.status == 200
    text = await response.text()
    assert "已退出" in text
    # CAS's own login outlives the console's: the page offers its logout, back to the console.
    logout = re.search(r'href="([^"]*/logout\?service=[^"]*)"', text)
    assert logout is not None
    assert unquote(html.unescape(logout.group(1))).endswith("/admin")
    assert (await env.client.get("/admin", allow_redirects=False)).status == 302


async def test_a_students_session_cookie_is_no_administrators(make_env: MakeEnv) -> None:
    env = await make_env(admins=ADMIN)
    # The administrator logs in to the students' pages: that session is a student's, not the console's.
    assert (await env.login(ADMIN)).status == 302
    jar = env.client.session.cookie_jar
    [student] = [morsel.value for morsel in jar if morsel.key == "wecom_bind_session"]
    jar.clear(lambda morsel: morsel.key == "wecom_bind_session")
    jar.update_cookies({ADMIN_COOKIE: student}, URL(str(env.client.make_url("/admin"))))
    response = await env.client.get("/admin", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"].startswith(env.settings.cas_base_url)


async def test_a_multipart_post_without_the_token_does_nothing_either(make_env: MakeEnv) -> None:
    env = await make_env(admins=ADMIN)
    await env.store.directory_upsert([])
    assert (await admin_login(env)).status == 200
    form = aiohttp.FormData()
    form.add_field("confirmed", "yes")
    form.add_field("reason", "forged")
    form.add_field("x", b"", filename="x.bin")  # a multipart body
    response = await env.client.post("/admin/students/2021001/invite", data=form)
    assert response.status == 403
    assert await env.store.audit_list(member_id="2021001") == []
