"""A running `wecom-bind serve` accepts a subscribe event encrypted by wechatpy, over real HTTP."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET

import aiohttp
from wechatpy.enterprise.crypto import WeChatCrypto

from tests.support.callbacks import AES_KEY, AGENT_ID, CORP_ID, TOKEN, event_xml
from tests.support.processes import free_port, start_service, stop, wait_healthy


def _env(port: int) -> dict[str, str]:
    return {
        "WECOM_BIND_CORP_ID": CORP_ID,
        "WECOM_BIND_TOKEN": TOKEN,
        "WECOM_BIND_ENCODING_AES_KEY": AES_KEY,
        "WECOM_BIND_AGENT_ID": str(AGENT_ID),
        "WECOM_BIND_APP_SECRET": "app-secret",
        "WECOM_BIND_CONTACTS_SECRET": "contacts-secret",
        "WECOM_BIND_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "WECOM_BIND_CAS_BASE_URL": f"http://127.0.0.1:{port}/sandbox/cas",
        "WECOM_BIND_SESSION_SECRET": "x" * 40,
    }


async def test_subscribe_encrypted_by_wechatpy_is_accepted_and_dispatched() -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = start_service(["serve", "--host", "127.0.0.1", "--port", str(port)], _env(port))
    try:
        wait_healthy(base, process)
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
            query["msg_signature"] = "f" * 40
            async with session.post(base + "/wecom/callback", params=query, data=reply.encode()) as response:
                assert response.status == 403
            async with session.get(base + "/health") as response:
                assert (await response.json())["status"] == "ok"
    finally:
        _, stderr = stop(process)
    assert "event subscribe for member zhangsan" in stderr
    assert stderr.count("event subscribe") == 1
    assert "callback refused (403)" in stderr
    assert TOKEN not in stderr
    assert AES_KEY not in stderr
