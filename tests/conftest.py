"""Shared fixtures: a session redis-server on a loopback port, and stores on SQLite, Redis and in memory.

`store` runs a test on both backends. When redis-server is missing, Redis tests skip, except under
CI=true, where they fail.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from callback_service.store import open_store
from handlers.usecases.contracts import Store
from testkit.memory import MemoryStore
from tests.store.support import FakeClock, RedisServer, require_redis_server
from tests.support.logscan import PhoneScanner, lines_with_full_phones
from tests.support.processes import all_output
from tests.support.world import store_url_for


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Escape lone surrogates in what a test printed or logged: undecodable bytes a test sent (the
    fuzz tests) come back through aiohttp's access log of the test server that way, and pytest-xdist
    sends each report to the controller as UTF-8, which has no encoding for them: the worker crashed."""
    report.sections = [
        (name, text.encode("utf-8", "backslashreplace").decode("utf-8")) for name, text in report.sections
    ]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server for the session, with AOF (fsync left to the OS: no crash tests here)."""
    binary = require_redis_server()
    server = RedisServer(binary, tmp_path_factory.mktemp("redis"), appendfsync="no")
    server.start()
    yield server
    server.kill()


@pytest.fixture
def clock() -> FakeClock:
    """The clock that the store fixtures are given."""
    return FakeClock()


@pytest.fixture
async def sqlite_store(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Store]:
    """A SQLite store on a fresh file."""
    store = await open_store(f"sqlite:///{tmp_path}/store.db", clock=clock)
    yield store
    await store.close()


@pytest.fixture
async def redis_store(redis_server: RedisServer, clock: FakeClock) -> AsyncIterator[Store]:
    """A Redis store under a key prefix of its own, on the session server."""
    prefix = f"t{uuid.uuid4().hex[:12]}:"
    store = await open_store(f"{redis_server.url}?prefix={prefix}", clock=clock)
    yield store
    await store.close()


@pytest.fixture
async def memory_store(clock: FakeClock) -> AsyncIterator[Store]:
    """The in-memory store (testkit.memory): the contract in dictionaries, for the use cases' tests."""
    store = MemoryStore(clock=clock)
    yield store
    await store.close()


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest) -> Store:
    """The store under test, once per backend."""
    backend: Store = request.getfixturevalue(f"{request.param}_store")
    return backend


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store URL on each backend: a SQLite file, or a key prefix of its own on the test Redis."""
    redis_server: RedisServer | None = (
        request.getfixturevalue("redis_server") if request.param == "redis" else None
    )
    return store_url_for(request.param, tmp_path, redis_server)


@pytest.fixture(scope="session", autouse=True)
def no_full_phone_in_any_log() -> Iterator[None]:
    """Phones are personal data: fail the run when any log line of it, ours or a started process's,
    holds a full mobile number (the fixtures' phones are all 1[3-9] and 11 digits)."""
    scanner = PhoneScanner()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(scanner)
    root.setLevel(logging.INFO)
    yield
    root.removeHandler(scanner)
    root.setLevel(previous)
    offending = scanner.offending + lines_with_full_phones(
        line for output in all_output() for line in output.splitlines()
    )
    if offending:
        shown = "\n".join(line[:300] for line in offending[:20])
        pytest.fail(f"{len(offending)} log line(s) of this run hold a full phone number:\n{shown}")
