"""A Redis that would lose acknowledged writes on a restart is refused at start, by /ready, and by
the callback endpoint: only the append-only file counts, RDB snapshots alone are refused like none."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis

from callback_service.store import open_store
from callback_service.web.app import create_app
from handlers.usecases.contracts import StoreNotDurable
from tests.store.support import RedisServer, require_redis_server
from tests.support.callbacks import encrypt_callback, event_xml
from tests.support.processes import free_port, start_service, stop, wait_healthy
from tests.support.world import ServerFactory, service_env, world_settings


def _server(tmp_path: Path, **options: object) -> Iterator[RedisServer]:
    server = RedisServer(require_redis_server(), tmp_path, **options)  # type: ignore[arg-type]
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def volatile(tmp_path: Path) -> Iterator[RedisServer]:
    """`redis-server --appendonly no --save ""`: nothing reaches the disk."""
    yield from _server(tmp_path, aof=False)


@pytest.fixture
def aof(tmp_path: Path) -> Iterator[RedisServer]:
    yield from _server(tmp_path, aof=True, appendfsync="no")


async def test_a_redis_without_persistence_is_refused_at_open(volatile: RedisServer) -> None:
    with pytest.raises(StoreNotDurable, match="redis does not persist") as caught:
        await open_store(volatile.url)
    assert "appendonly no" in str(caught.value)
    assert "WECOM_BIND_REDIS_ALLOW_VOLATILE" in str(caught.value)


async def test_allowed_it_opens_with_a_warning(
    volatile: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        store = await open_store(volatile.url, allow_volatile=True)
    try:
        await store.ping()
        assert any("does not persist" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    finally:
        await store.close()


async def test_aof_opens_without_a_warning(aof: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        store = await open_store(aof.url)
    await store.ping()
    await store.close()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.fixture
def snapshots_only(tmp_path: Path) -> Iterator[RedisServer]:
    """`redis-server --appendonly no --save "3600 1"`: RDB snapshots, which lose what came after the last."""
    yield from _server(tmp_path, aof=False, save="3600 1")


async def test_rdb_snapshots_only_are_refused_at_open(snapshots_only: RedisServer) -> None:
    with pytest.raises(StoreNotDurable, match="redis does not persist") as caught:
        await open_store(snapshots_only.url)
    assert "appendonly no, RDB save points set" in str(caught.value)
    assert "WECOM_BIND_REDIS_ALLOW_VOLATILE" in str(caught.value)


async def test_an_append_is_refused_once_aof_is_off_and_writes_nothing(aof: RedisServer) -> None:
    store = await open_store(f"{aof.url}?prefix=guard:")
    admin = aioredis.Redis.from_url(aof.url)
    try:
        assert await store.inbox_append("d1", "subscribe", "<xml/>", member_id="m1", create_time=1)
        await admin.config_set("appendonly", "no")
        with pytest.raises(StoreNotDurable, match="appendonly no"):
            await store.inbox_append("d2", "subscribe", "<xml/>", member_id="m1", create_time=2)
        stats = await store.inbox_stats()
        assert (stats.pending, stats.leased) == (1, 0)
        await admin.config_set("appendonly", "yes")
        assert await store.inbox_append("d2", "subscribe", "<xml/>", member_id="m1", create_time=2)
    finally:
        await admin.aclose()
        await store.close()


async def test_allowed_volatile_appends_go_on(volatile: RedisServer) -> None:
    store = await open_store(f"{volatile.url}?prefix=guard:", allow_volatile=True)
    try:
        assert await store.inbox_append("d1", "subscribe", "<xml/>")
    finally:
        await store.close()


@pytest.mark.parametrize(("with_aof", "refused"), [(False, True), (True, False)])
async def test_with_config_renamed_info_persistence_decides(tmp_path: Path, with_aof: bool, refused: bool) -> None:
    for server in _server(tmp_path, aof=with_aof, appendfsync="no", extra=("--rename-command", "CONFIG", "")):
        if refused:
            with pytest.raises(StoreNotDurable, match="appendonly no"):
                await open_store(server.url)
        else:
            store = await open_store(server.url)
            await store.ping()
            await store.close()


@pytest.fixture(params=["", "3600 1"], ids=["no-snapshots", "snapshots"])
def aof_then_off(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisServer]:
    """AOF on at start, with or without RDB save points (which do not make up for it once AOF is off)."""
    yield from _server(tmp_path, aof=True, appendfsync="no", save=request.param)


# /ready names its checks to the metrics bearer only.
READY_BEARER = "the-monitoring-bearer-0123456789abcdef"
BEARER = {"Authorization": f"Bearer {READY_BEARER}"}


async def test_persistence_turned_off_later_fails_ping_and_ready(
    aof_then_off: RedisServer, aiohttp_server: ServerFactory
) -> None:
    aof = aof_then_off
    settings = world_settings(store_url=f"{aof.url}?prefix=ready:", metrics_token=READY_BEARER)
    service = await aiohttp_server(create_app(settings, run_workers=False))
    admin = aioredis.Redis.from_url(aof.url)
    try:
        await admin.config_set("appendonly", "no")
        async with aiohttp.ClientSession(headers=BEARER) as http, http.get(service.make_url("/ready")) as response:
            assert response.status == 503
            body = await response.json()
        assert body["store"] == "redis does not persist"
        assert body["status"] == "unavailable"
    finally:
        await admin.aclose()


async def test_allowed_volatile_is_ready(volatile: RedisServer, aiohttp_server: ServerFactory) -> None:
    settings = world_settings(
        store_url=f"{volatile.url}?prefix=ready:", redis_allow_volatile=True, metrics_token=READY_BEARER
    )
    service = await aiohttp_server(create_app(settings, run_workers=False))
    async with aiohttp.ClientSession(headers=BEARER) as http, http.get(service.make_url("/ready")) as response:
        body = await response.json()
    assert body["store"] == "up"


@pytest.fixture(params=["", "3600 1"], ids=["no-snapshots", "snapshots-only"])
def without_aof(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisServer]:
    """AOF off, with or without RDB save points."""
    yield from _server(tmp_path, aof=False, save=request.param)


def test_serve_refuses_to_start_naming_the_problem(without_aof: RedisServer) -> None:
    volatile = without_aof
    port = free_port()
    process = start_service(
        ["serve", "--host", "127.0.0.1", "--port", str(port)], service_env(port, store_url=volatile.url)
    )
    try:
        process.wait(timeout=30)
    finally:
        _, stderr = stop(process)
    assert process.returncode == 3
    assert "redis does not persist" in stderr
    assert "WECOM_BIND_REDIS_ALLOW_VOLATILE" in stderr
    assert "Traceback" not in stderr


def test_serve_allowed_volatile_warns_at_start(volatile: RedisServer) -> None:
    port = free_port()
    env = service_env(port, store_url=volatile.url) | {"WECOM_BIND_REDIS_ALLOW_VOLATILE": "true"}
    process = start_service(["serve", "--host", "127.0.0.1", "--port", str(port)], env)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", process)
    finally:
        stdout, stderr = stop(process)
    assert "does not persist" in stdout + stderr


async def test_aof_switched_off_under_load_answers_503_and_loses_nothing_acknowledged(
    tmp_path: Path, aiohttp_server: ServerFactory
) -> None:
    """Callbacks stream in; AOF goes off at run time; Redis is killed -9 and restarted from its AOF:
    every event answered 200 is in the inbox, and the endpoint answered 503 once AOF was off."""
    server = RedisServer(require_redis_server(), tmp_path, appendfsync="everysec")
    server.start()
    admin = aioredis.Redis.from_url(server.url)
    try:
        url = f"{server.url}?prefix=loss:"
        service = await aiohttp_server(create_app(world_settings(store_url=url), run_workers=False))
        endpoint = service.make_url("/wecom/callback")
        acknowledged: list[str] = []
        refused = 0
        numbers = iter(range(5000))  # bounded: the senders stop at the end of it at the latest
        switched = asyncio.Event()
        now = int(time.time())

        async def sender(http: aiohttp.ClientSession) -> None:
            nonlocal refused
            for n in numbers:
                raw = event_xml("enter_agent", f"m{n % 50}", create_time=now + n)
                signed = encrypt_callback(raw, timestamp=int(time.time()), nonce=str(n))
                async with http.post(endpoint, params=signed.query, data=signed.body) as response:
                    if response.status == 200:
                        acknowledged.append(raw)
                    else:
                        assert response.status == 503
                        refused += 1
                if len(acknowledged) >= 200 and not switched.is_set():
                    switched.set()
                    await admin.config_set("appendonly", "no")
                if refused >= 50:
                    return

        async with aiohttp.ClientSession() as http:
            await asyncio.gather(*(sender(http) for _ in range(16)))
        assert switched.is_set()
        assert refused >= 50
    finally:
        await admin.aclose()
        server.kill()
    server.start()  # from the same directory: what the AOF kept
    store = await open_store(url)
    kept: set[str] = set()
    try:
        for _ in range(10_000):  # a member's events come one at a time: take, then mark each done
            items = await store.inbox_take(1000, lease=60)
            if not items:
                break
            for item in items:
                kept.add(item.dedup_key)
                await store.inbox_done(item.id)
    finally:
        await store.close()
        server.kill()
    lost = [raw for raw in acknowledged if hashlib.sha256(raw.encode()).hexdigest() not in kept]
    assert lost == []
    assert len(acknowledged) >= 200
