"""The dispatch table: from an event's kind to the handler that keeps the rules for it."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

from handlers.events import Event

log: Final = logging.getLogger(__name__)

Handler = Callable[[Event], Awaitable[None]]


class Dispatcher:
    """Routes each event to its handler by `event.kind`; kinds without a handler go to the fallback."""

    def __init__(self, table: Mapping[str, Handler], *, fallback: Handler) -> None:
        self._table = dict(table)
        self._fallback = fallback

    @property
    def kinds(self) -> frozenset[str]:
        """The event kinds that have a handler of their own."""
        return frozenset(self._table)

    async def dispatch(self, event: Event) -> None:
        """Run the handler for this event."""
        handler = self._table.get(event.kind, self._fallback)
        await handler(event)


async def log_event(event: Event) -> None:
    """Log an event and do nothing else: the handler until the rules' handlers land."""
    log.info("event %s for member %s (agent %s)", event.kind, event.user_id, event.agent_id)


def logging_dispatcher() -> Dispatcher:
    """A dispatcher whose handlers only log each event kind."""
    kinds = (
        "subscribe",
        "unsubscribe",
        "enter_agent",
        "change_contact:create_user",
        "change_contact:update_user",
        "change_contact:delete_user",
    )
    return Dispatcher(dict.fromkeys(kinds, log_event), fallback=log_event)
