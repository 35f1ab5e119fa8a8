"""The application factory: pure, so that the CLI, the demo and the tests build the same app."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web

from callback_service import callback, health
from callback_service.inbox import Inbox
from callback_service.keys import CLOCK, DISPATCHER, HTTP, INBOX, METRICS, RECEIVER, SETTINGS, STORE
from callback_service.metrics import Metrics
from callback_service.middlewares import error_middleware
from callback_service.receiver import CallbackReceiver
from callback_service.store import open_store
from config import Settings
from crypto import WeComCrypto
from handlers.dispatch import Dispatcher, logging_dispatcher

# Forms and callbacks are small; the callback view applies its own, tighter cap.
CLIENT_MAX_SIZE = 1024 * 1024
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=10, connect=5)


def setup_routes(app: web.Application) -> None:
    """Name every route, so that pages build URLs with url_for."""
    app.router.add_get("/health", health.health, name="health")
    app.router.add_get("/ready", health.ready, name="ready")
    app.router.add_get("/metrics", health.metrics, name="metrics")
    app.router.add_get("/wecom/callback", callback.verify_url, name="callback-verify")
    app.router.add_post("/wecom/callback", callback.receive_event, name="callback")


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    store = await open_store(app[SETTINGS].store_url, clock=app[CLOCK])
    app[STORE] = store
    yield
    await store.close()


async def _http_ctx(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as session:
        app[HTTP] = session
        yield


def _inbox_ctx(*, run_workers: bool) -> Callable[[web.Application], AsyncIterator[None]]:
    async def inbox_ctx(app: web.Application) -> AsyncIterator[None]:
        inbox = Inbox(
            store=app[STORE],
            dispatcher=app[DISPATCHER],
            metrics=app[METRICS],
            workers=app[SETTINGS].workers,
        )
        app[INBOX] = inbox
        if run_workers:
            inbox.start()
        yield
        await inbox.stop()

    return inbox_ctx


def create_app(
    settings: Settings,
    *,
    clock: Callable[[], float] = time.time,
    dispatcher: Dispatcher | None = None,
    run_workers: bool = True,
) -> web.Application:
    """Build the service's application; nothing is opened until it starts.

    dispatcher replaces the handlers' dispatch table (tests); run_workers=False leaves the inbox
    to be drained by the caller.
    """
    app = web.Application(middlewares=[error_middleware], client_max_size=CLIENT_MAX_SIZE)
    app[SETTINGS] = settings
    app[CLOCK] = clock
    app[METRICS] = Metrics()
    app[RECEIVER] = CallbackReceiver(
        crypto=WeComCrypto(
            token=settings.token.get_secret_value(),
            encoding_aes_key=settings.encoding_aes_key.get_secret_value(),
            receive_id=settings.corp_id,
        ),
        corp_id=settings.corp_id,
        timestamp_window=settings.timestamp_window,
        clock=clock,
    )
    app[DISPATCHER] = dispatcher or logging_dispatcher()
    # The order matters: the inbox's workers stop before the store closes.
    app.cleanup_ctx.append(_store_ctx)
    app.cleanup_ctx.append(_http_ctx)
    app.cleanup_ctx.append(_inbox_ctx(run_workers=run_workers))
    setup_routes(app)
    return app
