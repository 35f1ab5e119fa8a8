"""One thread that runs a store's blocking calls in order and hands each result back to its event loop.

It does what a one-worker ThreadPoolExecutor and run_in_executor do, at less cost per call: no
concurrent Future to chain to an asyncio one, no executor locks; the result comes back through
call_soon_threadsafe straight into the awaiting future.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Call = tuple[Callable[[], Any], "asyncio.Future[Any]", asyncio.AbstractEventLoop]


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():  # the caller went away; the call itself has run
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class StoreThread:
    """Runs callables one at a time on a thread of its own; `run` awaits each one's result."""

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._stopped = False
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    async def run(self, fn: Callable[[], T]) -> T:
        """Run fn on the thread, after every call queued before it; RuntimeError once stopped."""
        if self._stopped:
            raise RuntimeError("the store's thread is stopped")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._calls.put((fn, future, loop))
        return await future

    def stop(self) -> None:
        """Let the calls already queued finish, then end the thread."""
        self._stopped = True
        self._calls.put(None)

    def _serve(self) -> None:
        while (call := self._calls.get()) is not None:
            fn, future, loop = call
            result: Any = None
            error: BaseException | None = None
            try:
                result = fn()
            except BaseException as exc:  # handed to the caller, whatever it is
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
                loop.call_soon_threadsafe(_settle, future, result, error)
