"""The audit log's stored words are data: an action renamed in the code keeps the word its records
were written with, so that the records of every release read alike (AuditAction.SET_PHONE, "settle")."""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path

import redis.asyncio as aioredis

from callback_service.store import open_store
from handlers.core.binding import Actor, AuditAction
from handlers.core.phone import Phone
from tests.store.support import FakeClock, RedisServer

WECOM = Actor(who="wecom", source="callback")
FORMER = {"at": 0.0, "who": "cli", "source": "cli: reconcile", "action": "settle", "member": "m2",
          "phone": "138****0002", "detail": "replaces 139****0002"}
"""An audit record as a release before the rename wrote it (Redis's JSON; SQLite's row alike)."""


async def test_sqlite_stores_a_phone_set_from_wecom_as_settle_and_reads_it_back(
    tmp_path: Path, clock: FakeClock
) -> None:
    store = await open_store(f"sqlite:///{tmp_path}/store.db", clock=clock)
    try:
        await store.set_member_phone("m1", Phone("13800000001"), take=False, actor=WECOM)
        with sqlite3.connect(tmp_path / "store.db") as conn:
            stored = conn.execute("SELECT action FROM audit WHERE member_id = 'm1'").fetchall()
            conn.execute(
                "INSERT INTO audit (at, who, source, action, member_id, phone_masked, detail)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                tuple(FORMER[name] for name in ("at", "who", "source", "action", "member", "phone", "detail")),
            )
        assert stored == [("settle",)]
        [former] = await store.audit_list(member_id="m2")
        assert (former.action, former.detail) == (AuditAction.SET_PHONE, "replaces 139****0002")
        found = await store.audit_since(0.0, actions=[AuditAction.SET_PHONE])
        assert [record.member_id for record in found] == ["m1", "m2"]
    finally:
        await store.close()


async def test_redis_stores_a_phone_set_from_wecom_as_settle_and_reads_it_back(
    redis_server: RedisServer, clock: FakeClock
) -> None:
    prefix = f"w{uuid.uuid4().hex[:8]}:"
    store = await open_store(f"{redis_server.url}?prefix={prefix}", clock=clock)
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        await store.set_member_phone("m1", Phone("13800000001"), take=False, actor=WECOM)
        stored = [json.loads(entry)["action"] for entry in await client.lrange(f"{{{prefix}}}audit:m:m1", 0, -1)]
        assert stored == ["settle"]
        # The log is newest first: a record older than m1's goes to its far end.
        former = json.dumps({"id": 0, **FORMER}, ensure_ascii=False)
        await client.rpush(f"{{{prefix}}}audit", former)
        await client.rpush(f"{{{prefix}}}audit:m:m2", former)
        [record] = await store.audit_list(member_id="m2")
        assert (record.action, record.detail) == (AuditAction.SET_PHONE, "replaces 139****0002")
        found = await store.audit_since(0.0, actions=[AuditAction.SET_PHONE])
        assert [record.member_id for record in found] == ["m2", "m1"]
    finally:
        await client.aclose()
        await store.close()
