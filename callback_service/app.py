"""The application factory: pure, so that the CLI, the demo and the tests build the same app."""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web

from callback_service import callback, health
from callback_service.keys import CLOCK, EVENT_SINK, RECEIVER, SETTINGS
from callback_service.middlewares import error_middleware
from callback_service.receiver import CallbackReceiver
from config import Settings
from crypto import WeComCrypto
from handlers.dispatch import Dispatcher, logging_dispatcher

# Forms and callbacks are small; the callback view applies its own, tighter cap.
CLIENT_MAX_SIZE = 1024 * 1024


def setup_routes(app: web.Application) -> None:
    """Name every route, so that pages build URLs with url_for."""
    app.router.add_get("/health", health.health, name="health")
    app.router.add_get("/wecom/callback", callback.verify_url, name="callback-verify")
    app.router.add_post("/wecom/callback", callback.receive_event, name="callback")


def create_app(
    settings: Settings,
    *,
    clock: Callable[[], float] = time.time,
    dispatcher: Dispatcher | None = None,
) -> web.Application:
    """Build the service's application; nothing is opened until it starts."""
    app = web.Application(middlewares=[error_middleware], client_max_size=CLIENT_MAX_SIZE)
    app[SETTINGS] = settings
    app[CLOCK] = clock
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
    app[EVENT_SINK] = (dispatcher or logging_dispatcher()).dispatch
    setup_routes(app)
    return app
