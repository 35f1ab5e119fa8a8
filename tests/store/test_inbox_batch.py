"""Concurrent inbox appends share one transaction or script call: each caller gets its own answer."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from callback_service.store import open_store
from callback_service.store.sqlite import SqliteStore
from handlers.usecases.contracts import Store, StoreUnavailable
from tests.store.support import FakeClock, RedisServer, require_redis_server

LEASE = 60.0
PAYLOADS = [
    "<xml>一</xml>",
    '<xml><A><![CDATA[quote " backslash \\ brackets [] {} ]]></A></xml>',
    "<xml>\u2028 \U0001f600 \t\n</xml>",
    '["not", "a", "batch"]',
    "",
]


async def test_a_batch_answers_each_caller_and_keeps_the_first_of_its_duplicates(store: Store) -> None:
    assert await store.inbox_append("old", "subscribe", "<xml>old</xml>")
    keys = ["a", "b", "a", "old", "c", "b", "d"]
    results = await asyncio.gather(
        *(store.inbox_append(key, "subscribe", f"<xml>{key}{n}</xml>") for n, key in enumerate(keys))
    )
    assert results == [True, True, False, False, True, False, True]
    taken = await store.inbox_take(100, lease=LEASE)
    assert [(item.dedup_key, item.payload) for item in taken] == [
        ("old", "<xml>old</xml>"),
        ("a", "<xml>a0</xml>"),
        ("b", "<xml>b1</xml>"),
        ("c", "<xml>c4</xml>"),
        ("d", "<xml>d6</xml>"),
    ]


async def test_payloads_and_types_come_back_as_they_went_in(store: Store) -> None:
    results = await asyncio.gather(
        *(store.inbox_append(f"k{n}", f"type-{n}", payload) for n, payload in enumerate(PAYLOADS))
    )
    assert all(results)
    taken = await store.inbox_take(100, lease=LEASE)
    assert [(item.event_type, item.payload) for item in taken] == [
        (f"type-{n}", payload) for n, payload in enumerate(PAYLOADS)
    ]


async def test_more_appends_than_one_batch_holds(store: Store) -> None:
    keys = [f"k{n % 700}" for n in range(1000)]
    results = await asyncio.gather(*(store.inbox_append(key, "subscribe", key) for key in keys))
    assert results == [n < 700 for n in range(1000)]
    assert (await store.inbox_stats()).pending == 700


async def test_sqlite_a_failing_batch_fails_every_caller_and_writes_nothing(
    tmp_path: Path, clock: FakeClock
) -> None:
    store = await SqliteStore.open(str(tmp_path / "store.db"), clock=clock)
    try:
        assert await store.inbox_append("before", "event", "x")

        def fill(conn: sqlite3.Connection, pages: int | None = None) -> None:
            pages = pages or conn.execute("PRAGMA page_count").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count = {pages}")

        await store._read(fill)
        keys = [f"k{n}" for n in range(20)]
        outcomes = await asyncio.gather(
            *(store.inbox_append(key, "event", "x" * 3000) for key in keys), return_exceptions=True
        )
        assert all(isinstance(outcome, StoreUnavailable) for outcome in outcomes), outcomes
        assert (await store.inbox_stats()).pending == 1
        await store._read(lambda conn: fill(conn, 1_000_000))
        # Nothing of the failed batch was remembered: the same events are new, not retries.
        assert all(await asyncio.gather(*(store.inbox_append(key, "event", "x" * 3000) for key in keys)))
        assert (await store.inbox_stats()).pending == 21
    finally:
        await store.close()


async def test_redis_a_failing_batch_fails_every_caller(tmp_path: Path, clock: FakeClock) -> None:
    server = RedisServer(require_redis_server(), tmp_path)
    server.start()
    try:
        store = await open_store(server.url, clock=clock)
        try:
            server.kill()
            outcomes = await asyncio.gather(
                *(store.inbox_append(f"k{n}", "event", "x") for n in range(20)), return_exceptions=True
            )
            assert all(isinstance(outcome, StoreUnavailable) for outcome in outcomes), outcomes
            server.start()
            assert all(await asyncio.gather(*(store.inbox_append(f"k{n}", "event", "x") for n in range(20))))
        finally:
            await store.close()
    finally:
        server.kill()


async def test_a_caller_that_goes_away_does_not_stop_its_batch(store: Store) -> None:
    survivor = asyncio.ensure_future(store.inbox_append("stays", "event", "x"))
    leaver = asyncio.ensure_future(store.inbox_append("leaves", "event", "y"))
    await asyncio.sleep(0)
    leaver.cancel()
    assert await survivor
    with pytest.raises(asyncio.CancelledError):
        await leaver
    # The event was handed over before its caller left: it is stored, and its retry is a no-op.
    assert not await store.inbox_append("leaves", "event", "y")
    assert (await store.inbox_stats()).pending == 2
