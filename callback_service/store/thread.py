"""One thread that runs a store's blocking calls in order and hands each result back to its event loop.

It does what a one-worker ThreadPoolExecutor and run_in_executor do, at less cost per call: no
concurrent Future to chain to an asyncio one, no executor locks. The calls made during one turn of
the event loop are handed to the thread together at its end, and their results come back together
through one call_soon_threadsafe: waking a thread and waking the loop cost more than most calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Call = tuple[Callable[[], Any], "asyncio.Future[Any]"]
_Batch = tuple[list[_Call], asyncio.AbstractEventLoop]
_Done = list[tuple["asyncio.Future[Any]", Any, BaseException | None]]


def _resolve(done: _Done) -> None:
    for future, result, error in done:
        if future.cancelled():  # the caller went away; the call itself has run
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


class StoreThread:
    """Runs callables one at a time on a thread of its own; `run` awaits each one's result."""

    def __init__(self, name: str) -> None:
        self._batches: queue.SimpleQueue[_Batch | None] = queue.SimpleQueue()
        self._pending: dict[asyncio.AbstractEventLoop, list[_Call]] = {}
        self._stopped = False
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    async def run(self, fn: Callable[[], T]) -> T:
        """Run fn on the thread, after every call queued before it; RuntimeError once stopped."""
        if self._stopped:
            raise RuntimeError("the store's thread is stopped")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        calls = self._pending.get(loop)
        if calls is None:
            calls = self._pending[loop] = []
            loop.call_soon(self._hand_over, loop)
        calls.append((fn, future))
        return await future

    def stop(self) -> None:
        """Let the calls already made finish, then end the thread."""
        self._stopped = True
        for loop in list(self._pending):
            self._hand_over(loop)
        self._batches.put(None)

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        calls = self._pending.pop(loop, None)
        if calls:
            self._batches.put((calls, loop))

    def _serve(self) -> None:
        while (batch := self._batches.get()) is not None:
            calls, loop = batch
            done: _Done = []
            for fn, future in calls:
                result: Any = None
                error: BaseException | None = None
                try:
                    result = fn()
                except BaseException as exc:  # handed to the caller, whatever it is
                    error = exc
                done.append((future, result, error))
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
                loop.call_soon_threadsafe(_resolve, done)
