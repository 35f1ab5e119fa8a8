"""Security of the pages: CSRF, rate limits, outages as pages, headers, nothing internal shown."""

from __future__ import annotations

import asyncio
import time

import pytest

from callback_service.store import STORE
from callback_service.web.pages import PagesConfig
from handlers.core.phone import Phone
from tests.cas._support import FakeClock
from tests.pages.conftest import MakeEnv
from tests.pages.support import PagesEnv

INTERNALS = ("Traceback", "StoreUnavailable", "WeComUnavailable", "sqlite", "errcode", "Exception")


def _nothing_internal(page: str) -> None:
    for word in INTERNALS:
        assert word not in page


@pytest.mark.parametrize("csrf", [None, "", "wrong-token", "x" * 2000])
async def test_a_submit_without_the_right_csrf_token_is_refused(env: PagesEnv, csrf: str | None) -> None:
    await env.login("2021001")
    form = await env.form()
    data = {"form_id": form.form_id, "phone": "13800000001"}
    if csrf is not None:
        data["csrf"] = csrf
    response = await env.client.post("/bind/phone", data=data, allow_redirects=False)
    page = await response.text()
    assert response.status == 403
    assert "请求无效" in page
    assert await env.store.get_binding("2021001") is None
    assert "user/update" not in env.wecom_state.calls


async def test_another_sessions_csrf_token_is_refused(env: PagesEnv) -> None:
    await env.login("2021003")
    stolen = await env.form()
    env.client.session.cookie_jar.clear()
    await env.login("2021001")
    response = await env.client.post(
        "/bind/phone", data={"csrf": stolen.csrf, "form_id": stolen.form_id, "phone": "13800000001"}
    )
    assert response.status == 403


async def test_a_submit_without_a_session_is_refused(env: PagesEnv) -> None:
    response = await env.client.post("/bind/phone", data={"csrf": "x", "phone": "13800000001"})
    page = await response.text()
    assert response.status == 403
    assert "页面已过期" in page
    assert 'href="/bind"' in page


async def test_every_form_carries_a_csrf_token(env: PagesEnv) -> None:
    await env.login("2021001")
    for path in ("/bind/phone", "/me"):
        page = await (await env.client.get(path)).text()
        assert page.count("<form") == page.count('name="csrf"') >= 1


async def test_logout_needs_the_csrf_token(env: PagesEnv) -> None:
    await env.login("2021001")
    refused = await env.client.post("/logout", data={"csrf": "wrong"})
    assert refused.status == 403
    assert "张三" in await (await env.client.get("/me")).text()
    form = await env.form()
    done = await env.client.post("/logout", data={"csrf": form.csrf})
    assert done.status == 200
    assert "您尚未登录" in await (await env.client.get("/me")).text()


async def test_too_many_submits_of_a_student_get_a_429_page(make_env: MakeEnv) -> None:
    env = await make_env(PagesConfig(submits_per_student=3, submit_window=600))
    await env.login("2021001")
    for _ in range(3):
        assert (await env.submit("13800000001", follow=False)).status == 303
    response = await env.submit("13800000011", follow=False)
    page = await response.text()
    assert response.status == 429
    assert "提交过于频繁" in page
    # What happened, and when to try again.
    assert "10 分钟内提交绑定的次数已达上限（3 次）" in page
    assert "请在 10 分钟后再试" in page
    assert 'href="/help"' not in page.split("<nav")[0]
    assert response.headers["Retry-After"] == "600"
    binding = await env.store.get_binding("2021001")
    assert binding is not None
    assert binding.phone == "13800000001"


async def test_a_wrong_phone_format_does_not_count(make_env: MakeEnv) -> None:
    env = await make_env(PagesConfig(submits_per_student=2, submits_per_ip=2))
    await env.login("2021003")
    for _ in range(5):
        assert (await env.submit("12345", follow=False)).status == 400
    assert "绑定成功" in await (await env.submit("13800000003")).text()


async def test_too_many_submits_from_one_address_get_a_429_page(make_env: MakeEnv) -> None:
    env = await make_env(PagesConfig(submits_per_student=100, submits_per_ip=2))
    await env.login("2021001")
    assert (await env.submit("13800000001", follow=False)).status == 303
    env.client.session.cookie_jar.clear()
    await env.login("2021003")
    assert (await env.submit("13800000003", follow=False)).status == 303
    response = await env.submit("13800000013", follow=False)
    assert response.status == 429
    assert "您所在的网络" in await response.text()


async def test_the_per_address_limit_is_a_setting(make_env: MakeEnv) -> None:
    # The pages' config as production builds it, from settings (no PagesConfig given).
    env = await make_env(submits_per_address=2)
    await env.login("2021001")
    assert [(await env.submit("13800000001", follow=False)).status for _ in range(2)] == [303, 303]
    response = await env.submit("13800000001", follow=False)
    assert response.status == 429
    assert "您所在的网络" in await response.text()


async def test_the_replays_of_one_form_count_once(make_env: MakeEnv) -> None:
    # A double click, or a browser resending the form: one bind, counted once (a student was
    # refused after 6 real binds when every replay counted).
    env = await make_env(PagesConfig(submits_per_student=2, submits_per_ip=100))
    await env.login("2021001")
    form = await env.form()
    replays = [await env.submit("13800000001", form=form, follow=False) for _ in range(5)]
    assert [r.status for r in replays] == [303] * 5
    assert len({r.headers["Location"] for r in replays}) == 1
    assert await env.store.kv_get("rate:bind:student:2021001") == "1"
    assert (await env.submit("13800000001", follow=False)).status == 303
    assert (await env.submit("13800000001", follow=False)).status == 429


