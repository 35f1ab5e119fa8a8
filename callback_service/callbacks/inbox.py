"""The durable inbox: callbacks are stored before they are acknowledged, and workers handle them.

A callback's event is appended to the store's inbox under a hash of its decrypted message, so a
WeCom retry (the same message) is a no-op while two different events in the same second are both
kept. Workers lease events, run the dispatcher, and retry failures with backoff; an event that
keeps failing goes to the dead letters, with a metric and a log line. Leases make the inbox
crash-safe: events a dead process held become takeable again when their lease runs out.

The stored payload is the decrypted XML behind an envelope of one XML comment that names the id of
the request which delivered it, so that the worker's log lines carry that id too. A comment before
the root is well-formed XML: a payload with or without it parses the same.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
import random
import time
from collections.abc import Callable
from typing import Final

from aiohttp import web

from callback_service.callbacks.xml import MalformedXml, parse_event
from callback_service.logs import REQUEST_ID
from callback_service.metrics import HANDLER_SECONDS, Metrics
from handlers.core.binding import InboxItem
from handlers.core.events import Event
from handlers.usecases.contracts import InboxQueue, StoreUnavailable
from handlers.usecases.dispatch import Dispatcher

log: Final = logging.getLogger(__name__)

HANDLED: Final = "wecom_bind_inbox_handled_total"
FAILED: Final = "wecom_bind_inbox_failures_total"
DEAD: Final = "wecom_bind_inbox_dead_letters_total"
DUPLICATES: Final = "wecom_bind_inbox_duplicates_total"


def dedup_key(event: Event) -> str:
    """The inbox key of an event: a hash of the decrypted message itself."""
    return hashlib.sha256(event.raw.encode("utf-8")).hexdigest()


_ENVELOPE_HEAD: Final = "<!-- request-id: "
_ENVELOPE_TAIL: Final = " -->"


def envelope(request_id: str | None, raw: str) -> str:
    """The payload to store: the event's XML, behind the id of the request that delivered it."""
    return raw if request_id is None else f"{_ENVELOPE_HEAD}{request_id}{_ENVELOPE_TAIL}{raw}"


def open_envelope(payload: str) -> tuple[str | None, str]:
    """The request id (None when the payload has none) and the event's XML of a stored payload."""
    if not payload.startswith(_ENVELOPE_HEAD):
        return None, payload
    end = payload.find(_ENVELOPE_TAIL, len(_ENVELOPE_HEAD))
    if end < 0:
        return None, payload
    return payload[len(_ENVELOPE_HEAD):end], payload[end + len(_ENVELOPE_TAIL):]


def backoff(attempts: int, *, base: float = 0.5, cap: float = 60.0) -> float:
    """Seconds before the next try: exponential in the attempts so far, with full jitter."""
    return random.uniform(0, min(cap, base * 2 ** max(attempts - 1, 0)))  # noqa: S311 - jitter, not secrecy


