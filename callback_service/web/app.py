"""The application factory: pure, so that the CLI, the demo and the tests build the same app."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web
from pydantic import SecretStr

from callback_service.callbacks import endpoint as callback
from callback_service.callbacks.inbox import Inbox
from callback_service.callbacks.receiver import CallbackReceiver
from callback_service.clients.budget import CallBudget
from callback_service.clients.wecom import TokenProbe, WeComClient
from callback_service.metrics import WECOM_API_SECONDS, Metrics
from callback_service.store import open_store
from callback_service.web import health
from callback_service.web.domain_verify import setup_domain_verify
from callback_service.web.keys import (
    CLOCK,
    CONTACTS_RECEIVER,
    DISPATCHER,
    HTTP,
    INBOX,
    METRICS,
    RECEIVER,
    SETTINGS,
    STORE,
    WECOM_APP,
    WECOM_BUDGET,
    WECOM_CONTACTS,
    WECOM_READY,
)
from callback_service.web.middlewares import service_middleware
from callback_service.web.pages import setup_pages
from config import Settings
from crypto import WeComCrypto
from handlers.usecases.callbacks import CallbackHandlers
from handlers.usecases.contacts import ContactsThenApp
from handlers.usecases.dispatch import Dispatcher

# Forms and callbacks are small; the callback view applies its own, tighter cap.
CLIENT_MAX_SIZE = 1024 * 1024
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=10, connect=5)


def setup_routes(app: web.Application) -> None:
    """Name every route, so that pages build URLs with url_for."""
    app.router.add_get("/health", health.health, name="health")
    app.router.add_get("/ready", health.ready, name="ready")
    app.router.add_get("/metrics", health.metrics, name="metrics")
    verify, receive = callback.endpoints(RECEIVER)
    app.router.add_get("/wecom/callback", verify, name="callback-verify")
    app.router.add_post("/wecom/callback", receive, name="callback")
    if CONTACTS_RECEIVER in app:
        verify, receive = callback.endpoints(CONTACTS_RECEIVER)
        app.router.add_get("/wecom/contacts-callback", verify, name="contacts-callback-verify")
        app.router.add_post("/wecom/contacts-callback", receive, name="contacts-callback")


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    store = await open_store(
        settings.store_url.get_secret_value(),
        clock=app[CLOCK],
        allow_volatile=settings.redis_allow_volatile,
    )
    app[STORE] = store
    yield
    await store.close()


async def _http_ctx(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as session:
        app[HTTP] = session
        yield


async def _wecom_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    # One budget per process for both secrets: WeCom's limits count calls per API for the organisation.
    budget = CallBudget(per_minute=settings.wecom_calls_per_minute, per_hour=settings.wecom_calls_per_hour)
    app[WECOM_BUDGET] = budget
    for key, secret in ((WECOM_APP, settings.app_secret), (WECOM_CONTACTS, settings.contacts_secret)):
        app[key] = WeComClient(
            budget=budget,
            contacts=key is WECOM_CONTACTS,
            session=app[HTTP],
            api_base=settings.wecom_api_base,
            corp_id=settings.corp_id,
            secret=secret.get_secret_value(),
            store=app[STORE],
            clock=app[CLOCK],
            observe=_wecom_observer(app[METRICS]),
        )
    app[WECOM_READY] = TokenProbe(app[WECOM_APP], clock=app[CLOCK], watched=(app[WECOM_CONTACTS],))
    yield


def _wecom_observer(metrics: Metrics) -> Callable[[str, int, float], None]:
    def observe(endpoint: str, errcode: int, seconds: float) -> None:
        metrics.observe(WECOM_API_SECONDS, seconds, endpoint=endpoint, errcode=str(errcode))

    return observe


def _inbox_ctx(*, run_workers: bool) -> Callable[[web.Application], AsyncIterator[None]]:
    async def inbox_ctx(app: web.Application) -> AsyncIterator[None]:
        dispatcher = app.get(DISPATCHER) or CallbackHandlers(
            store=app[STORE],
            wecom=app[WECOM_APP],
            counters=app[METRICS],
            agent_id=app[SETTINGS].agent_id,
            # The mobile of a change_contact: the app's view where the assistant may not read (48009).
            members=ContactsThenApp(app[WECOM_CONTACTS], app[WECOM_APP]),
            clock=app[CLOCK],
        ).dispatcher()
        inbox = Inbox(
            store=app[STORE],
            dispatcher=dispatcher,
            metrics=app[METRICS],
            workers=app[SETTINGS].workers,
            lease=app[SETTINGS].inbox_lease,
        )
        app[INBOX] = inbox
        if run_workers:
            inbox.start()
        yield
        await inbox.stop()

    return inbox_ctx


def _receiver(
    settings: Settings, token: SecretStr, key: SecretStr, clock: Callable[[], float]
) -> CallbackReceiver:
    return CallbackReceiver(
        crypto=WeComCrypto(
            token=token.get_secret_value(),
            encoding_aes_key=key.get_secret_value(),
            receive_id=settings.corp_id,
        ),
        corp_id=settings.corp_id,
        timestamp_window=settings.timestamp_window,
        clock=clock,
    )


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
    app[METRICS] = Metrics()
    app[RECEIVER] = _receiver(settings, settings.token, settings.encoding_aes_key, clock)
    if settings.contacts_token is not None and settings.contacts_encoding_aes_key is not None:
        # The contacts-sync assistant pushes change_contact to its own server, with its own Token
        # and key (developer.work.weixin.qq.com/document/path/90970); without them it does not exist.
        app[CONTACTS_RECEIVER] = _receiver(
            settings, settings.contacts_token, settings.contacts_encoding_aes_key, clock
        )
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
