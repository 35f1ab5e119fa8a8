"""A store that is down raises StoreUnavailable, one typed error, and leaves nothing half-written."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import pytest

from callback_service.store import open_store
from callback_service.store.redis import RedisStore
from callback_service.store.sqlite import SqliteStore
from handlers.core.binding import Actor, Claim
from handlers.core.phone import Phone
from handlers.usecases.contracts import Store, StoreUnavailable
from tests.store.support import FakeClock, RedisServer, require_redis_server
from tests.support.processes import free_port

ACTOR = Actor(who="test", source="test")

OPERATIONS: list[Callable[[Store], Awaitable[object]]] = [
    lambda s: s.ping(),
    lambda s: s.claim_phone("m9", Phone("13800138009"), lease=60, actor=ACTOR),
    lambda s: s.get_binding("m1"),
    lambda s: s.get_binding_by_phone(Phone("13800138001")),
    lambda s: s.follow("m1", "openid-1", actor=ACTOR),
    lambda s: s.inbox_append("k", "event", "x"),
    lambda s: s.inbox_take(1, lease=5),
    lambda s: s.kv_get("k"),
    lambda s: s.kv_set("k", "v", ttl=5),
    lambda s: s.lock_acquire("l", lease=5),
    lambda s: s.audit_list(),
    lambda s: s.directory_count(),
]


@pytest.fixture
def own_redis(tmp_path: Path) -> RedisServer:
    """A redis-server of this test only, which it may kill or freeze."""
    server = RedisServer(require_redis_server(), tmp_path)
    server.start()
    return server


async def test_redis_killed_then_restarted(own_redis: RedisServer, clock: FakeClock) -> None:
    store = await open_store(own_redis.url, clock=clock)
    try:
        await store.commit_claim(await store.claim_phone("m1", Phone("13800138001"), lease=60, actor=ACTOR))
        own_redis.kill()
        for operation in OPERATIONS:
            with pytest.raises(StoreUnavailable):
                await operation(store)
        own_redis.start()
        await store.ping()
        await store.claim_phone("m1", Phone("13800138001"), lease=60, actor=ACTOR)
    finally:
        await store.close()
        own_redis.kill()


async def test_redis_that_does_not_answer_times_out(own_redis: RedisServer) -> None:
    store = await RedisStore.open(own_redis.url, socket_timeout=0.3)
    try:
        own_redis.pause()
        with pytest.raises(StoreUnavailable, match="Timeout"):
            await store.claim_phone("m1", Phone("13800138001"), lease=60, actor=ACTOR)
        own_redis.resume()
        await store.ping()
    finally:
        own_redis.resume()
        await store.close()
        own_redis.kill()


async def test_redis_nobody_listening() -> None:
    with pytest.raises(StoreUnavailable):
        await open_store(f"redis://127.0.0.1:{free_port()}/0")


@pytest.mark.parametrize("make", ["directory", "under_a_file", "not_a_database"])
async def test_sqlite_path_unusable(tmp_path: Path, make: str) -> None:
    path = tmp_path / "store.db"
    if make == "directory":
        path.mkdir()
    elif make == "under_a_file":
        (tmp_path / "file").write_text("x")
        path = tmp_path / "file" / "store.db"
    else:
        path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreUnavailable):
        await open_store(f"sqlite:///{path}")


async def test_a_closed_store_is_unavailable(store: Store) -> None:
    await store.close()
    for operation in OPERATIONS:
        with pytest.raises(StoreUnavailable):
            await operation(store)


async def test_sqlite_disk_full_writes_nothing(tmp_path: Path, clock: FakeClock) -> None:
    store = await SqliteStore.open(str(tmp_path / "store.db"), clock=clock)
    try:
        await store.commit_claim(await store.claim_phone("m0", Phone("13800138000"), lease=60, actor=ACTOR))

        def fill(conn: sqlite3.Connection) -> None:
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count = {pages}")

        await store._read(fill)

        async def snapshot() -> object:
            return (
                await store.list_bindings(),
                await store.audit_list(limit=10_000),
                await store.inbox_stats(),
            )

        failures: list[str] = []
        for n in range(1, 200):
            steps: list[Callable[[], Awaitable[object]]] = [
                partial(store.claim_phone, f"m{n}", Phone(f"138001381{n:02d}"), lease=60, actor=ACTOR),
                partial(store.inbox_append, f"k{n}", "event", "x" * 3000),
            ]
            for step in steps:
                before = await snapshot()
                try:
                    result = await step()
                except StoreUnavailable as exc:
                    failures.append(str(exc))
                    assert await snapshot() == before
                    continue
                if isinstance(result, Claim):
                    before = await snapshot()
                    try:
                        await store.commit_claim(result)
                    except StoreUnavailable as exc:
                        failures.append(str(exc))
                        assert await snapshot() == before
            if len(failures) >= 3:
                break
        assert failures, "the file never filled up"
        assert all("full" in failure for failure in failures)
        assert await store.integrity_problems() == []
    finally:
        await store.close()
