"""The dispatch table: from an event's kind to the handler that keeps the rules for it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from handlers.core.events import Event, EventKind

Handler = Callable[[Event], Awaitable[None]]
E = TypeVar("E", bound=Event)


def typed(event_type: type[E], handler: Callable[[E], Awaitable[None]]) -> Handler:
    """A handler of one event type, as an entry of the table: the event's type is checked here,
    once, so that the handler is written for its own event (a TypeError for any other)."""

    async def run(event: Event) -> None:
        if not isinstance(event, event_type):
            raise TypeError(f"{type(event).__name__} dispatched as {event_type.__name__}")
        await handler(event)

    return run


class Dispatcher:
    """Routes each event to its handler by `event.kind`; kinds without a handler go to the fallback."""

    def __init__(self, table: Mapping[EventKind, Handler], *, fallback: Handler) -> None:
        self._table = dict(table)
        self._fallback = fallback

    async def dispatch(self, event: Event) -> None:
        """Run the handler for this event."""
        handler = self._table.get(event.kind, self._fallback)
        await handler(event)
