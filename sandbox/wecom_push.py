"""The emulator's callback pushes: encrypted events POSTed to the service with WeCom's retry policy."""

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
from sandbox.wecom_state import PushRecord, WeComSandboxState

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


class Pusher:
    """Pushes events in order from one background worker; `drain()` waits until all are settled."""

    def __init__(
        self,
        *,
        state: WeComSandboxState,
        target: CallbackTarget | None,
        timeout: float,
        retry_delay: float,
    ) -> None:
        self._state = state
        self._target = target
        self._timeout = timeout
        self._retry_delay = retry_delay
        self._crypto = (
            WeComCrypto(
                token=target.token,
                encoding_aes_key=target.encoding_aes_key,
                receive_id=state.corp_id,
                random_bytes=lambda n: bytes(state.rng.getrandbits(8) for _ in range(n)),
            )
            if target is not None
            else None
        )
        self._queue: asyncio.Queue[PushRecord] = asyncio.Queue()
        self._session: aiohttp.ClientSession | None = None
        self._worker: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        """Whether a callback target is configured."""
        return self._target is not None

    def push(self, event: str, userid: str, *, sender: str | None = None,
             fields: dict[str, str] | None = None, agent: bool = True) -> PushRecord | None:
        """Queue an event for the callback URL; None when no target is configured."""
        if self._target is None:
            return None
        state = self._state
        xml = event_xml(
            state.corp_id,
            sender if sender is not None else userid,
            int(state.clock()),
            event,
            fields or {},
            agent_id=state.agent_id if agent else None,
        )
        record = PushRecord(event=event, userid=userid, xml=xml)
        state.pushes.append(record)
        self._queue.put_nowait(record)
        return record

    async def drain(self) -> None:
        """Wait until every queued push was delivered or gave up."""
        await self._queue.join()

    async def start(self) -> None:
        """Open the HTTP session and start the worker (on app startup)."""
        if self._target is None:
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
        assert self._target is not None
        assert self._crypto is not None
        assert self._session is not None
        for attempt in range(PUSH_TRIES):
            if attempt:
                await asyncio.sleep(self._retry_delay)
            # Each try is signed afresh, as WeCom's retries carry their own timestamp and nonce.
            encrypted = self._crypto.encrypt(record.xml.encode("utf-8"))
            timestamp = str(int(self._state.clock()))
            nonce = self._state.random_text(10, string.digits)
            query = {
                "msg_signature": self._crypto.sign(timestamp, nonce, encrypted),
                "timestamp": timestamp,
                "nonce": nonce,
            }
            body = (
                f"<xml><ToUserName>{_cdata(self._state.corp_id)}</ToUserName>"
                f"<Encrypt>{_cdata(encrypted)}</Encrypt>"
                f"<AgentID>{_cdata(str(self._state.agent_id))}</AgentID></xml>"
            )
            started = time.monotonic()
            try:
                async with self._session.post(
                    self._target.url,
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

