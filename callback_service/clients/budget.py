"""WeCom's per-API call limits, kept by this process: one budget per API, shared by every caller.

developer.work.weixin.qq.com/document/path/90312 (频率限制): "每企业调用单个cgi/api不可超过1万次/分，
15万次/小时" (and per IP twice that); above it WeCom answers 45009 and blocks the caller for as
long as the limit's period. So every call of callback_service.clients.wecom, whichever secret
makes it, first takes one call from its API's budget: two token buckets, a minute's and an hour's.

- The minute's holds at most one second's share (per_minute / 60) and refills so that no 60 s
  window passes more than per_minute; the hour's holds half the hour's limit (a burst of 30,000
  subscribes passes at the minute's pace) and refills so that no hour passes more than per_hour.
- Background work (the inbox's workers, sync, reconcile) waits for a call, and leaves a tenth of a
  second's share to the students: a student's request (a page: the web middleware marks it with
  `impatient()`) takes a call only when one is there at once, else CallBudgetSpent, which the
  pages answer with 稍后再试.

The budget is this process's: with several processes (serve --processes N) or instances, each keeps
its own, so each is given its share of WeCom's limit in the setting (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Final

from handlers.core.wecom_errors import CallBudgetSpent

PER_MINUTE: Final = 10_000
"""WeCom's limit per API and per organisation, a minute (document/path/90312)."""
PER_HOUR: Final = 150_000
"""WeCom's limit per API and per organisation, an hour (document/path/90312)."""
_STUDENTS_SHARE: Final = 0.1
"""The part of the minute bucket's second's share that background work leaves to students."""

_WAITS: Final[contextvars.ContextVar[bool]] = contextvars.ContextVar("wecom_budget_waits", default=True)


@contextlib.contextmanager
def impatient() -> Iterator[None]:
    """Within this block (a student's request), a call whose budget is spent now raises
    CallBudgetSpent instead of waiting."""
    token = _WAITS.set(False)
    try:
        yield
    finally:
        _WAITS.reset(token)


@dataclass
class _Bucket:
    """A token bucket: capacity calls at most, refilled at rate calls a second."""

    capacity: float
    rate: float
    tokens: float
    updated: float

    def refill(self, now: float) -> float:
        if now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
        return self.tokens


class CallBudget:
    """The calls each WeCom API may still make in this process, per minute and per hour."""

    def __init__(
        self,
        *,
        per_minute: int = PER_MINUTE,
        per_hour: int = PER_HOUR,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if per_minute < 1 or per_hour < 1:
            raise ValueError("a call budget allows at least one call a minute and an hour")
        self.per_minute = per_minute
        self.per_hour = per_hour
        self._clock = clock
        self._sleep = sleep
        self._buckets: dict[str, tuple[_Bucket, _Bucket]] = {}
        second = max(1.0, per_minute / 60)
        # Never more than the bucket can hold beyond one call, or background work would wait forever.
        self._floor = max(0.0, min(second * _STUDENTS_SHARE, second - 1))
        self.waited = 0.0
        """Seconds background callers spent waiting for calls, in all (for the bench and the logs)."""
        self.refused = 0
        """Calls refused to impatient callers."""

    def _of(self, api: str, now: float) -> tuple[_Bucket, _Bucket]:
        found = self._buckets.get(api)
        if found is None:
            second = max(1.0, self.per_minute / 60)
            half_hour = max(1.0, self.per_hour / 2)
            found = (
                _Bucket(second, (self.per_minute - second) / 60 or 1 / 60, second, now),
                _Bucket(half_hour, (self.per_hour - half_hour) / 3600 or 1 / 3600, half_hour, now),
            )
            self._buckets[api] = found
        return found

    async def take(self, api: str) -> None:
        """Take one call of the API: at once, or after a wait (background), or CallBudgetSpent
        (inside impatient())."""
        waits = _WAITS.get()
        floor = self._floor if waits else 0.0
        while True:
            now = self._clock()
            minute, hour = self._of(api, now)
            short = max(1 + floor - minute.refill(now), 1 - hour.refill(now), 0.0)
            if short <= 0:
                minute.tokens -= 1
                hour.tokens -= 1
                return
            if not waits:
                self.refused += 1
                raise CallBudgetSpent(api)
            delay = max((1 + floor - minute.tokens) / minute.rate, (1 - hour.tokens) / hour.rate, 0.001)
            self.waited += delay
            await self._sleep(delay)

    def remaining(self, api: str) -> tuple[float, float]:
        """The calls the API may make at once now, by the minute's and the hour's bucket."""
        now = self._clock()
        minute, hour = self._of(api, now)
        return minute.refill(now), hour.refill(now)
