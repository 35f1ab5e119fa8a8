"""A clock that moves only when told."""

from __future__ import annotations

START: float = 1_750_000_000.0


class FakeClock:
    """A clock that moves only when told, so lease and TTL tests need not sleep."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.now += seconds


class Sleeper:
    """asyncio.sleep on a FakeClock: a wait moves the clock on at once, and is recorded."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.clock.advance(seconds)
