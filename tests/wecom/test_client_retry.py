"""Retries: -1, 45033, HTTP 5xx and timeouts are retried with backoff, bounded in count and time; 45009 is not.

Members are read with the app's secret, as the service reads them (today's contacts-sync assistant
may not read members: 48009).
"""

from __future__ import annotations

import pytest

from callback_service.clients.wecom import RateLimited, UserNotFound, WeComUnavailable
from testkit.clock import FakeClock, Sleeper
from tests.wecom._support import APP_SECRET
from tests.wecom.conftest import ClientFactory, Sandbox


@pytest.mark.parametrize("errcode", [-1, 45033])
async def test_busy_errcodes_are_retried(sandbox: Sandbox, make_client: ClientFactory, errcode: int) -> None:
    client = make_client(APP_SECRET)
    await client.access_token()
    sandbox.faults.errcode(errcode, count=2, api="user/get")
    member = await client.user_get("2021001")
    assert member.userid == "2021001"
    assert sandbox.state.calls.count("user/get") == 3


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_are_retried(sandbox: Sandbox, make_client: ClientFactory, status: int) -> None:
    client = make_client(APP_SECRET)
    await client.access_token()
    sandbox.faults.status(status, count=2, api="user/get")
    assert (await client.user_get("2021001")).name == "张三"
    assert sandbox.state.calls.count("user/get") == 3


async def test_a_slow_answer_times_out_and_is_retried(sandbox: Sandbox, make_client: ClientFactory) -> None:
    client = make_client(APP_SECRET, timeout=0.2)
    await client.access_token()
    sandbox.faults.delay(0.6, count=1, api="user/get")
    assert (await client.user_get("2021001")).name == "张三"
    assert sandbox.state.calls.count("user/get") == 2


async def test_gettoken_itself_is_retried(sandbox: Sandbox, make_client: ClientFactory) -> None:
    sandbox.faults.errcode(45033, count=1, api="gettoken")
    sandbox.faults.status(502, count=1, api="gettoken")
    assert (await make_client(APP_SECRET).user_get("2021001")).name == "张三"
    assert sandbox.state.calls.count("gettoken") == 3


async def test_exhausted_retries_raise_unavailable_after_max_attempts(
    sandbox: Sandbox, make_client: ClientFactory
) -> None:
    client = make_client(APP_SECRET, max_attempts=3)
    await client.access_token()
    sandbox.faults.errcode(45033, count=10, api="user/get")
    with pytest.raises(WeComUnavailable) as raised:
        await client.user_get("2021001")
    assert raised.value.errcode == 45033
    assert sandbox.state.calls.count("user/get") == 3


async def test_retries_stop_within_the_time_bound(
    sandbox: Sandbox, make_client: ClientFactory, clock: FakeClock
) -> None:
    # Each wait is 0.075 s (0.1 s, jitter 0.5) on a clock that only the waits move: after the
    # 7th try, six waits have taken 0.45 s and a seventh would end past the budget of 0.5 s.
    sleep = Sleeper(clock)
    client = make_client(
        APP_SECRET, max_attempts=100, max_retry_time=0.5, base_delay=0.1, max_delay=0.1, timer=clock, sleep=sleep
    )
    await client.access_token()
    sandbox.faults.errcode(45033, count=100, api="user/get")
    with pytest.raises(WeComUnavailable) as raised:
        await client.user_get("2021001")
    assert raised.value.errcode == 45033
    assert sandbox.state.calls.count("user/get") == 7
    assert sleep.waits == pytest.approx([0.075] * 6)


async def test_time_spent_in_tries_counts_against_the_time_bound(
    sandbox: Sandbox, make_client: ClientFactory, clock: FakeClock
) -> None:
    # Slow answers time out (0.2 s each); the timer that bounds the retries reads the waits' clock
    # plus 0.2 s a try made: after the 2nd try 0.475 s are spent, and a wait would end past 0.5 s.
    sleep = Sleeper(clock)
    client = make_client(
        APP_SECRET, max_attempts=100, max_retry_time=0.5, base_delay=0.1, max_delay=0.1, timeout=0.2,
        timer=lambda: clock() + 0.2 * sandbox.state.calls.count("user/get"), sleep=sleep,
    )
    await client.access_token()
    sandbox.faults.delay(1.0, count=100, api="user/get")
    with pytest.raises(WeComUnavailable) as raised:
        await client.user_get("2021001")
    assert raised.value.errmsg == "timeout"
    assert sandbox.state.calls.count("user/get") == 2
    assert sleep.waits == pytest.approx([0.075])


async def test_unreachable_wecom_is_unavailable(make_client: ClientFactory) -> None:
    client = make_client(APP_SECRET, api_base="http://127.0.0.1:9", max_attempts=2)
    with pytest.raises(WeComUnavailable):
        await client.user_get("2021001")


async def test_business_errors_are_not_retried(sandbox: Sandbox, make_client: ClientFactory) -> None:
    client = make_client(APP_SECRET)
    with pytest.raises(UserNotFound) as raised:
        await client.user_get("nobody")
    assert raised.value.errcode == 60111
    assert sandbox.state.calls.count("user/get") == 1


async def test_a_block_45009_is_raised_at_once_not_retried(sandbox: Sandbox, make_client: ClientFactory) -> None:
    # WeCom blocks for a minute or an hour: retrying within seconds only extends the block.
    client = make_client(APP_SECRET)
    await client.access_token()
    sandbox.faults.errcode(45009, count=10, api="user/get")
    with pytest.raises(RateLimited) as raised:
        await client.user_get("2021001")
    assert isinstance(raised.value, WeComUnavailable)
    assert raised.value.errcode == 45009
    assert sandbox.state.calls.count("user/get") == 1
