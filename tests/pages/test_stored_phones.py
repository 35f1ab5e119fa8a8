"""The pages over a phone the store holds as text that is no mainland mobile (old data, a hand's edit):
no error page; the student sees no such phone, and may bind one."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from callback_service.store.sessions import Session
from handlers.core.phone import Phone
from tests.pages.support import PagesEnv, PhoneForm


def _sql(tmp_path: Path, statement: str, *args: str) -> None:
    # The pages' store is the SQLite file make_env opens in the test's tmp_path.
    with sqlite3.connect(tmp_path / "store.db") as conn:
        assert conn.execute(statement, args).rowcount == 1


async def test_a_directory_phone_that_is_no_mobile_is_not_offered(env: PagesEnv, tmp_path: Path) -> None:
    _sql(tmp_path, "UPDATE directory SET phone = '无' WHERE student_id = '2021001'")
    assert (await env.login("2021001")).status == 302
    response = await env.client.get("/bind/phone")
    assert response.status == 200
    page = await response.text()
    assert PhoneForm.read(page).phone == ""
    assert 'data-source="none"' in page


async def test_a_bound_phone_that_is_no_mobile_shows_no_binding_and_another_binds(
    env: PagesEnv, tmp_path: Path
) -> None:
    assert "绑定成功" in await env.bind("2021003", "13800000003")
    _sql(tmp_path, "UPDATE bindings SET phone = '1380000' WHERE member_id = '2021003'")
    me = await env.client.get("/me")
    assert me.status == 200
    assert "未绑定" in await me.text()
    form = await env.client.get("/bind/phone")
    assert form.status == 200
    assert "您当前绑定的手机号为" not in await form.text()
    assert "绑定成功" in await (await env.submit("13800000013")).text()
    assert "138****0013" in await (await env.client.get("/me")).text()


def test_a_session_phone_that_is_no_mobile_is_read_as_none() -> None:
    stored = Session(sid="s1", member_id="2021001", csrf="token").to_json().replace(
        '"cas_mobile": null', '"cas_mobile": "+86 138 0000 0001"'
    ).replace('"refused_phone": null', '"refused_phone": "138-0000"')
    session = Session.from_json("s1", stored)
    assert session is not None
    assert session.cas_mobile == Phone("13800000001")
    assert isinstance(session.cas_mobile, Phone)
    assert session.refused_phone is None
