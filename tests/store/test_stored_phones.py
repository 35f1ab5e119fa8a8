"""A phone the store holds as text that is no mainland mobile (old data, or a hand's edit) is read as no
phone, with a warning naming the member and not the text; text that parses is read as its Phone."""

from __future__ import annotations

import json
import logging
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from callback_service.store import open_store
from handlers.core.binding import Actor, BindingState, DirectoryEntry
from handlers.core.phone import Phone
from handlers.usecases.contracts import Store
from tests.store.support import FakeClock, RedisServer

ACTOR = Actor(who="stored-phones", source="test")
P1, P2 = Phone("13800000001"), Phone("13800000002")


@dataclass
class Tampered:
    """A store, and a hand that rewrites the phone text of its records behind its back."""

    store: Store
    directory_phone: Callable[[str, str], Awaitable[None]]
    binding_phone: Callable[[str, str, str], Awaitable[None]]


@pytest.fixture(params=["sqlite", "redis"])
async def tampered(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Tampered]:
    """The store on each backend, with its raw records at hand."""
    if request.param == "sqlite":
        path = tmp_path / "store.db"
        store = await open_store(f"sqlite:///{path}", clock=clock)

        async def sqlite_directory(member_id: str, text: str) -> None:
            with sqlite3.connect(path) as conn:
                conn.execute("UPDATE directory SET phone = ? WHERE student_id = ?", (text, member_id))

        async def sqlite_binding(member_id: str, old: str, text: str) -> None:
            with sqlite3.connect(path) as conn:
                conn.execute("UPDATE bindings SET phone = ? WHERE member_id = ?", (text, member_id))
                conn.execute("UPDATE phones SET phone = ? WHERE phone = ?", (text, old))

        yield Tampered(store, sqlite_directory, sqlite_binding)
        await store.close()
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    prefix = f"s{uuid.uuid4().hex[:8]}:"
    tag = "{" + prefix + "}"
    store = await open_store(f"{server.url}?prefix={prefix}", clock=clock)
    client = aioredis.Redis.from_url(server.url, decode_responses=True)

    async def redis_directory(member_id: str, text: str) -> None:
        name, department, _ = json.loads(await client.hget(tag + "dir", member_id) or "[]")
        await client.hset(tag + "dir", member_id, json.dumps([name, department, text]))

    async def redis_binding(member_id: str, old: str, text: str) -> None:
        data = json.loads(await client.get(f"{tag}b:{member_id}") or "{}")
        await client.set(f"{tag}b:{member_id}", json.dumps({**data, "phone": text}))
        await client.rename(f"{tag}p:{old}", f"{tag}p:{text}")

    yield Tampered(store, redis_directory, redis_binding)
    await client.aclose()
    await store.close()


async def test_a_directory_phone_kept_as_typed_reads_as_its_digits(tampered: Tampered) -> None:
    store = tampered.store
    await store.directory_upsert([DirectoryEntry("m1", "张三", "管理学院", P1)])
    await tampered.directory_phone("m1", "+86 138-0000-0001")
    entry = await store.directory_get("m1")
    assert entry is not None
    assert entry.phone == P1
    assert isinstance(entry.phone, Phone)
    assert [e.phone for e in await store.directory_list()] == [P1]


async def test_a_directory_phone_that_is_no_mobile_reads_as_none_with_a_warning(
    tampered: Tampered, caplog: pytest.LogCaptureFixture
) -> None:
    store = tampered.store
    await store.directory_upsert([DirectoryEntry("m1", "张三", "管理学院", P1)])
    await tampered.directory_phone("m1", "021-6779 1234")
    with caplog.at_level(logging.WARNING):
        assert await store.directory_get("m1") == DirectoryEntry("m1", "张三", "管理学院", None)
        assert await store.directory_list() == [DirectoryEntry("m1", "张三", "管理学院", None)]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings
    assert all("member m1" in w for w in warnings)
    assert not any("6779" in w for w in warnings)


async def test_a_bound_phone_that_is_no_mobile_reads_as_none_the_check_names_it_and_the_member_binds_again(
    tampered: Tampered,
) -> None:
    store = tampered.store
    await store.commit_claim(await store.claim_phone("m1", P1, lease=60, actor=ACTOR))
    await tampered.binding_phone("m1", P1, "1380000")
    binding = await store.get_binding("m1")
    assert binding is not None
    assert (binding.state, binding.phone) == (BindingState.BOUND, None)
    assert [b.phone for b in await store.list_bindings()] == [None]
    problems = await store.integrity_problems()
    assert "m1: bound without phone, or with an openid" in problems
    # The member is not stuck: a new phone binds, and the stored one no longer stands in the way.
    bound = await store.commit_claim(await store.claim_phone("m1", P2, lease=60, actor=ACTOR))
    assert (bound.state, bound.phone) == (BindingState.BOUND, P2)
    assert await store.get_binding_by_phone(P2) == bound
