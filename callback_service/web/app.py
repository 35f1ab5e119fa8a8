"""The application factory: pure, so that the CLI, the demo and the tests build the same app."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Final

from aiohttp import web

from callback_service import compose
from callback_service.callbacks import endpoint as callback
from callback_service.callbacks.endpoint import CALLBACK_MAX_BYTES, CONTACTS_RECEIVER, RECEIVER
from callback_service.callbacks.inbox import INBOX
from callback_service.client_address import TRUSTED_PROXIES, UNTRUSTED_FORWARDS, UntrustedForwards
from callback_service.clients.budget import WECOM_BUDGET
from callback_service.clients.wecom import WECOM_APP, WECOM_CONTACTS, WECOM_READY
from callback_service.compose import CLOCK, HTTP, SETTINGS, WeComClients
from callback_service.metrics import METRICS, Metrics
from callback_service.store import CONSOLE_STORE, HEALTH_STORE, PAGES_STORE, STORE
from callback_service.web import health
from callback_service.web.domain_verify import setup_domain_verify
from callback_service.web.middlewares import service_middleware
from callback_service.web.pages import setup_pages
from config import Settings
from handlers.usecases.dispatch import Dispatcher

# Forms and callbacks are small; the callback view applies its own, tighter cap.
CLIENT_MAX_SIZE = 1024 * 1024
DISPATCHER: Final = web.AppKey("dispatcher", Dispatcher)
"""A dispatch table that replaces the callback handlers' (tests)."""


def setup_routes(app: web.Application) -> None:
    """Name every route, so that pages build URLs with url_for."""
    app.router.add_get(health.HEALTH_PATH, health.health, name="health")
    app.router.add_get(health.READY_PATH, health.ready, name="ready")
    app.router.add_get(health.METRICS_PATH, health.metrics, name="metrics")
    verify, receive = callback.endpoints(RECEIVER)
    app.router.add_get(callback.PATH, verify, name="callback-verify")
    app.router.add_post(callback.PATH, receive, name="callback")
    if CONTACTS_RECEIVER in app:
        verify, receive = callback.endpoints(CONTACTS_RECEIVER)
        app.router.add_get(callback.CONTACTS_PATH, verify, name="contacts-callback-verify")
        app.router.add_post(callback.CONTACTS_PATH, receive, name="contacts-callback")


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    store = await compose.open_settings_store(app[SETTINGS], clock=app[CLOCK])
    app[STORE] = store
    app[CONSOLE_STORE] = store
    app[PAGES_STORE] = store
    app[HEALTH_STORE] = store
    yield
    await store.close()


async def _http_ctx(app: web.Application) -> AsyncIterator[None]:
    async with compose.http_session() as session:
        app[HTTP] = session
        yield


async def _wecom_ctx(app: web.Application) -> AsyncIterator[None]:
    clients = compose.wecom_clients(
        app[SETTINGS], session=app[HTTP], store=app[STORE], clock=app[CLOCK], metrics=app[METRICS]
    )
    # One budget per process for both secrets: WeCom's limits count calls per API for the organisation.
    app[WECOM_APP], app[WECOM_CONTACTS], app[WECOM_BUDGET] = clients.app, clients.contacts, clients.budget
    app[WECOM_READY] = compose.token_probe(clients, clock=app[CLOCK])
    yield


def _clients(app: web.Application) -> WeComClients:
    return WeComClients(app=app[WECOM_APP], contacts=app[WECOM_CONTACTS], budget=app[WECOM_BUDGET])


def _inbox_ctx(*, run_workers: bool) -> Callable[[web.Application], AsyncIterator[None]]:
    async def inbox_ctx(app: web.Application) -> AsyncIterator[None]:
        dispatcher = app.get(DISPATCHER) or compose.callback_dispatcher(
            app[SETTINGS], store=app[STORE], clients=_clients(app), metrics=app[METRICS], clock=app[CLOCK]
        )
        inbox = compose.inbox(app[SETTINGS], store=app[STORE], dispatcher=dispatcher, metrics=app[METRICS])
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

    dispatcher replaces the callback handlers' dispatch table (tests); run_workers=False leaves
    the inbox to be drained by the caller.
    """
    app = web.Application(
        middlewares=[service_middleware],
        client_max_size=CLIENT_MAX_SIZE,
    )
    app[SETTINGS] = settings
    app[CLOCK] = clock
    app[TRUSTED_PROXIES] = settings.trusted_proxies
    app[CALLBACK_MAX_BYTES] = settings.callback_max_bytes
    app[METRICS] = Metrics()
    app[UNTRUSTED_FORWARDS] = UntrustedForwards(clock=clock)
    app[RECEIVER] = compose.receiver(settings, settings.token, settings.encoding_aes_key, clock=clock)
    contacts_receiver = compose.contacts_receiver(settings, clock=clock)
    if contacts_receiver is not None:
        app[CONTACTS_RECEIVER] = contacts_receiver
    if dispatcher is not None:
        app[DISPATCHER] = dispatcher
    # The order matters: the inbox's workers stop before the clients and the store close.
    app.cleanup_ctx.append(_store_ctx)
    app.cleanup_ctx.append(_http_ctx)
    app.cleanup_ctx.append(_wecom_ctx)
    app.cleanup_ctx.append(_inbox_ctx(run_workers=run_workers))
    setup_routes(app)
    setup_pages(app)
    setup_domain_verify(app)
    return app
