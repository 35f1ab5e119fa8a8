"""The Redis store on Redis Cluster, and its migration from the first key layout.

A one-node cluster holding every slot accepts any key, but refuses a command or a script whose
declared keys hash to different slots; its slow log, set to record every command, shows that each
script names its keys (a cluster or a managed Redis routes a script by them), all in one slot.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot
from redis.exceptions import ResponseError
from redis.typing import EncodableT, FieldT

from callback_service.store import open_store
from handlers.core.binding import Actor, AuditAction, BindingState, DirectoryEntry, OpenidConflict, PhoneTaken
from handlers.core.phone import Phone
from handlers.core.reconcile import Fix
from handlers.usecases.contracts import Store
from tests.store.support import FakeClock, RedisServer, require_redis_server

ACTOR = Actor(who="cluster", source="test")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A one-node Redis Cluster that holds all 16384 slots."""
    # A one-node Redis Cluster: it refuses a command or a script whose declared keys span slots.
    cluster_mode = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
    server = RedisServer(require_redis_server(), tmp_path_factory.mktemp("cluster"), extra=cluster_mode)
    server.start()
    try:
        asyncio.run(_take_every_slot(server.url))
        yield server
    finally:
        server.kill()


async def _take_every_slot(url: str) -> None:
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        await client.execute_command("CLUSTER", "ADDSLOTSRANGE", "0", "16383")  # type: ignore[no-untyped-call]
        deadline = time.monotonic() + 10
        while "cluster_state:ok" not in await client.execute_command("CLUSTER", "INFO"):  # type: ignore[no-untyped-call]
            assert time.monotonic() < deadline, "the cluster did not come up"
            await asyncio.sleep(0.05)
    finally:
        await client.aclose()


@pytest.fixture
async def cluster_store(cluster: RedisServer, clock: FakeClock) -> AsyncIterator[Store]:
    """A store on the cluster under a prefix of its own."""
    store = await open_store(f"{cluster.url}?prefix=c{uuid.uuid4().hex[:8]}:", clock=clock)
    yield store
    await store.close()


async def test_a_cluster_refuses_keys_of_two_slots(cluster: RedisServer) -> None:
    client = aioredis.Redis.from_url(cluster.url, decode_responses=True)
    try:
        with pytest.raises(ResponseError, match="same slot"):
            await client.mget(["wecom-bind:b:m1", "wecom-bind:p:13800000001"])
    finally:
        await client.aclose()


async def test_every_change_runs_on_a_cluster(
    cluster: RedisServer, cluster_store: Store, clock: FakeClock
) -> None:
    client = aioredis.Redis.from_url(cluster.url, decode_responses=True)
    await client.config_set("slowlog-log-slower-than", 0)
    await client.config_set("slowlog-max-len", 100_000)
    await client.slowlog_reset()
    try:
        await every_change(cluster_store, clock)
        logged = await client.slowlog_get(100_000)
    finally:
        await client.config_set("slowlog-log-slower-than", 10_000)
        await client.aclose()
    commands = [bytes(entry["command"]).decode(errors="replace").split(" ") for entry in logged]
    scripts = [words for words in commands if words[0].upper() == "EVALSHA"]
    assert len(scripts) > 20
    for words in scripts:
        count = int(words[2])
        assert count >= 1, words[:3]
        keys = [w for w in words[3 : 3 + count] if not w.startswith("...")]
        assert len({key_slot(key.encode()) for key in keys}) == 1, keys


