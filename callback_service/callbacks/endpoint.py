"""The WeCom callback endpoints: `GET` verifies the URL, `POST` receives encrypted events.

Two servers share this code: the app's (/wecom/callback) and the contacts-sync assistant's
(/wecom/contacts-callback), each with its own Token and EncodingAESKey, hence its own receiver.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

from callback_service.answers import http_error
from callback_service.callbacks.inbox import INBOX
from callback_service.callbacks.receiver import CallbackReceiver, CallbackRejected
from callback_service.client_address import client_of

log: Final = logging.getLogger(__name__)

RECEIVER: Final = web.AppKey("receiver", CallbackReceiver)
"""The app's callback server (/wecom/callback)."""
CONTACTS_RECEIVER: Final = web.AppKey("contacts_receiver", CallbackReceiver)
"""The contacts-sync assistant's event server: set only when its Token and key are."""
CALLBACK_MAX_BYTES: Final = web.AppKey("callback_max_bytes", int)
"""The largest callback body (the setting `callback_max_bytes`)."""


PATH: Final = "/wecom/callback"
"""The app's callback server."""
CONTACTS_PATH: Final = "/wecom/contacts-callback"
"""The contacts-sync assistant's event server."""
CALLBACK_PATHS: Final = (PATH, CONTACTS_PATH)


def _reject(request: web.Request, exc: CallbackRejected) -> web.Response:
    log.warning("callback refused (%d) from %s: %s", exc.status, client_of(request), exc.reason)
    return web.Response(status=exc.status, text=http_error(exc.status).plain)


Endpoint = Callable[[web.Request], Awaitable[web.Response]]


def endpoints(receiver: web.AppKey[CallbackReceiver]) -> tuple[Endpoint, Endpoint]:
    """The URL verification (GET) and event (POST) endpoints of one callback server, whose
    Token and EncodingAESKey are those of the receiver under that key."""

    async def verify(request: web.Request) -> web.Response:
        return await verify_url(request, request.app[receiver])

    async def receive(request: web.Request) -> web.Response:
        return await receive_event(request, request.app[receiver])

    return verify, receive


async def verify_url(request: web.Request, receiver: CallbackReceiver) -> web.Response:
    """Answer WeCom's URL verification with the bare decrypted echostr."""
    query = request.query
    # Some proxies turn an unencoded '+' of the base64 echostr into a space; base64 has no spaces.
    echostr = query.get("echostr", "").replace(" ", "+")
    try:
        plaintext = receiver.verify_url(
            msg_signature=query.get("msg_signature", ""),
            timestamp=query.get("timestamp", ""),
            nonce=query.get("nonce", ""),
            echostr=echostr,
        )
    except CallbackRejected as exc:
        return _reject(request, exc)
    return web.Response(text=plaintext, content_type="text/plain")


async def _read_capped(request: web.Request, limit: int) -> bytes | None:
    if request.content_length is not None:
        if request.content_length > limit:
            return None
        # The parser stops at the declared length, so one read is bounded by the limit.
        return await request.read()
    body = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


async def receive_event(request: web.Request, receiver: CallbackReceiver) -> web.Response:
    """Verify, decrypt and parse a callback, store its event in the inbox, and acknowledge it."""
    body = await _read_capped(request, request.app[CALLBACK_MAX_BYTES])
    if body is None:
        log.warning("callback refused (413) from %s: body over the limit", client_of(request))
        return web.Response(status=413, text=http_error(413).plain)
    query = request.query
    try:
        event = receiver.receive(
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
