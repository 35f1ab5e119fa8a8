"""The integrity check finds records that no rule of handlers.core.rules writes."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import redis.asyncio as aioredis

from callback_service.store import open_store
from handlers.core.binding import Actor
from handlers.core.phone import Phone
from tests.store.support import FakeClock, RedisServer

ACTOR = Actor(who="integrity", source="test")


async def test_sqlite_finds_a_claim_token_left_on_a_bound_binding(tmp_path: Path, clock: FakeClock) -> None:
    store = await open_store(f"sqlite:///{tmp_path}/store.db", clock=clock)
    try:
        await store.commit_claim(await store.claim_phone("m1", Phone("13800000001"), lease=60, actor=ACTOR))
        assert await store.integrity_problems() == []
        with sqlite3.connect(tmp_path / "store.db") as conn:
            conn.execute("UPDATE bindings SET token = 'stale' WHERE member_id = 'm1'")
        assert await store.integrity_problems() == ["m1: a claim's token or lease outside a claim"]
    finally:
        await store.close()


async def test_redis_finds_a_binding_missing_from_the_members_set(
    redis_server: RedisServer, clock: FakeClock
) -> None:
    prefix = f"i{uuid.uuid4().hex[:8]}:"
    store = await open_store(f"{redis_server.url}?prefix={prefix}", clock=clock)
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        await store.commit_claim(await store.claim_phone("m1", Phone("13800000001"), lease=60, actor=ACTOR))
        assert await store.integrity_problems() == []
        await client.srem(f"{{{prefix}}}members", "m1")
        assert await store.integrity_problems() == [
            "m1: binding missing from the members set",
            "phone 138****0001: index entry without binding (m1)",
        ]
    finally:
        await client.aclose()
        await store.close()
