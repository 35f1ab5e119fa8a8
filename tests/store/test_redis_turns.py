"""Redis: the commands of one turn of the event loop share a pipeline, each with its own answer; a
decision starts from the records as this process last saw them, and reads again when they changed."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from callback_service.store import open_store
from callback_service.store.redis import RedisStore
from handlers.core.binding import Actor, ClaimLost
from handlers.core.phone import Phone
from handlers.usecases.contracts import Store, StoreUnavailable
from tests.store.support import RedisServer, require_redis_server

ACTOR = Actor(who="test", source="test")


async def test_each_command_of_a_turn_gets_its_own_answer(redis_store: Store, redis_server: RedisServer) -> None:
    assert isinstance(redis_store, RedisStore)
    for n in range(5):
        await redis_store.kv_set(f"k{n}", str(n), ttl=60)
    # A key of the wrong type under the store's prefix: its own reads fail, the others' do not.
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        await client.set(redis_store._key("kv", "broken"), "not a hash")
    finally:
        await client.aclose()
    answers = await asyncio.gather(
        *(redis_store.kv_get(f"k{n}") for n in range(5)),
        redis_store.kv_get("broken"),
        redis_store.kv_set_if_absent("k0", "again", ttl=60),
        redis_store.claim_phone("m1", Phone("13800138001"), lease=60, actor=ACTOR),
        redis_store.kv_get_many(["k4", "missing", "k1"]),
        return_exceptions=True,
    )
    assert answers[:5] == ["0", "1", "2", "3", "4"]
    assert isinstance(answers[5], StoreUnavailable)
    assert "WRONGTYPE" in str(answers[5])
    assert answers[6] is False
    assert not isinstance(answers[7], BaseException)
    assert answers[8] == ["4", None, "1"]
    assert await redis_store.integrity_problems() == []


async def test_scripts_the_server_forgot_are_loaded_again(redis_store: Store, redis_server: RedisServer) -> None:
    await redis_store.kv_set("k", "v", ttl=60)
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        await client.script_flush()
    finally:
        await client.aclose()
    # Several at once, each told NOSCRIPT in one pipeline: each loads and runs its script once.
    await asyncio.gather(*(redis_store.kv_incr("n", ttl=60) for _ in range(3)), redis_store.kv_set("k", "w", ttl=60))
    assert await redis_store.kv_get_many(["n", "k"]) == ["3", "w"]
    claim = await redis_store.claim_phone("m1", Phone("13800138001"), lease=60, actor=ACTOR)
    await redis_store.commit_claim(claim)
    binding = await redis_store.get_binding("m1")
    assert binding is not None


async def test_a_closed_store_answers_unavailable_at_once(redis_store: Store) -> None:
    await redis_store.close()
    with pytest.raises(StoreUnavailable):
        await redis_store.kv_get("k")
    with pytest.raises(StoreUnavailable):
        await redis_store.kv_set("k", "v", ttl=60)


async def _commands_during(server: RedisServer, step: Callable[[], Awaitable[object]]) -> list[str]:
    """The commands the server ran while step ran, by name (from its slow log, which logs them all)."""
    client = aioredis.Redis.from_url(server.url, decode_responses=True)
    try:
        await client.config_set("slowlog-log-slower-than", 0)
        await client.slowlog_reset()
        await step()
        logged = await client.slowlog_get(10_000)
        await client.config_set("slowlog-log-slower-than", 10_000)
    finally:
        await client.aclose()
    names = [bytes(entry["command"]).decode(errors="replace").split(" ")[0].upper() for entry in logged]
    return [name for name in reversed(names) if name not in ("SLOWLOG", "CONFIG")]


async def test_a_commit_starts_from_its_claims_record_without_reading_it(
    redis_store: Store, redis_server: RedisServer
) -> None:
    claim = await redis_store.claim_phone("m1", Phone("13800138001"), lease=60, actor=ACTOR)
    commands = await _commands_during(redis_server, lambda: redis_store.commit_claim(claim))
    assert "MGET" not in commands
    assert commands.count("EVALSHA") == 1
    binding = await redis_store.get_binding("m1")
    assert binding is not None
    assert binding.phone == "13800138001"


async def test_a_record_another_instance_changed_is_read_again_and_decided_afresh(
    redis_store: Store, redis_server: RedisServer
) -> None:
    assert isinstance(redis_store, RedisStore)
    other = await open_store(f"{redis_server.url}?prefix={redis_store._plain_prefix}")
    try:
        claim = await redis_store.claim_phone("m1", Phone("13800138001"), lease=60, actor=ACTOR)
        await redis_store.commit_claim(claim)
        # Another instance removes the member: what this one last saw is stale.
        assert await other.delete_member("m1", actor=ACTOR)
        again = await redis_store.claim_phone("m1", Phone("13800138002"), lease=60, actor=ACTOR)
        assert not again.already_bound
        assert again.previous_phone is None
        # And a claim that the other instance released meanwhile is lost, not committed.
        assert await other.release_claim(again)
        with pytest.raises(ClaimLost):
            await redis_store.commit_claim(again)
        assert await redis_store.get_binding("m1") is None
        assert await redis_store.integrity_problems() == []
    finally:
        await other.close()


async def test_a_turn_whose_server_is_gone_fails_each_of_its_callers(tmp_path: Path) -> None:
    server = RedisServer(require_redis_server(), tmp_path)
    server.start()
    store = await open_store(server.url)
    try:
        await store.kv_set("k", "v", ttl=60)
        server.kill()
        answers = await asyncio.gather(
            store.kv_get("k"),
            store.kv_set("k", "w", ttl=60),
            store.get_binding("m1"),
            store.claim_phone("m1", Phone("13800138001"), lease=60, actor=ACTOR),
            return_exceptions=True,
        )
        assert all(isinstance(answer, StoreUnavailable) for answer in answers), answers
    finally:
        await store.close()
        server.kill()
