"""The WeCom callback endpoint: `GET` verifies the URL, `POST` receives encrypted events."""

from __future__ import annotations

import logging
from typing import Final

from aiohttp import web

from callback_service.callbacks.receiver import CallbackRejected
from callback_service.web.keys import INBOX, RECEIVER, SETTINGS

log: Final = logging.getLogger(__name__)


def _reject(request: web.Request, exc: CallbackRejected) -> web.Response:
    log.warning("callback refused (%d) from %s: %s", exc.status, request.remote, exc.reason)
    text = "forbidden" if exc.status == 403 else "bad request"
    return web.Response(status=exc.status, text=text)


async def verify_url(request: web.Request) -> web.Response:
    """Answer WeCom's URL verification with the bare decrypted echostr."""
    query = request.query
    # Some proxies turn an unencoded '+' of the base64 echostr into a space; base64 has no spaces.
    echostr = query.get("echostr", "").replace(" ", "+")
    try:
        plaintext = request.app[RECEIVER].verify_url(
            msg_signature=query.get("msg_signature", ""),
            timestamp=query.get("timestamp", ""),
            nonce=query.get("nonce", ""),
            echostr=echostr,
        )
    except CallbackRejected as exc:
        return _reject(request, exc)
    return web.Response(text=plaintext, content_type="text/plain")


async def _read_capped(request: web.Request, limit: int) -> bytes | None:
    if request.content_length is not None and request.content_length > limit:
        return None
    body = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


async def receive_event(request: web.Request) -> web.Response:
    """Verify, decrypt and parse a callback, store its event in the inbox, and acknowledge it."""
    body = await _read_capped(request, request.app[SETTINGS].callback_max_bytes)
    if body is None:
        log.warning("callback refused (413) from %s: body over the limit", request.remote)
        return web.Response(status=413, text="request too large")
    query = request.query
    try:
        event = request.app[RECEIVER].receive(
            msg_signature=query.get("msg_signature", ""),
            timestamp=query.get("timestamp", ""),
            nonce=query.get("nonce", ""),
            body=body,
        )
    except CallbackRejected as exc:
        return _reject(request, exc)
    # Acknowledge only what the inbox holds durably; a store outage answers 503 so WeCom retries.
    await request.app[INBOX].accept(event)
    return web.Response(text="success", content_type="text/plain")
