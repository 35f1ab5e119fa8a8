"""A running `wecom-bind serve` takes a subscribe encrypted by wechatpy; the member ends up followed."""

from __future__ import annotations

import asyncio
import json
import time
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from wechatpy.enterprise.crypto import WeChatCrypto

from callback_service.store import open_store
from handlers.core.binding import Actor, BindingState
from handlers.core.phone import Phone
from sandbox.wecom import create_wecom_sandbox
from sandbox.wecom_keys import WECOM_SANDBOX_STATE
from sandbox.wecom_state import APP, CONTACTS, Member
from tests.support.callbacks import AES_KEY, AGENT_ID, CORP_ID, TOKEN, event_xml
from tests.support.processes import free_port, start_service, stop, wait_healthy
from tests.support.rawhttp import raw_request
from tests.support.world import APP_SECRET, CONTACTS_SECRET, service_env


async def test_subscribe_encrypted_by_wechatpy_is_accepted_and_dispatched(
    aiohttp_server: Callable[[web.Application], Awaitable[TestServer]], tmp_path: Path
) -> None:
    # WeCom's side: zhangsan is a member, and a WeChat follows as zhangsan.
    wecom = create_wecom_sandbox(
        corp_id=CORP_ID,
        secrets={APP_SECRET: APP, CONTACTS_SECRET: CONTACTS},
        agent_id=AGENT_ID,
        callback=None,
        members=[Member(userid="zhangsan", name="张三", department=[1], mobile="13800000001")],
    )
    state = wecom[WECOM_SANDBOX_STATE]
    state.follow("zhangsan", state.add_wechat("张三的微信", "13800000001"))
    server = await aiohttp_server(wecom)
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    store = await open_store(store_url)
    try:  # bound through the flow, so that its follow is welcomed
        actor = Actor(who="zhangsan", source="web 127.0.0.1")
        await store.commit_claim(await store.claim_phone("zhangsan", Phone("13800000001"), lease=60, actor=actor))
    finally:
        await store.close()

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = service_env(port, wecom_api_base=str(server.make_url("")).rstrip("/"), store_url=store_url)
    process = start_service(["serve", "--host", "127.0.0.1", "--port", str(port)], env)
    try:
        await asyncio.to_thread(wait_healthy, base, process)
        message = event_xml("subscribe", "zhangsan", create_time=int(time.time()))
        reply = WeChatCrypto(TOKEN, AES_KEY, CORP_ID).encrypt_message(message, "424242")
        fields = ET.fromstring(reply)  # noqa: S314 - wechatpy's own output
        query = {
            "msg_signature": fields.findtext("MsgSignature", ""),
            "timestamp": fields.findtext("TimeStamp", ""),
            "nonce": fields.findtext("Nonce", ""),
        }
        async with aiohttp.ClientSession() as session:
            async with session.post(base + "/wecom/callback", params=query, data=reply.encode()) as response:
                assert response.status == 200
                assert await response.text() == "success"
                request_id = response.headers["X-Request-Id"]
            query["msg_signature"] = "f" * 40
            async with session.post(base + "/wecom/callback", params=query, data=reply.encode()) as response:
                assert response.status == 403
        store = await open_store(store_url)
        try:
            for _ in range(200):  # bounded: the workers follow the member within seconds
                binding = await store.get_binding("zhangsan")
                if binding is not None and binding.state is BindingState.FOLLOWED:
                    break
                await asyncio.sleep(0.05)
            assert binding is not None
            assert binding.state is BindingState.FOLLOWED
            assert binding.openid == state.openid_of("zhangsan")
        finally:
            await store.close()
        for _ in range(100):  # the welcome message follows the follow
            if state.messages:
                break
            await asyncio.sleep(0.05)
        assert [sent.touser for sent in state.messages] == [("zhangsan",)]
        malformed = await raw_request(port, b"GET", b"/13800000001 \x01junk")
        assert malformed.status == 400
    finally:
        _, stderr = stop(process)
    # serve writes JSON lines; the worker's line carries the id of the request that stored the event.
    lines = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    handled = [line for line in lines if "handled: subscribe for member zhangsan" in line["message"]]
    assert len(handled) == 1
    assert handled[0]["request_id"] == request_id
    assert (handled[0]["event"], handled[0]["member"]) == ("subscribe", "zhangsan")
    access = [line for line in lines if line["logger"] == "aiohttp.access" and line.get("route")]
    assert any(line["request_id"] == request_id and line["status"] == 200 for line in access)
    assert "callback refused (403)" in stderr
    # A request the parser refuses: one warning, masked, and no traceback anywhere.
    refused = [line for line in lines if line["logger"] == "aiohttp.server"]
    assert [(line["level"], line["message"][:37]) for line in refused] == [
        ("WARNING", "malformed request from 127.0.0.1 (400")
    ]
    assert "138****0001" in refused[0]["message"]
    assert "Traceback" not in stderr
    assert TOKEN not in stderr
    assert AES_KEY not in stderr