class Inbox:
    """Appends acknowledged events to the store and runs a pool of workers over them."""

    def __init__(
        self,
        *,
        store: InboxQueue,
        dispatcher: Dispatcher,
        metrics: Metrics,
        workers: int,
        max_attempts: int = 5,
        lease: float = 60.0,
        idle_poll: float = 1.0,
        retry_delay: Callable[[int], float] = backoff,
    ) -> None:
        self._store = store
        self._dispatcher = dispatcher
        self._metrics = metrics
        self._size = workers
        self._max_attempts = max_attempts
        self._lease = lease
        self._idle_poll = idle_poll
        self._retry_delay = retry_delay
        # Idle workers wait on futures of their own: an accepted event wakes one of them, not all
        # (each woken worker takes from the store, and all but one would find nothing).
        self._idle: collections.deque[asyncio.Future[None]] = collections.deque()
        self._accepted = 0
        """Events accepted so far: a worker whose take raced an accept sees it change and looks again."""
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        metrics.describe(HANDLED, "callback events handled")
        metrics.describe(FAILED, "handler failures, each retried or dead-lettered")
        metrics.describe(DEAD, "events moved to the dead letters after max attempts")
        metrics.describe(DUPLICATES, "callbacks whose message was already in the inbox (WeCom retries)")

    async def accept(self, event: Event) -> None:
        """Store the event durably; only then may the callback be acknowledged."""
        payload = envelope(REQUEST_ID.get(), event.raw)
        # The member orders the event among that member's others: one at a time, by CreateTime.
        appended = await self._store.inbox_append(
            dedup_key(event), event.kind, payload, member_id=event.member_id or None,
            create_time=event.create_time,
        )
        if appended:
            self._accepted += 1
            self._wake(1)
        else:
            self._metrics.inc(DUPLICATES)
            log.info("duplicate callback %s for member %s ignored", event.kind, event.member_id)

    def start(self) -> None:
        """Start the workers; they first pick up whatever a previous process left."""
        self._stopping.clear()
        self._tasks = [
            asyncio.create_task(self._work(number), name=f"inbox-worker-{number}")
            for number in range(self._size)
        ]

    @property
    def workers_alive(self) -> int:
        """How many workers are running (each outlives any failure of one event)."""
        return sum(not task.done() for task in self._tasks)

    async def stop(self, *, grace: float = 10.0) -> None:
        """Stop taking events, let those in flight finish within grace, then cancel the rest.

        A cancelled event is not lost: its lease runs out and the next process takes it.
        """
        self._stopping.set()
        self._wake(len(self._idle))
        if not self._tasks:
            return
        _, pending = await asyncio.wait(self._tasks, timeout=grace)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def drain(self, *, limit: int = 1000) -> int:
        """Handle due events in this task until none is left (for tools and tests); return how many."""
        handled = 0
        while handled < limit:
            items = await self._store.inbox_take(min(10, limit - handled), lease=self._lease)
            if not items:
                break
            for item in items:
                await self._handle(item)
                handled += 1
        return handled

    async def _work(self, number: int) -> None:
        while not self._stopping.is_set():
            accepted = self._accepted
            try:
                items = await self._store.inbox_take(1, lease=self._lease)
            except StoreUnavailable:
                log.warning("inbox worker %d: store unavailable, backing off", number)
                await self._sleep(self._idle_poll)
                continue
            if not items:
                if self._accepted == accepted:  # else an event came in while the take was out
                    await self._sleep(self._idle_poll)
                continue
            for item in items:
                try:
                    await self._handle(item)
                except StoreUnavailable:
                    # The event stays leased and comes back when its lease runs out.
                    log.warning("inbox worker %d: store unavailable while handling event %d", number, item.id)
                    await self._sleep(self._idle_poll)
                except Exception:
                    # A worker must outlive any one event; this one returns when its lease runs out.
                    log.exception("inbox worker %d: unexpected failure on event %d", number, item.id)

    def _wake(self, count: int) -> None:
        while count > 0 and self._idle:
            waiter = self._idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                count -= 1

    async def _sleep(self, seconds: float) -> None:
        """Wait until an accepted event wakes this worker, the inbox stops, or seconds pass (an
        event due again after a retry's delay wakes nobody: the poll finds it)."""
        if self._stopping.is_set():
            return
        waiter = asyncio.get_running_loop().create_future()
        self._idle.append(waiter)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await waiter
        finally:
            if not waiter.done():
                waiter.cancel()
                self._idle.remove(waiter)

    async def _handle(self, item: InboxItem) -> None:
        request_id, raw = open_envelope(item.payload)
        token = REQUEST_ID.set(request_id)
        try:
            await self._handle_event(item, raw)
        finally:
            REQUEST_ID.reset(token)

    async def _handle_event(self, item: InboxItem, raw: str) -> None:
        try:
            event = parse_event(raw.encode("utf-8"))
        except MalformedXml as exc:
            # Cannot happen for what the receiver stored; a corrupt row must not loop forever.
            await self._dead(item, f"unparseable payload: {exc}")
            return
        started = time.perf_counter()
        try:
            await self._dispatcher.dispatch(event)
        except Exception as exc:  # any handler failure is retried, then dead-lettered
            self._metrics.observe(HANDLER_SECONDS, time.perf_counter() - started, event=event.kind)
            await self._failed(item, event, exc)
            return
        self._metrics.observe(HANDLER_SECONDS, time.perf_counter() - started, event=event.kind)
        await self._store.inbox_done(item.id)
        self._metrics.inc(HANDLED, kind=event.kind)
        log.info(
            "inbox event %d handled: %s for member %s", item.id, event.kind, event.member_id,
            extra={"inbox_id": item.id, "event": event.kind, "member": event.member_id},
        )

    async def _failed(self, item: InboxItem, event: Event, exc: Exception) -> None:
        self._metrics.inc(FAILED, kind=event.kind)
        error = f"{type(exc).__name__}: {exc}"[:500]
        if item.attempts + 1 >= self._max_attempts:
            await self._dead(item, error)
            return
        attempts = await self._store.inbox_retry(item.id, error, delay=self._retry_delay(item.attempts + 1))
        log.warning(
            "inbox event %d (%s) failed, attempt %d: %s", item.id, event.kind, attempts, error,
            extra={"inbox_id": item.id, "event": event.kind, "member": event.member_id, "attempts": attempts},
        )

    async def _dead(self, item: InboxItem, error: str) -> None:
        await self._store.inbox_dead(item.id, error)
        self._metrics.inc(DEAD, kind=item.event_type)
        log.error(
            "inbox event %d (%s) moved to the dead letters: %s", item.id, item.event_type, error,
            extra={"inbox_id": item.id, "event": item.event_type},
        )


INBOX: Final = web.AppKey("inbox", Inbox)
"""The app's inbox, opened at start."""
