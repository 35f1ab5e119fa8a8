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
from handlers.core.events import ContactChange, Event
from handlers.usecases.dispatch import Dispatcher
from sandbox.wecom import STATUS_ACTIVE, STATUS_DISABLED, CallbackTarget
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
    agent_id: str = str(AGENT_ID)
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
        assert envelope.findtext("AgentID") == self.agent_id
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


CONTACTS_TOKEN = "contactsSyncToken0123"
CONTACTS_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


async def contacts_receiver(start_receiver: StartReceiver) -> tuple[Receiver, CallbackTarget]:
    """A receiver for the contacts-sync event server, with its own Token and key (and no agent)."""
    crypto = WeComCrypto(token=CONTACTS_TOKEN, encoding_aes_key=CONTACTS_AES_KEY, receive_id=CORP_ID)
    receiver, url = await start_receiver(crypto=crypto, agent_id="")
    return receiver, CallbackTarget(url=url, token=CONTACTS_TOKEN, encoding_aes_key=CONTACTS_AES_KEY)


async def test_api_writes_are_not_called_back(
    start_sandbox: SandboxFactory, start_receiver: StartReceiver, make_client: ClientFactory
) -> None:
    app_receiver, url = await start_receiver()
    receiver, target = await contacts_receiver(start_receiver)
    sandbox = await pushing_sandbox(start_sandbox, url, contacts_callback=target)
    contacts = make_client(api_base=sandbox.base)
    await contacts.user_create(userid="2021003", name="王五", department=[1], mobile="13800000003")
    await contacts.user_update("2021002", mobile="13800000022")
    await contacts.user_update("2021002", new_userid="lisi")
    await contacts.user_delete("lisi")
    await sandbox.pusher.drain()
    # document/path/90970: the contacts-sync assistant's own writes are not called back to it, and
    # none of these members had joined, so the app hears nothing either.
    assert receiver.posts == app_receiver.posts == 0
    assert sandbox.state.pushes == []


async def test_console_edits_push_change_contact_to_the_contacts_server_only(
    start_sandbox: SandboxFactory, start_receiver: StartReceiver
) -> None:
    app_receiver, url = await start_receiver()
    receiver, target = await contacts_receiver(start_receiver)
    sandbox = await pushing_sandbox(start_sandbox, url, contacts_callback=target, departments={1: "校", 2: "院"})
    async with browser() as http:
        created = {"userid": "2021003", "name": "王五", "department": [1], "mobile": "13800000003"}
        async with http.post(sandbox.url("/_sandbox/console/members"), json=created) as response:
            assert response.status == 201
        for change in ({"mobile": "13800000033", "name": "王五五"}, {"department": [2]}):
            async with http.post(sandbox.url("/_sandbox/console/members/2021003"), json=change) as response:
                assert response.status == 200
        async with http.delete(sandbox.url("/_sandbox/console/members/2021003")) as response:
            assert response.status == 200
    await sandbox.pusher.drain()
    assert app_receiver.posts == 0
    # Since 2022-08-15 a changed mobile or name is not called back at all (document/path/90970).
    create, moved, delete = receiver.messages
    assert (create["Event"], create["ChangeType"], create["UserID"], create["Department"]) == (
        "change_contact", "create_user", "2021003", "1"
    )
    assert create["FromUserName"] == "sys"
    assert "AgentID" not in create
    # Since 2022-08-15: the UserID and the department fields only, never Mobile or Name.
    assert moved == {key: moved[key] for key in ("ToUserName", "FromUserName", "CreateTime", "MsgType",
                                                 "Event", "ChangeType", "UserID", "Department")}
    assert (moved["ChangeType"], moved["UserID"], moved["Department"]) == ("update_user", "2021003", "2")
    assert "Mobile" not in moved
    assert "Name" not in moved
    assert (delete["ChangeType"], delete["UserID"]) == ("delete_user", "2021003")
    assert sandbox.state.members == {"2021001": sandbox.state.members["2021001"],
                                     "2021002": sandbox.state.members["2021002"]}
    assert [p.target for p in sandbox.state.pushes] == ["contacts"] * 3
    # The service's own parser reads them as typed events.
    parsed = parse_event(sandbox.state.pushes[1].xml.encode())
    assert isinstance(parsed, ContactChange)
    assert parsed.kind == "change_contact:update_user"
    assert parsed.member_id == "2021003"


async def test_an_event_server_saved_before_2022_08_15_hears_every_change_with_its_fields(
    start_sandbox: SandboxFactory, start_receiver: StartReceiver
) -> None:
    app_receiver, url = await start_receiver()
    receiver, target = await contacts_receiver(start_receiver)
    sandbox = await pushing_sandbox(
        start_sandbox, url, contacts_callback=target, contacts_event_server_since_2022=False
    )
    async with browser() as http:
        for change in ({"mobile": "13800000011", "name": "张三三"}, {"enable": 0}, {"new_userid": "zhangsan"}):
            async with http.post(sandbox.url("/_sandbox/console/members/2021001"), json=change) as response:
                assert response.status == 200, await response.text()
    await sandbox.pusher.drain()
    phone, disabled, renamed = receiver.messages
    assert (phone["ChangeType"], phone["UserID"], phone["Mobile"], phone["Name"]) == (
        "update_user", "2021001", "13800000011", "张三三"
    )
    assert (disabled["UserID"], disabled["Status"]) == ("2021001", "2")
    assert (renamed["UserID"], renamed["NewUserID"]) == ("2021001", "zhangsan")
    assert app_receiver.posts == 0  # 张三 had not joined: the app hears nothing


