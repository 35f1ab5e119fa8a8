"""An app built through the factory, with a clock the tests set and a dispatcher that records events."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from callback_service.web.app import create_app
from handlers.core.events import Event
from handlers.usecases.dispatch import Dispatcher
from tests.support.world import world_settings

NOW = 1476422779  # the official sample's timestamp


class Clock:
    """A clock the test sets."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Recorder:
    """A dispatcher whose every handler records the event it gets."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._recorded = asyncio.Event()

    async def record(self, event: Event) -> None:
        self.events.append(event)
        self._recorded.set()

    async def wait_for(self, count: int, *, within: float = 10.0) -> None:
        """Wait until count events are recorded (TimeoutError after `within` seconds)."""
        async with asyncio.timeout(within):
            while len(self.events) < count:
                self._recorded.clear()
                await self._recorded.wait()

    def dispatcher(self) -> Dispatcher:
        return Dispatcher({}, fallback=self.record)


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def client(
    aiohttp_client: Callable[[web.Application], Awaitable[TestClient[web.Request, web.Application]]],
    clock: Clock,
    recorder: Recorder,
    store_url: str,
) -> TestClient[web.Request, web.Application]:
    """The app on a real store (both backends), its inbox drained by the tests rather than by workers."""
    settings = world_settings(store_url=store_url)
    app = create_app(settings, clock=clock, dispatcher=recorder.dispatcher(), run_workers=False)
    return await aiohttp_client(app)
