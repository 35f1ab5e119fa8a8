"""Opening a store by URL: schemes, paths, schema versions and migrations, Redis key prefixes."""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from callback_service.store import open_store
from callback_service.store.redis.layout import SCHEMA_VERSION as REDIS_SCHEMA_VERSION
from callback_service.store.sqlite import SCHEMA_VERSION, SqliteStore
from callback_service.store.sqlite.schema import MIGRATIONS
from handlers.core.binding import Actor
from handlers.core.phone import Phone
from handlers.usecases.contracts import StoreUnavailable
from tests.store.support import FakeClock, RedisServer

ACTOR = Actor(who="test", source="test")


@pytest.mark.parametrize(
    "url",
    ["postgres://user:secret@db/x", "sqlite:///", "sqlite://relative.db", "redis://h:1/0?prefix="],
)
async def test_a_bad_url_names_the_setting_and_hides_the_url(url: str) -> None:
    with pytest.raises(ValueError, match="WECOM_BIND_STORE_URL") as caught:
        await open_store(url)
    assert "secret" not in str(caught.value)


async def test_a_relative_sqlite_path_is_created_under_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = await open_store("sqlite:///data/wecom-bind.db")
    await store.ping()
    await store.close()
    assert (tmp_path / "data" / "wecom-bind.db").is_file()


async def test_sqlite_file_is_wal_full_sync_and_versioned(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "store.db"
    store = await SqliteStore.open(str(path), clock=clock)
    await store.commit_claim(await store.claim_phone("m1", Phone("13800138001"), lease=60, actor=ACTOR))
    synchronous = await store._read(lambda c: c.execute("PRAGMA synchronous").fetchone()[0])
    assert synchronous == 2  # FULL
    await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    again = await SqliteStore.open(str(path), clock=clock)
    binding = await again.get_binding("m1")
    assert binding is not None
    assert binding.phone == "13800138001"
    await again.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM schema_version").fetchone()[0] == 1


async def test_sqlite_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    await (await SqliteStore.open(str(path))).close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreUnavailable, match="newer"):
        await SqliteStore.open(str(path))


async def test_redis_prefixes_keep_deployments_apart(redis_server: RedisServer, clock: FakeClock) -> None:
    prefixes = [f"a{uuid.uuid4().hex[:8]}:", f"b{uuid.uuid4().hex[:8]}:"]
    stores = [await open_store(f"{redis_server.url}?prefix={p}", clock=clock) for p in prefixes]
    try:
        for n, store in enumerate(stores):
            claim = await store.claim_phone(f"m{n}", Phone("13800138001"), lease=60, actor=ACTOR)
            await store.commit_claim(claim)
            await store.inbox_append("k", "event", "x")
            await store.kv_set("k", "v", ttl=60)
            await store.directory_upsert([])
        for n, store in enumerate(stores):
            holder = await store.get_binding_by_phone(Phone("13800138001"))
            assert holder is not None
            assert holder.member_id == f"m{n}"
            assert await store.integrity_problems() == []
        client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
        for prefix in prefixes:
            # Every key under the deployment's hash tag {prefix} (one Redis Cluster slot).
            keys = [key async for key in client.scan_iter(match=f"{{{prefix}}}*")]
            assert len(keys) > 5
        await client.aclose()
    finally:
        for store in stores:
            await store.close()


async def test_redis_refuses_a_newer_schema(redis_server: RedisServer) -> None:
    prefix = f"s{uuid.uuid4().hex[:8]}:"
    client = aioredis.Redis.from_url(redis_server.url)
    await client.set(f"{prefix}schema", "99")
    await client.aclose()
    with pytest.raises(StoreUnavailable, match="newer"):
        await open_store(f"{redis_server.url}?prefix={prefix}")


async def test_redis_refuses_a_newer_schema_under_the_hash_tag(redis_server: RedisServer) -> None:
    prefix = f"s{uuid.uuid4().hex[:8]}:"
    client = aioredis.Redis.from_url(redis_server.url)
    await client.set(f"{{{prefix}}}schema", str(REDIS_SCHEMA_VERSION + 1))
    await client.aclose()
    with pytest.raises(StoreUnavailable, match="newer"):
        await open_store(f"{redis_server.url}?prefix={prefix}")


async def test_redis_refuses_a_prefix_with_a_brace(redis_server: RedisServer) -> None:
    with pytest.raises(ValueError, match="WECOM_BIND_STORE_URL: the Redis key prefix"):
        await open_store(f"{redis_server.url}?prefix=a{{b}}:")


def _open_once(path: str, barrier: Any, results: Any) -> None:
    """In a forked process: open the store at the barrier, as one of `serve --processes` workers."""
    async def open_and_close() -> None:
        store = await SqliteStore.open(path)
        await store.close()

    barrier.wait()
    try:
        asyncio.run(open_and_close())
        results.put("ok")
    except Exception as exc:  # reported to the parent, which asserts on it
        results.put(f"{type(exc).__name__}: {exc}")


def test_processes_opening_one_new_sqlite_file_at_once_all_open_it(tmp_path: Path) -> None:
    # Turning a new file to WAL races between processes, and SQLite answers that race "database is
    # locked" at once; before the open retried it, about one round in eight lost a worker.
    context = multiprocessing.get_context("fork")
    for round_ in range(30):
        path = str(tmp_path / f"store-{round_}.db")
        barrier, results = context.Barrier(6), context.Queue()
        openers = [context.Process(target=_open_once, args=(path, barrier, results)) for _ in range(6)]
        for opener in openers:
            opener.start()
        outcomes = [results.get(timeout=30) for _ in openers]
        for opener in openers:
            opener.join(10)
        assert outcomes == ["ok"] * 6, (round_, outcomes)


async def test_a_file_of_the_first_schema_gets_the_expiry_indexes(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "store.db"
    with sqlite3.connect(path) as conn:  # a file as the first version of the code left it
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for statement in MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version (version) VALUES (1)")
        conn.execute("INSERT INTO kv (key, value, expires_at) VALUES ('k', 'v', ?)", (clock() + 60,))
    store = await SqliteStore.open(str(path), clock=clock)
    try:
        assert await store.kv_get("k") == "v"
        for table in ("kv", "locks", "inbox_dedup"):
            query = f"EXPLAIN QUERY PLAN DELETE FROM {table} WHERE expires_at <= 0"  # noqa: S608

            def plan(c: sqlite3.Connection, query: str = query) -> str:
                return repr(c.execute(query).fetchall())

            assert f"{table}_expiry" in await store._read(plan)
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
