"""The dispatch table: from an event's kind to the handler that keeps the rules for it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from handlers.core.events import Event

Handler = Callable[[Event], Awaitable[None]]


class Dispatcher:
    """Routes each event to its handler by `event.kind`; kinds without a handler go to the fallback."""

    def __init__(self, table: Mapping[str, Handler], *, fallback: Handler) -> None:
        self._table = dict(table)
        self._fallback = fallback

    async def dispatch(self, event: Event) -> None:
        """Run the handler for this event."""
        handler = self._table.get(event.kind, self._fallback)
        await handler(event)
