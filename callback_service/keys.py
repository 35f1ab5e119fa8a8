"""Every piece of application state, as typed AppKeys declared in one place."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

from callback_service.receiver import CallbackReceiver
from config import Settings
from handlers.events import Event

EventSink = Callable[[Event], Awaitable[None]]

SETTINGS: Final = web.AppKey("settings", Settings)
CLOCK: Final[web.AppKey[Callable[[], float]]] = web.AppKey("clock")
RECEIVER: Final = web.AppKey("receiver", CallbackReceiver)
EVENT_SINK: Final[web.AppKey[EventSink]] = web.AppKey("event_sink")
