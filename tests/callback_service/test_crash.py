"""kill -9 between the acknowledgement and the handling: the next process handles the event, once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time

import aiohttp

from callback_service.store import open_store
from handlers.core.binding import Actor, Binding, BindingState
from handlers.core.phone import Phone
from sandbox.wecom_keys import WECOM_SANDBOX_FAULTS, WECOM_SANDBOX_STATE
from sandbox.wecom_state import Member
from tests.support.callbacks import encrypt_callback, event_xml
from tests.support.processes import free_port, start_service, stop, wait_healthy
from tests.support.world import ServerFactory, eventually, service_env, wecom_sandbox

STUDENT = Actor(who="2021001", source="web 127.0.0.1")


async def test_kill_9_while_handling_loses_nothing(
    aiohttp_server: ServerFactory, store_url: str
) -> None:
    wecom_app = wecom_sandbox(
        callback_url="http://127.0.0.1:9/unused",
        members=[Member(userid="2021001", name="张三", department=[1], mobile="13800000001")],
    )
    state = wecom_app[WECOM_SANDBOX_STATE]
    state.follow("2021001", state.add_wechat("张三的微信", "13800000001"))
    store = await open_store(store_url)
    try:  # bound through the flow, so that its follow is welcomed
        claim = await store.claim_phone("2021001", Phone("13800000001"), lease=60, actor=STUDENT)
        await store.commit_claim(claim)
    finally:
        await store.close()
    # The handler's first WeCom call hangs: the process is killed while it holds the event.
    wecom_app[WECOM_SANDBOX_FAULTS].delay(60, api="user/convert_to_openid")
    wecom_server = await aiohttp_server(wecom_app)
    api_base = str(wecom_server.make_url("")).rstrip("/")

    def launch() -> tuple[str, subprocess.Popen[str]]:
        port = free_port()
        env = service_env(port, wecom_api_base=api_base, store_url=store_url)
        env["WECOM_BIND_INBOX_LEASE"] = "2"
        process = start_service(["serve", "--host", "127.0.0.1", "--port", str(port)], env)
        wait_healthy(f"http://127.0.0.1:{port}", process)
        return f"http://127.0.0.1:{port}", process

    base, first = await asyncio.to_thread(launch)
    try:
        signed = encrypt_callback(event_xml("subscribe", "2021001", create_time=int(time.time())),
                                  timestamp=int(time.time()))
        async with aiohttp.ClientSession() as http, http.post(
            base + "/wecom/callback", params=signed.query, data=signed.body
        ) as response:
            assert response.status == 200  # acknowledged: from here on it must not be lost

        async def holding() -> bool | None:
            return True if not wecom_app[WECOM_SANDBOX_FAULTS].armed else None

        await eventually(holding)  # the worker is inside the handler, waiting on WeCom
        os.kill(first.pid, signal.SIGKILL)
    finally:
        stop(first)

    store = await open_store(store_url)
    try:
        binding = await store.get_binding("2021001")
        assert binding is None or binding.state is not BindingState.FOLLOWED
        assert (await store.inbox_stats()).leased == 1
    finally:
        await store.close()

    _, second = await asyncio.to_thread(launch)
    try:
        store = await open_store(store_url)
        try:
            async def followed() -> Binding | None:
                found = await store.get_binding("2021001")
                return found if found is not None and found.state is BindingState.FOLLOWED else None

            binding = await eventually(followed, within=20)
            assert binding.openid == state.openid_of("2021001")

            async def drained() -> bool | None:
                stats = await store.inbox_stats()
                return True if stats.pending == stats.leased == stats.dead == 0 else None

            await eventually(drained)
        finally:
            await store.close()
    finally:
        _, stderr = stop(second)
    assert stderr.count("handled: subscribe for member 2021001") == 1
    assert [sent.touser for sent in state.messages] == [("2021001",)]
