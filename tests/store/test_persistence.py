"""A Redis that would lose acknowledged writes on a restart is refused at start and by /ready."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis

from callback_service.store import open_store
from callback_service.web.app import create_app
from handlers.usecases.contracts import StoreNotDurable
from tests.store.support import RedisServer, require_redis_server
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


async def test_rdb_snapshots_only_open_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for server in _server(tmp_path, aof=False, save="3600 1"):
        with caplog.at_level(logging.WARNING):
            store = await open_store(server.url)
        await store.close()
    assert any("RDB snapshots only" in r.getMessage() for r in caplog.records)


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


# /ready names its checks to the metrics bearer only.
READY_BEARER = "the-monitoring-bearer-0123456789abcdef"
BEARER = {"Authorization": f"Bearer {READY_BEARER}"}


async def test_persistence_turned_off_later_fails_ping_and_ready(
    aof: RedisServer, aiohttp_server: ServerFactory
) -> None:
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


def test_serve_refuses_to_start_naming_the_problem(volatile: RedisServer) -> None:
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
