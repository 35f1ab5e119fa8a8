"""The contacts-sync assistant's own event server, /wecom/contacts-callback: its own Token and key,
the same strict crypto and the same durable inbox; off (404) without its settings."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from callback_service.web.app import create_app
from callback_service.web.keys import INBOX
from crypto import WeComCrypto
from handlers.core.events import ContactChange
from tests.callback_service.conftest import NOW, Clock, Recorder
from tests.support.callbacks import CORP_ID, encrypt_callback, envelope, event_xml
from tests.support.world import world_settings

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Awaitable[Client]]

CONTACTS_TOKEN = "contactsTokenForTheSyncAssistant"
CONTACTS_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
UPDATE_USER = "<ChangeType><![CDATA[update_user]]></ChangeType><UserID><![CDATA[2021001]]></UserID>"


def _contacts_crypto(receive_id: str = CORP_ID) -> WeComCrypto:
    return WeComCrypto(token=CONTACTS_TOKEN, encoding_aes_key=CONTACTS_KEY, receive_id=receive_id)


def _signed(message: str, *, timestamp: int = NOW, receive_id: str = CORP_ID) -> tuple[dict[str, str], bytes]:
    crypto = _contacts_crypto(receive_id)
    encrypted = crypto.encrypt(message.encode())
    nonce = "1372623149"
    query = {"msg_signature": crypto.sign(str(timestamp), nonce, encrypted), "timestamp": str(timestamp),
             "nonce": nonce}
    return query, envelope(encrypted)


@pytest.fixture
async def contacts_client(
    aiohttp_client: ClientFactory, clock: Clock, recorder: Recorder, store_url: str
) -> Client:
    settings = world_settings(
        store_url=store_url, contacts_token=CONTACTS_TOKEN, contacts_encoding_aes_key=CONTACTS_KEY
    )
    app = create_app(settings, clock=clock, dispatcher=recorder.dispatcher(), run_workers=False)
    return await aiohttp_client(app)


async def _post(client: Client, query: dict[str, str], body: bytes) -> int:
    response = await client.post("/wecom/contacts-callback", params=query, data=body)
    await client.app[INBOX].drain()
    return response.status


async def test_an_update_user_with_only_a_user_id_reaches_the_inbox(
    contacts_client: Client, recorder: Recorder
) -> None:
    query, body = _signed(event_xml("change_contact", "sys", create_time=NOW, extra=UPDATE_USER))
    assert await _post(contacts_client, query, body) == 200
    [event] = recorder.events
    assert isinstance(event, ContactChange)
    assert (event.kind, event.member_id) == ("change_contact:update_user", "2021001")
    assert event.mobile is None  # not sent, so not known: never "no mobile"
    # A retry of the same message is acknowledged and stored once.
    assert await _post(contacts_client, query, body) == 200
    assert len(recorder.events) == 1


async def test_the_url_verification_answers_with_the_contacts_key(contacts_client: Client) -> None:
    crypto = _contacts_crypto()
    echostr = crypto.encrypt(b"4520136297893862531")
    query = {"msg_signature": crypto.sign(str(NOW), "5", echostr), "timestamp": str(NOW), "nonce": "5",
             "echostr": echostr}
    response = await contacts_client.get("/wecom/contacts-callback", params=query)
    assert response.status == 200
    assert await response.text() == "4520136297893862531"


async def test_each_server_takes_only_its_own_token(contacts_client: Client, recorder: Recorder) -> None:
    app_signed = encrypt_callback(event_xml("change_contact", "sys", create_time=NOW, extra=UPDATE_USER),
                                  timestamp=NOW)
    assert await _post(contacts_client, app_signed.query, app_signed.body) == 403
    query, body = _signed(event_xml("change_contact", "sys", create_time=NOW, extra=UPDATE_USER))
    response = await contacts_client.post("/wecom/callback", params=query, data=body)
    assert response.status == 403
    assert recorder.events == []


@pytest.mark.parametrize(
    ("case", "status"),
    [("stale", 403), ("other corp", 403), ("bad signature", 403), ("entity", 400), ("too large", 413)],
)
async def test_the_same_strict_checks(contacts_client: Client, recorder: Recorder, case: str, status: int) -> None:
    message = event_xml("change_contact", "sys", create_time=NOW, extra=UPDATE_USER)
    if case == "stale":
        query, body = _signed(message, timestamp=NOW - 3600)
    elif case == "other corp":
        query, body = _signed(message, receive_id="wwsomeoneelse00000")
    elif case == "bad signature":
        query, body = _signed(message)
        query["msg_signature"] = "0" * 40
    elif case == "entity":
        query, body = _signed('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "e">]><xml>&e;</xml>')
    else:
        query, body = _signed(message)
        body = body + b" " * (70 * 1024)
    assert await _post(contacts_client, query, body) == status
    assert recorder.events == []


async def test_without_its_settings_the_endpoint_does_not_exist(client: Client) -> None:
    query, body = _signed(event_xml("change_contact", "sys", create_time=NOW, extra=UPDATE_USER))
    assert (await client.post("/wecom/contacts-callback", params=query, data=body)).status == 404
    assert (await client.get("/wecom/contacts-callback", params=query)).status == 404


def test_the_token_and_key_come_together() -> None:
    with pytest.raises(ValueError, match="set together"):
        world_settings(contacts_token=CONTACTS_TOKEN)
