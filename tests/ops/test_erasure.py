"""An erased student leaves nothing behind: a student binds a typed phone proved by SMS, sync records
WeCom's word on everyone, then the student is erased; the SQLite file (its WAL too) and every Redis
key, value and append-only file are read byte by byte for the student's phone, name and id."""

from __future__ import annotations

import asyncio
import io
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from aiohttp.test_utils import TestServer

from callback_service.ops.personal_data import erase_student, export_student
from callback_service.ops.sync import sync_command
from handlers.core.binding import Actor
from sandbox.sms import SMS_SANDBOX_STATE, SmsSandboxState
from tests.pages.conftest import MakeEnv, http, make_env, sms_server
from tests.pages.support import PagesEnv, sms_settings
from tests.store.support import RedisServer, require_redis_server

__all__ = ["http", "make_env", "sms_server"]

ADMIN = Actor(who="admin:ops", source="cli: data request")
STUDENT = "2021001"
NAME = "张三"
DIRECTORY_PHONE = "13800000001"
TYPED_PHONE = "13900000123"  # no other student of this test has it


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, so that its append-only file holds this test's writes only."""
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(require_redis_server(), directory)
    server.start()
    yield server
    server.kill()


async def _bind_prove_and_sync(env: PagesEnv, sms_server: TestServer) -> None:
    """The student logs in, types a phone, proves it by the code it received, and is bound; then
    `wecom-bind sync` records every member's status."""
    await env.login(STUDENT)
    response = await env.submit(TYPED_PHONE, follow=False)
    assert response.headers["Location"] == "/bind/code"
    page = await (await env.client.get("/bind/code")).text()
    inbox: SmsSandboxState = sms_server.app[SMS_SANDBOX_STATE]
    code = inbox.last_code(TYPED_PHONE)
    assert code is not None

    def hidden(name: str) -> str:
        return page.split(f'name="{name}" value="', 1)[1].split('"', 1)[0]

    bound = await env.client.post(
        "/bind/code", data={"csrf": hidden("csrf"), "form_id": hidden("form_id"), "code": code},
        allow_redirects=False,
    )
    assert bound.status == 303
    assert (await env.client.get(bound.headers["Location"])).status == 200
    binding = await env.store.get_binding(STUDENT)
    assert binding is not None
    assert binding.phone == TYPED_PHONE
    assert await sync_command(env.store, env.settings, dry_run=False, out=lambda _: None,
                              err=lambda _: None, stream=io.StringIO()) == 0
    assert await env.store.member_seen(STUDENT) is not None


def _size(path: Path) -> int:
    return path.stat().st_size


def _personal(blob: bytes) -> list[str]:
    """Which of the student's phones and name the bytes hold."""
    found = [phone for phone in (TYPED_PHONE, DIRECTORY_PHONE) if phone.encode() in blob]
    return found + ([NAME] if NAME.encode() in blob else [])


async def test_an_erased_student_leaves_nothing_in_the_sqlite_file_or_its_wal(
    make_env: MakeEnv, sms_server: TestServer, tmp_path: Path
) -> None:
    path = tmp_path / "erase.db"
    env = await make_env(store_url=f"sqlite:///{path}", **sms_settings(sms_server))
    await _bind_prove_and_sync(env, sms_server)

    def files() -> bytes:
        return b"".join(p.read_bytes() for p in sorted(tmp_path.glob("erase.db*")))

    assert _personal(files()) == [TYPED_PHONE, DIRECTORY_PHONE, NAME]  # the scan sees them
    export = await export_student(env.store, STUDENT, now=time.time(), actor=ADMIN)
    assert export["wecom_status"]["source"] == "sync"
    assert export["sms"]["phones"] == [{"phone": "139****0123", "codes_today": 1}]
    assert export["sms"]["codes_today"] == 1

    erasure = await erase_student(env.store, STUDENT, now=time.time(), retention_days=30, actor=ADMIN)
    assert (erasure.member_seen, erasure.sms_phones) == (True, 1)
    assert erasure.kv_entries >= 2  # the page's result and the count of submits, at least
    assert erasure.scrubbed == "sqlite: WAL checkpointed and truncated"
    assert _personal(files()) == []
    assert _size(Path(f"{path}-wal")) == 0
    # The id stays in the audit log alone (masked records within the retention, the erasure's own).
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        holding = {
            table for table in tables
            if any(STUDENT in repr(row) for row in db.execute(f"SELECT * FROM {table}"))  # noqa: S608
        }
    db.close()
    assert holding == {"audit"}
    # The other students are still there.
    assert await env.store.directory_get("2021004") is not None
    assert await env.store.member_seen("2021002") is not None


def _redis_contents(client: Any, prefix: str) -> dict[str, bytes]:
    """Every key under the prefix and its whole value, as bytes (client: a redis.Redis of bytes)."""
    contents = {}
    for raw in client.scan_iter(match=prefix + "*", count=1000):
        key = bytes(raw).decode()
        kind = bytes(client.type(key)).decode()
        value: Any
        if kind == "string":
            value = [client.get(key)]
        elif kind == "hash":
            value = [part for pair in client.hgetall(key).items() for part in pair]
        elif kind == "list":
            value = client.lrange(key, 0, -1)
        elif kind == "set":
            value = sorted(client.smembers(key))
        elif kind == "zset":
            value = [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
        else:
            raise AssertionError(f"{key}: a {kind} that the store does not make")
        contents[key] = b"\0".join(bytes(part) for part in value)
    return contents


def _aof(server: RedisServer) -> bytes:
    return b"".join(p.read_bytes() for p in sorted((server.directory / "appendonlydir").iterdir()))


async def test_an_erased_student_leaves_nothing_in_redis_nor_its_append_only_file(
    make_env: MakeEnv, sms_server: TestServer, own_redis: RedisServer
) -> None:
    prefix = f"t{uuid.uuid4().hex[:12]}:"
    env = await make_env(store_url=f"{own_redis.url}?prefix={prefix}", **sms_settings(sms_server))
    await _bind_prove_and_sync(env, sms_server)
    client = redis.Redis(port=own_redis.port)
    try:
        before = _redis_contents(client, "{" + prefix + "}")
        assert _personal(b"".join(before.values())) == [TYPED_PHONE, DIRECTORY_PHONE, NAME]
        assert TYPED_PHONE in _personal(_aof(own_redis))

        erasure = await erase_student(env.store, STUDENT, now=time.time(), retention_days=30, actor=ADMIN)
        assert erasure.scrubbed == "redis: append-only file rewritten"
        after = _redis_contents(client, "{" + prefix + "}")
        assert [key for key, value in after.items() if _personal(key.encode() + value)] == []
        assert {key for key, value in after.items() if STUDENT.encode() in key.encode() + value} == {
            "{" + prefix + "}audit", "{" + prefix + "}audit:m:" + STUDENT
        }
        assert any(b"2021004" in value for value in after.values())
        # Redis deletes the files the rewrite replaced on a thread of its own, a moment later.
        for _ in range(200):
            if not _personal(_aof(own_redis)):
                break
            await asyncio.sleep(0.02)
        assert _personal(_aof(own_redis)) == []
    finally:
        client.close()
