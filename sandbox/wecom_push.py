"""The emulator's callback pushes: encrypted events POSTed to the service with WeCom's retry policy.

Two targets, as in today's WeCom: the app's 接收消息 URL gets subscribe, unsubscribe and enter_agent;
the contacts-sync assistant's own event server (its URL, Token and EncodingAESKey) gets change_contact
(developer.work.weixin.qq.com/document/path/90970: "变更的事件，将推送到企业微信管理端通讯录助手中的
'接收事件服务器'").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import string
import time
from dataclasses import dataclass, field
from typing import Final
from xml.sax.saxutils import escape

import aiohttp

from crypto import WeComCrypto
from sandbox.wecom_state import Member, PushRecord, WeComSandboxState

log: Final = logging.getLogger(__name__)

PUSH_TRIES: Final = 3
"""WeCom tries a callback 3 times in all; only HTTP 200 counts as delivered."""


@dataclass(frozen=True, slots=True)
class CallbackTarget:
    """Where the emulator pushes events: the service's callback URL and its Token and EncodingAESKey."""

    url: str
    token: str = field(repr=False)
    encoding_aes_key: str = field(repr=False)


def _cdata(value: str) -> str:
    # "]]>" cannot sit inside CDATA; split it across two sections as XML allows.
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def event_xml(corp_id: str, sender: str, create_time: int, event: str, fields: dict[str, str],
              *, agent_id: int | None) -> str:
    """The decrypted XML of an event callback, in the element order of WeCom's samples."""
    parts = [
        f"<ToUserName>{_cdata(corp_id)}</ToUserName>",
        f"<FromUserName>{_cdata(sender)}</FromUserName>",
        f"<CreateTime>{create_time}</CreateTime>",
        f"<MsgType>{_cdata('event')}</MsgType>",
        f"<Event>{_cdata(event)}</Event>",
    ]
    for tag, value in fields.items():
        parts.append(f"<{tag}>{_cdata(value) if not value.isdigit() else escape(value)}</{tag}>")
    if agent_id is not None:
        parts.append(f"<AgentID>{agent_id}</AgentID>")
    return "<xml>" + "".join(parts) + "</xml>"


APP_TARGET: Final = "app"
CONTACTS_TARGET: Final = "contacts"


