"""SQLite point reads answer from the event loop's thread: never queued behind a write that waits."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

from callback_service.store.sqlite import SqliteStore
from handlers.core.binding import Actor, DirectoryEntry
from handlers.core.phone import Phone

ACTOR = Actor(who="test", source="test")


async def test_point_reads_answer_while_a_write_waits_for_another_process(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = await SqliteStore.open(str(path))
    try:
        await store.kv_set("k", "v", ttl=60)
        await store.directory_upsert([DirectoryEntry("m1", "张三", "管理学院", Phone("13800138001"))])
        await store.commit_claim(await store.claim_phone("m1", Phone("13800138001"), lease=60, actor=ACTOR))
        other = sqlite3.connect(path, isolation_level=None)  # another process's writer, holding the lock
        other.execute("BEGIN IMMEDIATE")
        # The writer connection names each statement as it starts: the write's BEGIN IMMEDIATE
        # then waits on the lock in the store's thread, ahead of any call made after it.
        began = threading.Event()
        assert store._conn is not None
        store._conn.set_trace_callback(lambda sql: began.set() if sql.startswith("BEGIN") else None)
        try:
            write = asyncio.create_task(store.kv_set("k2", "v2", ttl=60))
            assert await asyncio.to_thread(began.wait, 10)
            assert await store.kv_get("k") == "v"
            assert await store.directory_get("m1") is not None
            binding = await store.get_binding("m1")
            assert binding is not None
            assert binding.phone == "13800138001"
            holder = await store.get_binding_by_phone(Phone("13800138001"))
            assert holder is not None
            assert holder.member_id == "m1"
            assert not write.done()
        finally:
            other.execute("COMMIT")
            other.close()
        await write
        assert await store.kv_get("k2") == "v2"
    finally:
        await store.close()


async def test_a_point_read_sees_the_write_just_committed(tmp_path: Path) -> None:
    store = await SqliteStore.open(str(tmp_path / "store.db"))
    try:
        for n in range(20):
            await store.kv_set("k", str(n), ttl=60)
            assert await store.kv_get("k") == str(n)
        await store.kv_delete("k")
        assert await store.kv_get("k") is None
    finally:
        await store.close()