async def every_change(store: Store, clock: FakeClock) -> None:
    """Every rule-keeping change, the directory, kv, locks and the inbox, once."""
    claim = await store.claim_phone("m1", Phone("13800000001"), lease=60, actor=ACTOR)
    await store.commit_claim(claim)
    with pytest.raises(PhoneTaken):
        await store.claim_phone("m2", Phone("13800000001"), lease=60, actor=ACTOR)
    await store.release_claim(await store.claim_phone("m2", Phone("13800000002"), lease=60, actor=ACTOR))
    await store.follow("m1", "o1", actor=ACTOR)
    with pytest.raises(OpenidConflict):
        await store.follow("m2", "o1", actor=ACTOR)
    await store.unfollow("m1", actor=ACTOR)
    await store.set_member_phone("m3", Phone("13800000001"), take=True, actor=ACTOR)
    await store.rename_member("m3", "m4", actor=ACTOR)
    seen = await store.get_binding("m4")
    await store.fix_drift("m4", Fix.SET_PHONE, Phone("13800000003"), seen=seen, actor=ACTOR)
    await store.audit_conflict("m2", Phone("13800000001"), "I1: taken", actor=ACTOR)
    assert await store.delete_member("m4", actor=ACTOR)
    assert await store.get_binding_by_phone(Phone("13800000001")) is None
    assert await store.list_bindings() == []
    assert await store.integrity_problems() == []
    await store.directory_upsert([DirectoryEntry("m1", "学生", "物理", None)])
    assert await store.directory_count() == 1
    await store.kv_set("k", "v", ttl=60)
    assert await store.kv_pop("k") == "v"
    assert await store.kv_incr("n", ttl=60) == 1
    assert await store.kv_apply({"a": ("1", 60), "b": ("2", 60)}, deletes=["k"], if_absent=["a"])
    assert await store.kv_get_many(["a", "b"]) == ["1", "2"]
    assert await store.kv_incr_under({"n": 5, "m": 5}, ttl=60) is None
    token = await store.lock_acquire("l", lease=60)
    assert token is not None
    assert await store.lock_release("l", token)
    assert await store.inbox_append("d1", "subscribe", "<xml/>")
    [item] = await store.inbox_take(10, lease=30)
    assert await store.inbox_retry(item.id, "boom", delay=0) == 1
    await store.inbox_dead(item.id, "boom")
    assert await store.inbox_requeue_dead() == 1
    assert await store.inbox_oldest_pending() is not None
    await store.inbox_done(item.id)
    assert (await store.inbox_stats()).pending == 0
    assert await store.inbox_oldest_pending() is None
    await store.audit_note("m1", AuditAction.EXPORT, "data request", actor=ACTOR)
    await store.audit_conflict("m2", None, "openid o1 follows as member m1", actor=ACTOR)
    assert await store.audit_redact("m1", "openid o1", "openid o****") > 0
    assert await store.audit_redact(None, "openid o1", "openid o****") == 1
    assert await store.audit_prune(clock() + 1, member_id="m2") > 0
    assert await store.audit_prune(clock() + 1) > 0
    assert await store.directory_delete("m1")


async def test_the_first_key_layout_is_migrated(redis_server: RedisServer, tmp_path: Path) -> None:
    prefix = f"old{uuid.uuid4().hex[:8]}:"
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    record = {"id": 1, "at": "5.0", "who": "s", "source": "t", "action": "bind", "member": "m1",
              "phone": "138****0001", "detail": ""}
    try:
        await client.set(f"{prefix}schema", "1")
        await client.hset(f"{prefix}b:m1", mapping={"phone": "13800000001", "state": "followed",
                                                    "openid": "o1", "updated": "5.0"})
        await client.set(f"{prefix}p:13800000001", "m1")
        await client.set(f"{prefix}o:o1", "m1")
        await client.sadd(f"{prefix}members", "m1")
        await client.set(f"{prefix}audit:seq", "1")
        for key in (f"{prefix}audit", f"{prefix}audit:m:m1"):
            await client.lpush(key, json.dumps(record))
        await client.set(f"{prefix}other:b:m9", "another deployment's key")
        item: dict[FieldT, EncodableT] = {"dedup": "d1", "type": "subscribe", "payload": "<xml/>", "attempts": "2", "created": "4.0",
                "error": "boom"}
        await client.hset(f"{prefix}inbox:i:000000000000007", mapping=item)
        await client.zadd(f"{prefix}inbox:ready", {"000000000000007": 4.0})
        await client.set(f"{prefix}inbox:seq", "7")
        await client.set(f"{prefix}inbox:d:d1", str(time.time() + 3600))

        store = await open_store(f"{redis_server.url}?prefix={prefix}")
        try:
            binding = await store.get_binding("m1")
            assert binding is not None
            assert (binding.phone, binding.state, binding.openid) == ("13800000001", BindingState.FOLLOWED, "o1")
            assert (await store.get_binding_by_openid("o1")) == binding
            assert await store.integrity_problems() == []
            [audit] = await store.audit_list()
            assert audit.action is AuditAction.BIND
            await store.unfollow("m1", actor=ACTOR)
            assert [r.id for r in await store.audit_list(member_id="m1")] == [2, 1]
            [taken] = await store.inbox_take(10, lease=30)
            assert (taken.id, taken.dedup_key, taken.attempts, taken.last_error) == (7, "d1", 2, "boom")
            assert not await store.inbox_append("d1", "subscribe", "<xml/>")
            assert await store.inbox_append("d2", "subscribe", "<xml/>")
            assert [i.id for i in await store.inbox_take(10, lease=30)] == [8]
        finally:
            await store.close()
        left = sorted([key async for key in client.scan_iter(match=f"{prefix}*")])
        assert left == [f"{prefix}other:b:m9", f"{prefix}schema"]
        assert await client.get(f"{prefix}schema") == "3"  # code of the first layout refuses it now
    finally:
        await client.aclose()


def test_no_script_builds_a_key_of_its_own() -> None:
    from callback_service.store.redis import bindings, inbox, kv

    scripts = [
        value
        for module in (bindings, inbox, kv)
        for name, value in vars(module).items()
        if name.isupper() and isinstance(value, str) and "redis.call(" in value
    ]
    assert len(scripts) >= 10
    built = re.compile(r"redis\.call\('\w+',\s*[^,)]*\.\.")
    assert [line for script in scripts for line in script.splitlines() if built.search(line)] == []
