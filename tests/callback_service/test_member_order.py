"""One member's events one at a time and in order, across the inbox's workers and across processes.

Each member's subscribe (at T) and unsubscribe (at T + 1) are sent back to back, every third member
subscribing again at T + 2, a few members at once; the service's workers handle them, and each member
must end in the state of its last event. Two workers that took one member's two events at once
left members followed after their unsubscribe (issue 18, item 8). Both store backends.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp

from callback_service.store import STORE, open_store
from handlers.core.binding import Actor, BindingState
from handlers.core.phone import Phone
from handlers.usecases.contracts import Store
from sandbox.wecom_keys import WECOM_SANDBOX_STATE
from sandbox.wecom_state import Member, WeComSandboxState
from tests.support.callbacks import encrypt_callback, event_xml
from tests.support.processes import free_port, start_service, stop, wait_healthy
from tests.support.world import ServerFactory, eventually, running_world, service_env, wecom_sandbox

MEMBERS = 36
AT_ONCE = 3
STUDENT = Actor(who="student", source="127.0.0.1")


def _members() -> list[Member]:
    return [Member(userid=f"20{n:05d}", name=f"学生{n}", department=[1]) for n in range(MEMBERS)]


def _events(member: str, n: int, now: int) -> list[str]:
    kinds = ["subscribe", "unsubscribe"] + (["subscribe"] if n % 3 == 0 else [])
    return [event_xml(kind, member, create_time=now + step) for step, kind in enumerate(kinds)]


async def _bind_all(store: Store, wecom: WeComSandboxState) -> None:
    """Every member bound in the store, and followed by a WeChat of its own in the emulator (so that
    user/convert_to_openid answers for it)."""
    for n in range(MEMBERS):
        member, phone = f"20{n:05d}", f"1380{n:07d}"
        claim = await store.claim_phone(member, Phone(phone), lease=60, actor=STUDENT)
        await store.commit_claim(claim)
        wecom.follow(member, wecom.add_wechat(f"微信{n}", phone))
    # A subscribe takes a while (WeCom answers its convert_to_openid late): long enough for the
    # member's unsubscribe, sent once the subscribe was acknowledged, to reach another worker.
    subscribes = sum(len(_events("", n, 0)) - 1 for n in range(MEMBERS))
    wecom.faults.delay(0.1, count=subscribes, api="user/convert_to_openid")


async def _send_pairs(base_url: str, *, spread: bool) -> None:
    """Each member's events in order, back to back, a few members at once; spread: a new
    connection per request, so that the kernel spreads them over the processes."""
    now = int(time.time())
    connector = aiohttp.TCPConnector(force_close=spread, limit=64)

    async with aiohttp.ClientSession(connector=connector) as http:
        async def member_events(n: int) -> None:
            for step, raw in enumerate(_events(f"20{n:05d}", n, now)):
                signed = encrypt_callback(raw, timestamp=now, nonce=f"{n}-{step}")
                async with http.post(base_url + "/wecom/callback", params=signed.query, data=signed.body) as r:
                    assert r.status == 200

        # A few members at a time, fewer than the workers: a member's unsubscribe then finds an idle
        # worker while its subscribe is still in hand, rather than a queue of other members' events.
        for first in range(0, MEMBERS, AT_ONCE):
            await asyncio.gather(*(member_events(n) for n in range(first, min(first + AT_ONCE, MEMBERS))))


async def _assert_last_states(store: Store) -> None:
    async def drained() -> bool | None:
        stats = await store.inbox_stats()
        return True if stats.pending == stats.leased == stats.dead == 0 else None

    await eventually(drained, within=60)
    wrong = []
    for n in range(MEMBERS):
        binding = await store.get_binding(f"20{n:05d}")
        expected = BindingState.FOLLOWED if n % 3 == 0 else BindingState.BOUND
        if binding is None or binding.state is not expected:
            wrong.append((n, None if binding is None else binding.state))
    assert wrong == []


async def test_interleaved_follows_and_unfollows_end_in_each_members_last_state(
    aiohttp_server: ServerFactory, store_url: str
) -> None:
    async with running_world(aiohttp_server, store_url=store_url, members=_members(), workers=8) as world:
        store = world.service.app[STORE]
        await _bind_all(store, world.wecom)
        await _send_pairs(world.service_url, spread=False)
        await _assert_last_states(store)


async def test_the_order_holds_across_two_processes(aiohttp_server: ServerFactory, store_url: str) -> None:
    port = free_port()
    wecom = await aiohttp_server(wecom_sandbox(callback_url=f"http://127.0.0.1:{port}/wecom/callback",
                                               members=_members()))
    store = await open_store(store_url)
    try:
        await _bind_all(store, wecom.app[WECOM_SANDBOX_STATE])
        env = service_env(port, wecom_api_base=str(wecom.make_url("")).rstrip("/"), store_url=store_url)
        env["WECOM_BIND_WORKERS"] = "4"
        process = start_service(["serve", "--host", "127.0.0.1", "--port", str(port), "--processes", "2"], env)
        try:
            await asyncio.to_thread(wait_healthy, f"http://127.0.0.1:{port}", process)
            await _send_pairs(f"http://127.0.0.1:{port}", spread=True)
            await _assert_last_states(store)
        finally:
            _, stderr = stop(process)
        assert "Traceback" not in stderr
    finally:
        await store.close()
