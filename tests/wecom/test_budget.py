"""The per-API call budget: WeCom's limits kept (document/path/90312), background work waiting,
a student's request refused at once, over the real client and the emulator."""

from __future__ import annotations

import pytest

from callback_service.clients.budget import CallBudget, impatient
from handlers.core.wecom_errors import CallBudgetSpent, RateLimited, WeComUnavailable
from testkit.clock import Sleeper
from tests.store.support import FakeClock
from tests.wecom._support import APP_SECRET
from tests.wecom.conftest import ClientFactory, Sandbox


async def test_no_minute_passes_more_calls_than_the_budget(clock: FakeClock) -> None:
    sleep = Sleeper(clock)
    budget = CallBudget(per_minute=600, per_hour=150_000, clock=clock, sleep=sleep)
    taken: list[float] = []
    for _ in range(3000):
        await budget.take("user/get")
        taken.append(clock())
    # Every window of 60 s holds at most 600 calls, and the budget is used: 3000 calls in about 5 minutes.
    for first, at in enumerate(taken):
        later = [t for t in taken[first:first + 700] if t < at + 60]
        assert len(later) <= 600
    assert 290 < taken[-1] - taken[0] < 320


async def test_the_hour_keeps_its_own_limit(clock: FakeClock) -> None:
    budget = CallBudget(per_minute=10_000, per_hour=1_000, clock=clock, sleep=Sleeper(clock))
    start = clock()
    for _ in range(2_000):
        await budget.take("user/get")
    assert clock() - start >= 3600 * 0.99  # half the hour's limit at once, the rest at its pace


async def test_each_api_has_its_own_budget(clock: FakeClock) -> None:
    budget = CallBudget(per_minute=60, clock=clock, sleep=Sleeper(clock))
    with impatient():
        await budget.take("user/get")
        await budget.take("user/convert_to_openid")  # another API: its own call
        with pytest.raises(CallBudgetSpent) as refused:
            await budget.take("user/get")
    assert refused.value.api == "user/get"
    assert isinstance(refused.value, RateLimited)  # the pages' 稍后再试, as for WeCom's own 45009
    assert budget.refused == 1


async def test_background_work_leaves_a_share_to_students(clock: FakeClock) -> None:
    sleep = Sleeper(clock)
    budget = CallBudget(per_minute=6000, clock=clock, sleep=sleep)  # 100 a second at most at once
    for _ in range(90):
        await budget.take("user/get")  # background: takes down to the students' share (10)
    assert sleep.waits == []
    await budget.take("user/get")
    assert sleep.waits  # the 91st waits, though calls are left...
    with impatient():
        for _ in range(9):
            await budget.take("user/get")  # ...for students, who get them at once


async def test_a_students_call_over_budget_is_refused_and_never_sent(
    sandbox: Sandbox, make_client: ClientFactory, clock: FakeClock
) -> None:
    budget = CallBudget(per_minute=60, clock=clock, sleep=Sleeper(clock))
    client = make_client(APP_SECRET, budget=budget)
    await client.access_token()  # gettoken is a call of its own API
    with impatient():
        await client.user_get("2021001")
        with pytest.raises(CallBudgetSpent) as refused:
            await client.user_get("2021002")
    assert isinstance(refused.value, WeComUnavailable)
    assert sandbox.state.calls.count("user/get") == 1


async def test_background_calls_wait_for_the_budget_and_all_go_through(
    sandbox: Sandbox, make_client: ClientFactory, clock: FakeClock
) -> None:
    sleep = Sleeper(clock)
    budget = CallBudget(per_minute=60, clock=clock, sleep=sleep)
    client = make_client(APP_SECRET, budget=budget)
    for userid in ("2021001", "2021002", "2021001"):
        await client.user_get(userid)
    assert sandbox.state.calls.count("user/get") == 3
    assert len(sleep.waits) >= 2  # one call a second at most: the second and third waited
