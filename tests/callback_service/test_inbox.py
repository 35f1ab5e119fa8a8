"""The durable inbox behind the callback endpoint: dedup, retries, dead letters, restart, metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from callback_service.callbacks.inbox import DEAD, INBOX, Inbox
from callback_service.callbacks.xml import parse_event
from callback_service.metrics import METRICS, Metrics
from callback_service.store import STORE, open_store
from callback_service.web.app import create_app
from handlers.core.binding import InboxItem
from handlers.core.events import Event
from handlers.usecases.dispatch import Dispatcher
from tests.callback_service.conftest import NOW, Clock, Recorder
from tests.store.support import FakeClock
from tests.support.callbacks import encrypt_callback, event_xml
from tests.support.world import world_settings

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Awaitable[Client]]


async def _post(client: Client, message: str, nonce: str = "1") -> int:
    signed = encrypt_callback(message, timestamp=NOW, nonce=nonce)
    response = await client.post("/wecom/callback", params=signed.query, data=signed.body)
    return response.status


async def test_a_retried_callback_is_handled_once(client: Client, recorder: Recorder) -> None:
    message = event_xml("subscribe", "zhangsan", create_time=NOW)
    # WeCom retries with the same message; a replay under another nonce is the same message too.
    for nonce in ("1", "1", "2"):
        assert await _post(client, message, nonce) == 200
    assert await client.app[INBOX].drain() == 1
    assert [event.member_id for event in recorder.events] == ["zhangsan"]


async def test_two_events_in_the_same_second_are_both_kept(client: Client, recorder: Recorder) -> None:
    assert await _post(client, event_xml("subscribe", "zhangsan", create_time=NOW)) == 200
    assert await _post(client, event_xml("unsubscribe", "zhangsan", create_time=NOW)) == 200
    assert await client.app[INBOX].drain() == 2
    assert [event.kind for event in recorder.events] == ["subscribe", "unsubscribe"]


async def test_a_failing_handler_is_retried_then_dead_lettered(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 's.db'}")
    tries: list[str] = []

    async def failing(event: Event) -> None:
        tries.append(event.member_id)
        raise RuntimeError("WeCom said no")

    metrics = Metrics()
    inbox = Inbox(
        store=store,
        dispatcher=Dispatcher({}, fallback=failing),
        metrics=metrics,
        workers=1,
        max_attempts=3,
        retry_delay=lambda attempts: 0.0,
    )
    try:
        signed_raw = event_xml("subscribe", "lisi", create_time=NOW)
        await store.inbox_append("k1", "subscribe", signed_raw)
        for _ in range(5):
            await inbox.drain()
        assert tries == ["lisi", "lisi", "lisi"]
        [dead] = await store.inbox_list_dead()
        assert dead.attempts >= 2
        assert "WeCom said no" in (dead.last_error or "")
        assert metrics.value(DEAD, kind="subscribe") == 1
        assert (await store.inbox_stats()).dead == 1
    finally:
        await store.close()


async def test_a_restarted_app_handles_what_the_last_one_left(
    aiohttp_client: ClientFactory, tmp_path: Path, clock: Clock
) -> None:
    settings = world_settings(store_url=f"sqlite:///{tmp_path / 'store.db'}")
    first = Recorder()
    client = await aiohttp_client(
        create_app(settings, clock=clock, dispatcher=first.dispatcher(), run_workers=False)
    )
    assert await _post(client, event_xml("subscribe", "wangwu", create_time=NOW)) == 200
    await client.close()  # acknowledged, never handled
    assert first.events == []

    second = Recorder()
    app = create_app(settings, clock=clock, dispatcher=second.dispatcher(), run_workers=True)
    client = await aiohttp_client(app)
    await second.wait_for(1)  # the workers start on their own
    assert [event.member_id for event in second.events] == ["wangwu"]
    await client.close()


async def test_store_down_answers_503_and_acknowledges_nothing(client: Client) -> None:
    await client.app[STORE].close()
    status = await _post(client, event_xml("subscribe", "zhangsan", create_time=NOW))
    assert status == 503


async def test_metrics_and_ready(client: Client) -> None:
    message = event_xml("subscribe", "zhangsan", create_time=NOW)
    await _post(client, message)
    await _post(client, message)
    assert client.app[METRICS].value("wecom_bind_inbox_duplicates_total") == 1
    response = await client.get("/ready")
    assert response.status == 503  # the store is up, but no WeCom answers on port 9
    assert await response.json() == {"status": "unavailable"}  # the checks: to the metrics bearer only
    await client.app[STORE].close()
    response = await client.get("/ready")
    assert response.status == 503


async def test_shutdown_finishes_the_event_in_flight(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 's.db'}")
    started, release, handled = asyncio.Event(), asyncio.Event(), []

    async def slow(event: Event) -> None:
        started.set()
        await release.wait()
        handled.append(event.member_id)

    inbox = Inbox(store=store, dispatcher=Dispatcher({}, fallback=slow), metrics=Metrics(), workers=2)
    try:
        await store.inbox_append("k1", "subscribe", event_xml("subscribe", "lisi", create_time=NOW))
        inbox.start()
        await asyncio.wait_for(started.wait(), 5)
        # The stop begins (its first step runs before the handler wakes), then the event finishes.
        stopping = asyncio.create_task(inbox.stop(grace=5))
        release.set()
        await stopping
        assert handled == ["lisi"]
        stats = await store.inbox_stats()
        assert (stats.pending, stats.leased, stats.dead) == (0, 0, 0)
    finally:
        await store.close()


async def test_shutdown_past_its_grace_returns_the_event(tmp_path: Path) -> None:
    clock = FakeClock()
    store = await open_store(f"sqlite:///{tmp_path / 's.db'}", clock=clock)
    started, handled = asyncio.Event(), []

    async def stuck(event: Event) -> None:
        started.set()
        await asyncio.Event().wait()

    async def good(event: Event) -> None:
        handled.append(event.member_id)

    first = Inbox(store=store, dispatcher=Dispatcher({}, fallback=stuck), metrics=Metrics(), workers=1,
                  lease=0.5)
    try:
        await store.inbox_append("k1", "subscribe", event_xml("subscribe", "lisi", create_time=NOW))
        first.start()
        await asyncio.wait_for(started.wait(), 5)
        await first.stop(grace=0.1)
        assert (await store.inbox_stats()).leased == 1  # not done, not lost
        clock.advance(0.6)  # the lease runs out
        second = Inbox(store=store, dispatcher=Dispatcher({}, fallback=good), metrics=Metrics(), workers=1)
        assert await second.drain() == 1
        assert handled == ["lisi"]
    finally:
        await store.close()


class Heard(logging.Handler):
    """Sets `heard` when a log record holds the text (the workers log on the event loop's thread)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.heard = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.heard.set()


async def test_a_worker_outlives_a_store_outage_mid_event(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 's.db'}")
    started, release = asyncio.Event(), asyncio.Event()

    async def waiting(event: Event) -> None:
        started.set()
        await release.wait()

    inbox = Inbox(store=store, dispatcher=Dispatcher({}, fallback=waiting), metrics=Metrics(), workers=1,
                  idle_poll=0.05)
    await store.inbox_append("k1", "subscribe", event_xml("subscribe", "lisi", create_time=NOW))
    inbox.start()
    await asyncio.wait_for(started.wait(), 5)
    await store.close()  # the store goes away while the event is being handled
    outage = Heard("store unavailable while handling event")
    logging.getLogger().addHandler(outage)
    try:
        release.set()
        await asyncio.wait_for(outage.heard.wait(), 10)
    finally:
        logging.getLogger().removeHandler(outage)
    assert inbox.workers_alive == 1
    await inbox.stop(grace=1)
    assert inbox.workers_alive == 0


async def test_an_accepted_event_wakes_one_idle_worker_not_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 's.db'}")
    takes: list[int] = []
    looked = asyncio.Event()
    take = store.inbox_take

    async def counted(limit: int, *, lease: float) -> list[InboxItem]:
        items = await take(limit, lease=lease)
        takes.append(len(items))
        looked.set()
        return items

    monkeypatch.setattr(store, "inbox_take", counted)

    async def taken(count: int) -> None:
        async with asyncio.timeout(10):
            while len(takes) < count:
                looked.clear()
                await looked.wait()

    handled: list[str] = []

    async def record(event: Event) -> None:
        handled.append(event.member_id)

    inbox = Inbox(store=store, dispatcher=Dispatcher({}, fallback=record), metrics=Metrics(), workers=4,
                  idle_poll=30)
    inbox.start()
    try:
        await taken(4)  # each worker looks once at start, finds nothing and goes idle
        assert takes == [0, 0, 0, 0]
        await inbox.accept(parse_event(event_xml("subscribe", "lisi", create_time=NOW).encode()))
        await taken(6)  # the woken worker handles the event and looks once more
        # Stopped workers leave without a take: a worker woken by the accept would have taken by now
        # (at its next turn of the loop), long before the event's handling and the second look.
        await inbox.stop(grace=1)
        assert handled == ["lisi"]
        # One worker woke, took the event, and looked once more; the three others slept on.
        assert takes[4:] == [1, 0]
    finally:
        await inbox.stop(grace=1)
        await store.close()
    assert inbox.workers_alive == 0