async def test_today_an_event_server_hears_a_new_user_id_and_a_department_only(
    start_sandbox: SandboxFactory, start_receiver: StartReceiver
) -> None:
    _, url = await start_receiver()
    receiver, target = await contacts_receiver(start_receiver)
    sandbox = await pushing_sandbox(start_sandbox, url, contacts_callback=target)
    async with browser() as http:
        for change in ({"mobile": "13800000011"}, {"enable": 0}, {"new_userid": "zhangsan"}):
            async with http.post(sandbox.url("/_sandbox/console/members/2021001"), json=change) as response:
                assert response.status == 200, await response.text()
    await sandbox.pusher.drain()
    [renamed] = receiver.messages
    assert (renamed["ChangeType"], renamed["UserID"], renamed["NewUserID"]) == ("update_user", "2021001", "zhangsan")
    assert "Status" not in renamed


async def test_console_refuses_bad_input_and_changes_nothing(sandbox: Sandbox) -> None:
    async with browser() as http:
        for body in ({"status": 1}, {"enable": 3}, {"mobile": "12345"}, {"department": [99]}):
            async with http.post(sandbox.url("/_sandbox/console/members/2021001"), json=body) as response:
                assert response.status == 400, body
        async with http.post(sandbox.url("/_sandbox/console/members/nobody"), json={"name": "x"}) as response:
            assert response.status == 400
        async with http.post(sandbox.url("/_sandbox/console/visible"), json={"departments": [99]}) as response:
            assert response.status == 400
    member = sandbox.state.members["2021001"]
    assert (member.mobile, member.department, member.status) == ("13800000001", [1], 4)
    assert sandbox.state.visible_departments is None


async def test_app_hears_members_enter_and_leave_it(
    start_sandbox: SandboxFactory, start_receiver: StartReceiver
) -> None:
    receiver, url = await start_receiver()
    sandbox = await pushing_sandbox(start_sandbox, url, departments={1: "校", 2: "院"})
    async with browser() as http:
        await new_wechat(http, sandbox.base, "张三", "13800000001")
        await post_page(http, sandbox.url("/follow"))
        member = sandbox.url("/_sandbox/console/members/2021001")
        async with http.post(member, json={"enable": 0}) as response:
            assert (await response.json())["status"] == STATUS_DISABLED
        async with http.post(member, json={"enable": 1}) as response:
            assert (await response.json())["status"] == STATUS_ACTIVE
        async with http.post(sandbox.url("/_sandbox/console/visible"), json={"departments": [2]}) as response:
            assert response.status == 200
        async with http.post(sandbox.url("/_sandbox/console/visible"), json={"departments": None}) as response:
            assert response.status == 200
        async with http.delete(member) as response:
            assert response.status == 200
    await sandbox.pusher.drain()
    # document/path/90240: joining, leaving the visible range, being disabled, leaving the organisation.
    assert [m["Event"] for m in receiver.messages] == [
        "subscribe", "unsubscribe", "subscribe", "unsubscribe", "subscribe", "unsubscribe"
    ]
    assert {m["FromUserName"] for m in receiver.messages} == {"2021001"}


async def test_entering_the_app_pushes_enter_agent(
    start_sandbox: SandboxFactory, start_receiver: StartReceiver
) -> None:
    receiver, url = await start_receiver()
    sandbox = await pushing_sandbox(start_sandbox, url)
    sandbox.state.set_uses_wecom_app("2021001", True)
    async with browser() as http:
        async with http.post(sandbox.url("/_sandbox/members/2021002/enter-agent")) as response:
            assert response.status == 409
        async with http.post(sandbox.url("/_sandbox/members/2021001/enter-agent")) as response:
            assert response.status == 200
    await sandbox.pusher.drain()
    assert [(m["Event"], m["FromUserName"], m["AgentID"]) for m in receiver.messages] == [
        ("enter_agent", "2021001", str(AGENT_ID))
    ]


async def test_a_follow_outside_the_visible_range_is_not_heard(
    start_sandbox: SandboxFactory, start_receiver: StartReceiver
) -> None:
    receiver, url = await start_receiver()
    sandbox = await pushing_sandbox(
        start_sandbox, url, departments={1: "校", 2: "院"}, visible_departments=[2]
    )
    async with browser() as http:
        await new_wechat(http, sandbox.base, "张三", "13800000001")
        await post_page(http, sandbox.url("/follow"))
    await sandbox.pusher.drain()
    assert sandbox.state.members["2021001"].status == STATUS_ACTIVE
    assert receiver.posts == 0


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
    async with browser() as http:
        await new_wechat(http, sandbox.base, "张三", "13800000001")
        await post_page(http, sandbox.url("/follow"))
    await sandbox.pusher.drain()
    # Each try gave up at 0.1 s, before the receiver's answer at 0.5 s, and none was delivered.
    [push] = sandbox.state.pushes
    assert (push.tries, push.delivered) == (["timeout"] * 3, False)
    assert receiver.posts == 3


async def test_the_running_service_receives_the_pushes(
    start_sandbox: SandboxFactory, aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    events: list[Event] = []
    both = asyncio.Event()

    async def record(event: Event) -> None:
        events.append(event)
        if len(events) == 2:
            both.set()

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
    async with asyncio.timeout(10):
        await both.wait()
    assert sorted(type(e).__name__ for e in events) == ["Subscribe", "Unsubscribe"]
    assert {e.member_id for e in events} == {"2021002"}
