"""Callback pushes: a real receiver checks the signature and decrypts; WeCom's retry policy."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import defusedxml.ElementTree as SafeET
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from callback_service.callbacks.xml import parse_event
from callback_service.web.app import create_app
from config import Settings
from crypto import WeComCrypto
from handlers.dispatch import Dispatcher
from handlers.events import ContactChange, Event
from sandbox.wecom import CallbackTarget
from tests.wecom._support import (
    AES_KEY,
    AGENT_ID,
    APP_SECRET,
    CORP_ID,
    TOKEN,
    browser,
    new_wechat,
    post_page,
)
from tests.wecom.conftest import ClientFactory, Sandbox, SandboxFactory


@dataclass
class Receiver:
    """A callback endpoint that answers the scripted statuses, then 200, and keeps what it decrypted."""

    statuses: list[int] = field(default_factory=list)
    stall: float = 0.0
    posts: int = 0
    messages: list[dict[str, str]] = field(default_factory=list)
    crypto: WeComCrypto = field(
        default_factory=lambda: WeComCrypto(token=TOKEN, encoding_aes_key=AES_KEY, receive_id=CORP_ID)
    )

    async def handle(self, request: web.Request) -> web.Response:
        self.posts += 1
        body = await request.read()
        envelope = SafeET.fromstring(body)
        assert envelope.findtext("ToUserName") == CORP_ID
        assert envelope.findtext("AgentID") == str(AGENT_ID)
        encrypted = envelope.findtext("Encrypt") or ""
        query = request.query
        # decrypt_verified checks msg_signature (constant time) before it decrypts, and the corp id.
        plaintext = self.crypto.decrypt_verified(
            query["msg_signature"], query["timestamp"], query["nonce"], encrypted
        )
        if self.stall:
            await asyncio.sleep(self.stall)
        status = self.statuses.pop(0) if self.statuses else 200
        if status == 200:
            root = SafeET.fromstring(plaintext)
            self.messages.append({child.tag: (child.text or "") for child in root})
        return web.Response(status=status, text="success" if status == 200 else "no")


StartReceiver = Callable[..., Awaitable[tuple[Receiver, str]]]


@pytest.fixture
def start_receiver(aiohttp_server: AiohttpServer) -> StartReceiver:
    async def start(**options: object) -> tuple[Receiver, str]:
        receiver = Receiver(**options)  # type: ignore[arg-type]
        app = web.Application()
        app.router.add_post("/wecom/callback", receiver.handle)
        server = await aiohttp_server(app)
        return receiver, str(server.make_url("/wecom/callback"))

    return start


async def pushing_sandbox(start_sandbox: SandboxFactory, url: str, **options: object) -> Sandbox:
    target = CallbackTarget(url=url, token=TOKEN, encoding_aes_key=AES_KEY)
    return await start_sandbox(callback=target, push_retry_delay=0.0, **options)


async def test_follow_and_unfollow_push_subscribe_and_unsubscribe(
    start_sandbox: SandboxFactory, start_receiver: StartReceiver
) -> None:
    receiver, url = await start_receiver()
    sandbox = await pushing_sandbox(start_sandbox, url)
    async with browser() as http:
        await new_wechat(http, sandbox.base, "张三", "13800000001")
        await post_page(http, sandbox.url("/follow"))
        await post_page(http, sandbox.url("/unfollow"))
    await sandbox.pusher.drain()
    assert [(m["Event"], m["FromUserName"]) for m in receiver.messages] == [
        ("subscribe", "2021001"),
        ("unsubscribe", "2021001"),
    ]
    first = receiver.messages[0]
    assert (first["ToUserName"], first["MsgType"], first["AgentID"]) == (CORP_ID, "event", str(AGENT_ID))
    assert first["CreateTime"].isdigit()
    assert [(p.event, p.tries, p.delivered) for p in sandbox.state.pushes] == [
        ("subscribe", ["200"], True),
        ("unsubscribe", ["200"], True),
    ]


async def test_member_edits_push_change_contact(
    start_sandbox: SandboxFactory, start_receiver: StartReceiver, make_client: ClientFactory
) -> None:
    receiver, url = await start_receiver()
    sandbox = await pushing_sandbox(start_sandbox, url)
    contacts = make_client(api_base=sandbox.base)
    await contacts.user_update("2021002", mobile="13800000022")
    await contacts.user_update("2021002", new_userid="lisi")
    await contacts.user_delete("lisi")
    await sandbox.pusher.drain()
    update, rename, delete = receiver.messages
    assert (update["Event"], update["ChangeType"], update["UserID"], update["Mobile"]) == (
        "change_contact", "update_user", "2021002", "13800000022"
    )
    assert update["FromUserName"] == "sys"
    assert (rename["ChangeType"], rename["UserID"], rename["NewUserID"]) == ("update_user", "2021002", "lisi")
    assert (delete["ChangeType"], delete["UserID"]) == ("delete_user", "lisi")
    # The service's own parser reads them as typed events.
    parsed = parse_event(sandbox.state.pushes[1].xml.encode())
    assert isinstance(parsed, ContactChange)
    assert parsed.kind == "change_contact:update_user"
    assert (parsed.user_id, parsed.new_user_id) == ("2021002", "lisi")


async def test_a_receiver_failing_twice_gets_three_tries(
    start_sandbox: SandboxFactory, start_receiver: StartReceiver
) -> None:
    receiver, url = await start_receiver(statuses=[500, 500])
    sandbox = await pushing_sandbox(start_sandbox, url)
    async with browser() as http:
        await new_wechat(http, sandbox.base, "张三", "13800000001")
        await post_page(http, sandbox.url("/follow"))
    await sandbox.pusher.drain()
    assert receiver.posts == 3
    [push] = sandbox.state.pushes
    assert (push.tries, push.delivered) == (["500", "500", "200"], True)
    assert [m["Event"] for m in receiver.messages] == ["subscribe"]


async def test_a_receiver_always_failing_gets_exactly_three_tries(
    start_sandbox: SandboxFactory, start_receiver: StartReceiver
) -> None:
    receiver, url = await start_receiver(statuses=[503] * 10)
    sandbox = await pushing_sandbox(start_sandbox, url)
    async with browser() as http:
        await new_wechat(http, sandbox.base, "张三", "13800000001")
        await post_page(http, sandbox.url("/follow"))
    await sandbox.pusher.drain()
    assert receiver.posts == 3
    [push] = sandbox.state.pushes
    assert (push.tries, push.delivered) == (["503", "503", "503"], False)


async def test_a_slow_receiver_times_out(
    start_sandbox: SandboxFactory, start_receiver: StartReceiver
) -> None:
    receiver, url = await start_receiver(stall=0.5)
    sandbox = await pushing_sandbox(start_sandbox, url, push_timeout=0.1)
    started = time.monotonic()
    async with browser() as http:
        await new_wechat(http, sandbox.base, "张三", "13800000001")
        await post_page(http, sandbox.url("/follow"))
    await sandbox.pusher.drain()
    assert time.monotonic() - started < 2.0
    [push] = sandbox.state.pushes
    assert (push.tries, push.delivered) == (["timeout"] * 3, False)
    assert receiver.posts == 3


async def test_the_running_service_receives_the_pushes(
    start_sandbox: SandboxFactory, aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    events: list[Event] = []

    async def record(event: Event) -> None:
        events.append(event)

    settings = Settings.model_validate({
        "corp_id": CORP_ID,
        "token": TOKEN,
        "encoding_aes_key": AES_KEY,
        "agent_id": AGENT_ID,
        "app_secret": APP_SECRET,
        "contacts_secret": "contacts",
        "public_base_url": "http://127.0.0.1:8080",
        "cas_base_url": "http://127.0.0.1:8080/sandbox/cas",
        "wecom_api_base": "http://127.0.0.1:9",  # never WeCom's real host in a test
        "session_secret": "x" * 40,
        "store_url": f"sqlite:///{tmp_path}/service.db",
    })
    service = await aiohttp_server(create_app(settings, dispatcher=Dispatcher({}, fallback=record)))
    # The service checks timestamps against the real clock, so this emulator runs on it too.
    sandbox = await pushing_sandbox(
        start_sandbox, str(service.make_url("/wecom/callback")), clock=time.time
    )
    async with browser() as http:
        await new_wechat(http, sandbox.base, "李四", "13800000002")
        await post_page(http, sandbox.url("/follow"))
        await post_page(http, sandbox.url("/unfollow"))
    await sandbox.pusher.drain()
    assert all(p.delivered for p in sandbox.state.pushes)
    # The service acknowledges into its inbox; its workers dispatch a moment later.
    for _ in range(100):
        if len(events) == 2:
            break
        await asyncio.sleep(0.02)
    assert sorted(type(e).__name__ for e in events) == ["Subscribe", "Unsubscribe"]
    assert {e.user_id for e in events} == {"2021002"}