async def test_a_form_refused_by_a_limit_may_be_sent_again_later(make_env: MakeEnv) -> None:
    clock = FakeClock(time.time())
    env = await make_env(PagesConfig(submits_per_student=1, submit_window=600), clock=clock)
    await env.login("2021001")
    assert (await env.submit("13800000001", follow=False)).status == 303
    form = await env.form()
    assert (await env.submit("13800000001", form=form, follow=False)).status == 429
    clock.advance(601)
    # The same form: nothing ran when it was refused, so it runs now.
    assert (await env.submit("13800000001", form=form, follow=False)).status == 303


async def test_a_student_refused_by_its_own_limit_does_not_lock_its_address_out(make_env: MakeEnv) -> None:
    env = await make_env(PagesConfig(submits_per_student=2, submits_per_ip=5))
    await env.login("2021001")
    statuses = [(await env.submit("13800000001", follow=False)).status for _ in range(20)]
    assert statuses == [303, 303] + [429] * 18
    env.client.session.cookie_jar.clear()
    await env.login("2021003")
    assert "绑定成功" in await (await env.submit("13800000003")).text()


async def test_a_burst_of_submits_counts_none_past_a_limit(make_env: MakeEnv) -> None:
    env = await make_env(PagesConfig(submits_per_student=3, submits_per_ip=100))
    await env.login("2021001")
    forms = [await env.form() for _ in range(8)]
    responses = await asyncio.gather(*(env.submit("13800000001", form=form, follow=False) for form in forms))
    assert sorted(response.status for response in responses) == [303] * 3 + [429] * 5
    # Counted all or none, at once: the refused ones count neither for the student nor the address.
    counts = await env.store.kv_get_many(["rate:bind:student:2021001", "rate:bind:ip:127.0.0.1"])
    assert counts == ["3", "3"]


async def test_the_address_comes_from_a_trusted_proxy_only(make_env: MakeEnv) -> None:
    env = await make_env(PagesConfig(submits_per_ip=1), trusted_proxies="127.0.0.1")
    students = {"2021001": "13800000001", "2021003": "13800000003"}
    for (student, phone), client in zip(students.items(), ("203.0.113.5", "203.0.113.6"), strict=True):
        env.client.session.cookie_jar.clear()
        await env.login(student)
        forwarded = {"X-Forwarded-For": f"198.51.100.1, {client}"}
        assert (await env.submit(phone, follow=False, headers=forwarded)).status == 303
        record = (await env.store.audit_list(member_id=student))[0]
        assert record.source == f"bind-page {client}"
    # The left part of the header is anyone's to write: only what the proxy appended counts.
    env.client.session.cookie_jar.clear()
    await env.login("2021002")
    spoofed = {"X-Forwarded-For": "203.0.113.99, 203.0.113.5"}
    assert (await env.submit("13800000002", follow=False, headers=spoofed)).status == 429


async def test_x_forwarded_for_is_ignored_without_trusted_proxies(make_env: MakeEnv) -> None:
    env = await make_env(PagesConfig(submits_per_ip=1))
    await env.login("2021001")
    headers = {"X-Forwarded-For": "203.0.113.5"}
    assert (await env.submit("13800000001", follow=False, headers=headers)).status == 303
    assert (await env.store.audit_list(member_id="2021001"))[0].source == "bind-page 127.0.0.1"
    env.client.session.cookie_jar.clear()
    await env.login("2021003")
    headers = {"X-Forwarded-For": "203.0.113.6"}
    assert (await env.submit("13800000003", follow=False, headers=headers)).status == 429


async def test_a_store_outage_is_a_503_page_without_internals(env: PagesEnv) -> None:
    await env.login("2021001")
    form = await env.form()
    await env.client.app[STORE].close()
    for response in (
        await env.client.get("/bind/phone"),
        await env.client.get("/me"),
        await env.client.post(
            "/bind/phone", data={"csrf": form.csrf, "form_id": form.form_id, "phone": "13800000001"}
        ),
    ):
        page = await response.text()
        assert response.status == 503
        assert "服务暂时不可用" in page
        assert response.headers["Retry-After"] == "30"
        _nothing_internal(page)


async def test_a_wecom_outage_is_a_503_page_and_releases_the_claim(env: PagesEnv) -> None:
    await env.login("2021001")
    env.wecom_state.faults.status(403, count=5, api="user/update")
    response = await env.submit("13800000001", follow=False)
    page = await response.text()
    assert response.status == 503
    assert "服务暂时不可用" in page
    _nothing_internal(page)
    assert await env.store.get_binding("2021001") is None
    assert await env.store.get_binding_by_phone(Phone("13800000001")) is None
    env.wecom_state.faults.clear()
    # A fresh form binds once WeCom is back.
    assert "绑定成功" in await (await env.submit("13800000001")).text()


async def test_pages_send_security_headers(env: PagesEnv) -> None:
    await env.login("2021001")
    for path in ("/help", "/me", "/bind/phone"):
        response = await env.client.get(path)
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Cache-Control"] == "no-store"
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert "script-src" not in response.headers["Content-Security-Policy"]
        assert "<script" not in await response.text()
    redirect = await env.client.get("/bind", allow_redirects=False)
    assert redirect.headers["Cache-Control"] == "no-store"


async def test_phones_never_travel_in_a_url(env: PagesEnv) -> None:
    await env.login("2021001")
    response = await env.submit("13800000001", follow=False)
    assert response.status == 303
    assert "1380000" not in response.headers["Location"]
    assert response.headers["Location"].startswith("/bind/result/")
