"""The store's thread: calls run one at a time in the order they were made, each answer to its caller."""

from __future__ import annotations

import asyncio
import functools

import pytest

from callback_service.store.thread import StoreThread


async def test_calls_of_one_turn_run_in_order_and_each_caller_gets_its_own_answer() -> None:
    thread = StoreThread("test-store")
    ran: list[int] = []

    def call(n: int) -> int:
        ran.append(n)
        if n % 7 == 0:
            raise ValueError(n)
        return n * n

    async def one(n: int) -> int | str:
        try:
            return await thread.run(lambda: call(n))
        except ValueError as exc:
            return f"refused {exc}"

    try:
        answers = await asyncio.gather(*(one(n) for n in range(1, 50)))
        assert ran == list(range(1, 50))
        assert answers == [f"refused {n}" if n % 7 == 0 else n * n for n in range(1, 50)]
        # And across turns of the loop: the next turn's calls run after this one's.
        assert await thread.run(lambda: len(ran)) == 49
    finally:
        thread.stop()


async def test_calls_made_before_stop_still_run_and_later_ones_are_refused() -> None:
    thread = StoreThread("test-store")
    made = [asyncio.ensure_future(thread.run(functools.partial(int, n))) for n in range(5)]
    await asyncio.sleep(0)  # the calls are made, in this very turn of the loop, and not yet handed over
    thread.stop()
    assert await asyncio.gather(*made) == list(range(5))
    with pytest.raises(RuntimeError, match="stopped"):
        await thread.run(lambda: 1)