class Pusher:
    """Pushes events in order from one background worker; `drain()` waits until each push is done with."""

    def __init__(
        self,
        *,
        state: WeComSandboxState,
        target: CallbackTarget | None,
        timeout: float,
        retry_delay: float,
        contacts_target: CallbackTarget | None = None,
    ) -> None:
        self._state = state
        self._targets = {
            name: found for name, found in ((APP_TARGET, target), (CONTACTS_TARGET, contacts_target)) if found
        }
        self._timeout = timeout
        self._retry_delay = retry_delay
        self._cryptos = {
            name: WeComCrypto(
                token=found.token,
                encoding_aes_key=found.encoding_aes_key,
                receive_id=state.corp_id,
                random_bytes=lambda n: bytes(state.rng.getrandbits(8) for _ in range(n)),
            )
            for name, found in self._targets.items()
        }
        self._queue: asyncio.Queue[PushRecord] = asyncio.Queue()
        self._session: aiohttp.ClientSession | None = None
        self._worker: asyncio.Task[None] | None = None

    @property
    def target_urls(self) -> dict[str, str]:
        """The URL of each configured target, by name ("app", "contacts")."""
        return {name: found.url for name, found in self._targets.items()}

    @property
    def enabled(self) -> bool:
        """Whether the app's callback target is configured."""
        return APP_TARGET in self._targets

    def push(self, event: str, userid: str, *, sender: str | None = None,
             fields: dict[str, str] | None = None, agent: bool = True) -> PushRecord | None:
        """Queue an event for the app's callback URL; None when no target is configured."""
        state = self._state
        xml = event_xml(
            state.corp_id,
            sender if sender is not None else userid,
            int(state.clock()),
            event,
            fields or {},
            agent_id=state.agent_id if agent else None,
        )
        return self._queue_record(PushRecord(event=event, userid=userid, xml=xml, target=APP_TARGET))

    def push_membership(self, member: Member, *, was_in: bool) -> PushRecord | None:
        """Push subscribe or unsubscribe to the app when the member entered or left it.

        document/path/90240 (and 90376): subscribe and unsubscribe come "成员已经加入企业，管理员添加成员
        到应用可见范围(或移除可见范围)时; 成员已经在应用可见范围，成员加入(或退出)企业时": a follow of the
        WeChat plugin is only one way in; leaving the range, being disabled or leaving the organisation are
        ways out.
        """
        now_in = self._state.in_app(member)
        if now_in == was_in:
            return None
        return self.push("subscribe" if now_in else "unsubscribe", member.userid)

    def push_contact(self, change_type: str, userid: str, fields: dict[str, str] | None = None
                     ) -> PushRecord | None:
        """Queue a change_contact for the contacts-sync event server; None when it is not configured.

        Since 2022-08-15 that server hears only the UserID and the department fields of a member
        (document/path/90970: "对于2022年8月15号后通讯录助手新配置或修改的回调url，成员属性只回调
        UserId/Department两个字段"), so callers pass no Name or Mobile.
        """
        state = self._state
        xml = event_xml(
            state.corp_id, "sys", int(state.clock()), "change_contact",
            {"ChangeType": change_type, "UserID": userid, **(fields or {})}, agent_id=None,
        )
        return self._queue_record(
            PushRecord(event="change_contact", userid=userid, xml=xml, target=CONTACTS_TARGET)
        )

    def _queue_record(self, record: PushRecord) -> PushRecord | None:
        if record.target not in self._targets:
            return None
        self._state.pushes.append(record)
        self._queue.put_nowait(record)
        return record

    async def drain(self) -> None:
        """Wait until every queued push was delivered or gave up."""
        await self._queue.join()

    async def start(self) -> None:
        """Open the HTTP session and start the worker (on app startup)."""
        if not self._targets:
            return
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout))
        self._worker = asyncio.create_task(self._run(), name="wecom-sandbox-pusher")

    async def close(self, *, grace: float = 1.0) -> None:
        """Let queued pushes finish for up to `grace` seconds, then cancel and close (on cleanup)."""
        if self._worker is not None:
            try:
                await asyncio.wait_for(self._queue.join(), grace)
            except TimeoutError:
                log.warning("sandbox: %d callback pushes left undelivered at shutdown", self._queue.qsize())
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self) -> None:
        while True:
            record = await self._queue.get()
            try:
                await self._deliver(record)
            except Exception:  # a push must never kill the worker
                log.exception("sandbox: callback push failed")
            finally:
                self._queue.task_done()

    async def _deliver(self, record: PushRecord) -> None:
        target = self._targets[record.target]
        crypto = self._cryptos[record.target]
        if self._session is None:
            raise RuntimeError("sandbox: callback push delivered before the pusher was started")
        # The contacts-sync assistant is no app: its envelope names no agent.
        agent = str(self._state.agent_id) if record.target == APP_TARGET else ""
        for attempt in range(PUSH_TRIES):
            if attempt:
                await asyncio.sleep(self._retry_delay)
            # Each try is signed afresh, as WeCom's retries carry their own timestamp and nonce.
            encrypted = crypto.encrypt(record.xml.encode("utf-8"))
            timestamp = str(int(self._state.clock()))
            nonce = self._state.random_text(10, string.digits)
            query = {
                "msg_signature": crypto.sign(timestamp, nonce, encrypted),
                "timestamp": timestamp,
                "nonce": nonce,
            }
            body = (
                f"<xml><ToUserName>{_cdata(self._state.corp_id)}</ToUserName>"
                f"<Encrypt>{_cdata(encrypted)}</Encrypt>"
                f"<AgentID>{_cdata(agent)}</AgentID></xml>"
            )
            started = time.monotonic()
            try:
                async with self._session.post(
                    target.url,
                    params=query,
                    data=body.encode("utf-8"),
                    headers={"Content-Type": "text/xml; charset=utf-8"},
                ) as response:
                    await response.read()
                    outcome = str(response.status)
                    delivered = response.status == 200
            except TimeoutError:
                outcome, delivered = "timeout", False
            except aiohttp.ClientError as exc:
                outcome, delivered = type(exc).__name__, False
            record.tries.append(outcome)
            log.info(
                "sandbox: pushed %s for %s, try %d: %s (%.0f ms)",
                record.event, record.userid, attempt + 1, outcome, (time.monotonic() - started) * 1000,
            )
            if delivered:
                record.delivered = True
                return

