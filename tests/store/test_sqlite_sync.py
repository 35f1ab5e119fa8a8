"""Which SQLite commits pay an fsync: bindings, audit and the inbox do; what expires on its own does not."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from callback_service.store.sqlite import SqliteStore
from handlers.core.binding import Actor
from handlers.core.phone import Phone

STUDENT = Actor(who="2021001", source="bind-page 127.0.0.1")


async def _synchronous_at_commit(store: SqliteStore, write: Callable[[], Awaitable[object]]) -> list[int]:
    """The connection's synchronous level at each COMMIT that write makes (2 FULL, 1 NORMAL)."""
    conn = store._connection()
    levels: list[int] = []

    def trace(statement: str) -> None:
        if statement.strip().upper() == "COMMIT":
            # A second cursor on the same thread, inside the callback: reads the level in force.
            levels.append(int(conn.execute("PRAGMA synchronous").fetchone()[0]))

    await store._call(lambda: conn.set_trace_callback(trace))
    try:
        await write()
    finally:
        await store._call(lambda: conn.set_trace_callback(None))
    return levels


@pytest.fixture
async def sqlite(tmp_path: Path) -> SqliteStore:
    return await SqliteStore.open(str(tmp_path / "store.db"))


async def test_bindings_and_the_inbox_commit_with_an_fsync(sqlite: SqliteStore) -> None:
    try:
        claim = await sqlite.claim_phone("2021001", Phone("13800000001"), lease=60, actor=STUDENT)
        durable = [
            lambda: sqlite.claim_phone("2021002", Phone("13800000002"), lease=60, actor=STUDENT),
            lambda: sqlite.commit_claim(claim),
            lambda: sqlite.inbox_append("k1", "subscribe", "<xml/>"),
        ]
        for write in durable:
            assert await _synchronous_at_commit(sqlite, write) == [2]
    finally:
        await sqlite.close()


async def test_sessions_page_records_counters_locks_and_leases_commit_without_one(sqlite: SqliteStore) -> None:
    try:
        await sqlite.inbox_append("k0", "subscribe", "<xml/>")
        ephemeral = [
            lambda: sqlite.inbox_take(1, lease=60),
            lambda: sqlite.inbox_done(1),
            lambda: sqlite.kv_set("session:abc", "{}", ttl=60),
            lambda: sqlite.kv_set_if_absent("cas-ticket:abc", "1", ttl=60),
            lambda: sqlite.kv_incr("rate:bind:student:2021001", ttl=60),
            lambda: sqlite.kv_pop("session:abc"),
            lambda: sqlite.kv_delete("cas-ticket:abc"),
            lambda: sqlite.lock_acquire("token", lease=10),
        ]
        for write in ephemeral:
            assert await _synchronous_at_commit(sqlite, write) == [1]
        # And the connection is back at FULL for whatever comes next.
        assert await _synchronous_at_commit(sqlite, lambda: sqlite.inbox_append("k2", "subscribe", "<x/>")) == [2]
    finally:
        await sqlite.close()
