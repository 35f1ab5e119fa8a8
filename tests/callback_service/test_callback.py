"""The callback endpoint over loopback HTTP: the official sample, every event type, and hostile input."""

from __future__ import annotations

import base64
import json
import os
import struct
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callback_service.callbacks.inbox import INBOX
from crypto import WeComCrypto
from handlers.core.events import ContactChange, EnterAgent, Subscribe, UnknownEvent, Unsubscribe
from tests.callback_service.conftest import NOW, Clock, Recorder
from tests.support.callbacks import (
    AES_KEY,
    CORP_ID,
    TOKEN,
    encrypt_callback,
    envelope,
    event_xml,
    sign_ciphertext,
)
from tests.support.reference import VECTORS

Client = TestClient[web.Request, web.Application]


def vectors() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VECTORS.read_text(encoding="utf-8"))
    return data


async def post(client: Client, query: dict[str, str], body: bytes) -> tuple[int, str]:
    """Post a callback, then let the inbox hand what it stored to the recording dispatcher."""
    response = await client.post("/wecom/callback", params=query, data=body)
    await client.app[INBOX].drain()
    return response.status, await response.text()


# --- the official sample -------------------------------------------------------------------------


async def test_url_verification_answers_the_bare_plaintext(client: Client, clock: Clock) -> None:
    sample = vectors()["verify_url"]
    clock.now = int(sample["timestamp"])
    params = {key: sample[key] for key in ("msg_signature", "timestamp", "nonce", "echostr")}
    response = await client.get("/wecom/callback", params=params)
    assert response.status == 200
    assert await response.read() == sample["expected_plaintext"].encode()


async def test_url_verification_survives_a_plus_turned_into_a_space(client: Client, clock: Clock) -> None:
    sample = vectors()["verify_url"]
    clock.now = int(sample["timestamp"])
    query = "&".join(
        f"{key}={sample[key]}" for key in ("msg_signature", "timestamp", "nonce", "echostr")
    )  # unencoded: every '+' of the echostr arrives as a space
    assert "+" in sample["echostr"]
    response = await client.get("/wecom/callback?" + query)
    assert response.status == 200
    assert await response.text() == sample["expected_plaintext"]


async def test_url_verification_with_a_bad_signature_is_403(client: Client, clock: Clock) -> None:
    sample = vectors()["verify_url"]
    clock.now = int(sample["timestamp"])
    params = {key: sample[key] for key in ("timestamp", "nonce", "echostr")}
    params["msg_signature"] = "0" * 40
    response = await client.get("/wecom/callback", params=params)
    assert response.status == 403
    assert sample["expected_plaintext"] not in await response.text()


async def test_official_message_is_accepted(client: Client, clock: Clock, recorder: Recorder) -> None:
    sample = vectors()["decrypt_message"]
    clock.now = int(sample["timestamp"])
    query = {key: sample[key] for key in ("msg_signature", "timestamp", "nonce")}
    assert await post(client, query, sample["post_body"].encode()) == (200, "success")
    [event] = recorder.events
    assert isinstance(event, UnknownEvent)
    assert event.msg_type == "text"
    assert event.member_id == "ChenJiaShun"
    assert event.raw == sample["expected_plaintext"]


# --- the event types ------------------------------------------------------------------------------


async def test_subscribe_unsubscribe_enter_agent(client: Client, recorder: Recorder) -> None:
    for name in ("subscribe", "unsubscribe", "enter_agent"):
        signed = encrypt_callback(event_xml(name, "zhangsan", create_time=NOW), timestamp=NOW)
        assert await post(client, signed.query, signed.body) == (200, "success")
    subscribe, unsubscribe, enter = recorder.events
    assert isinstance(subscribe, Subscribe)
    assert subscribe.member_id == "zhangsan"
    assert isinstance(unsubscribe, Unsubscribe)
    assert unsubscribe.create_time == NOW
    assert isinstance(enter, EnterAgent)
    assert enter.agent_id == "1000002"


async def test_change_contact_update_user_with_new_userid(client: Client, recorder: Recorder) -> None:
    extra = (
        "<ChangeType><![CDATA[update_user]]></ChangeType><UserID><![CDATA[2021001]]></UserID>"
        "<NewUserID><![CDATA[2021001x]]></NewUserID><Name><![CDATA[张三]]></Name>"
        "<Department><![CDATA[1,2,3]]></Department><MainDepartment>1</MainDepartment>"
        "<Mobile><![CDATA[13800000001]]></Mobile><Gender>1</Gender><Status>1</Status>"
        "<ExtAttr><Item><Name>爱好</Name></Item></ExtAttr>"
    )
    signed = encrypt_callback(event_xml("change_contact", "sys", create_time=NOW, extra=extra), timestamp=NOW)
    assert await post(client, signed.query, signed.body) == (200, "success")
    [event] = recorder.events
    assert isinstance(event, ContactChange)
    assert event.kind == "change_contact:update_user"
    assert (event.member_id, event.new_user_id, event.name) == ("2021001", "2021001x", "张三")
    assert event.department == (1, 2, 3)
    assert event.mobile == "13800000001"
    assert event.main_department == 1
    assert event.status == 1


@pytest.mark.parametrize("change_type", ["create_user", "delete_user"])
async def test_change_contact_create_and_delete(client: Client, recorder: Recorder, change_type: str) -> None:
    extra = f"<ChangeType>{change_type}</ChangeType><UserID>2021002</UserID>"
    signed = encrypt_callback(event_xml("change_contact", "sys", create_time=NOW, extra=extra), timestamp=NOW)
    assert await post(client, signed.query, signed.body) == (200, "success")
    [event] = recorder.events
    assert isinstance(event, ContactChange)
    assert event.change_type == change_type
    assert event.member_id == "2021002"


async def test_unknown_event_keeps_its_raw_xml(client: Client, recorder: Recorder) -> None:
    extra = "<ChangeType>create_party</ChangeType>"
    message = event_xml("change_contact", "sys", create_time=NOW, extra=extra)
    signed = encrypt_callback(message, timestamp=NOW)
    assert await post(client, signed.query, signed.body) == (200, "success")
    [event] = recorder.events
    assert isinstance(event, UnknownEvent)
    assert event.change_type == "create_party"
    assert event.raw == message


# --- the hostile set ------------------------------------------------------------------------------

BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
    "<xml><ToUserName>&lol3;</ToUserName><Encrypt>x</Encrypt></xml>"
)
EXTERNAL_ENTITY = (
    '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    "<xml><ToUserName>&xxe;</ToUserName><Encrypt>x</Encrypt></xml>"
)


def _aes_encrypt_raw(plaintext: bytes) -> str:
    key = base64.b64decode(AES_KEY + "=")
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(plaintext) + encryptor.finalize()).decode()


def _valid_ciphertext() -> str:
    return sign_body_ciphertext(event_xml("subscribe", "zhangsan", create_time=NOW))


def sign_body_ciphertext(message: str) -> str:
    signed = encrypt_callback(message, timestamp=NOW)
    text = signed.body.decode()
    return text.split("<Encrypt><![CDATA[")[1].split("]]>")[0]


async def test_billion_laughs_envelope_is_400(client: Client, recorder: Recorder) -> None:
    query = {"msg_signature": "0" * 40, "timestamp": str(NOW), "nonce": "1"}
    assert (await post(client, query, BILLION_LAUGHS.encode()))[0] == 400
    assert recorder.events == []


async def test_external_entity_envelope_is_400(client: Client) -> None:
    query = {"msg_signature": "0" * 40, "timestamp": str(NOW), "nonce": "1"}
    status, text = await post(client, query, EXTERNAL_ENTITY.encode())
    assert status == 400
    assert "root:" not in text


async def test_billion_laughs_inside_a_signed_message_is_400(client: Client, recorder: Recorder) -> None:
    signed = encrypt_callback(BILLION_LAUGHS, timestamp=NOW)
    assert (await post(client, signed.query, signed.body))[0] == 400
    assert recorder.events == []


async def test_ten_megabyte_body_is_413(client: Client) -> None:
    query = {"msg_signature": "0" * 40, "timestamp": str(NOW), "nonce": "1"}
    assert (await post(client, query, b"<xml>" + b"A" * (10 * 1024 * 1024) + b"</xml>"))[0] == 413


async def test_truncated_ciphertext_is_400(client: Client) -> None:
    signed = sign_ciphertext(_valid_ciphertext()[:-24], timestamp=NOW)
    assert (await post(client, signed.query, signed.body))[0] == 400


async def test_bad_base64_is_400(client: Client) -> None:
    signed = sign_ciphertext("not*base64!", timestamp=NOW)
    assert (await post(client, signed.query, signed.body))[0] == 400


@pytest.mark.parametrize("pad", [0, 33, 255])
async def test_bad_padding_is_400(client: Client, pad: int) -> None:
    message = event_xml("subscribe", "zhangsan", create_time=NOW).encode()
    plain = os.urandom(16) + struct.pack(">I", len(message)) + message + CORP_ID.encode()
    body = plain + bytes([pad]) * (32 - len(plain) % 32)
    signed = sign_ciphertext(_aes_encrypt_raw(body), timestamp=NOW)
    assert (await post(client, signed.query, signed.body))[0] == 400


async def test_length_past_the_buffer_is_400(client: Client) -> None:
    plain = os.urandom(16) + struct.pack(">I", 10_000) + b"<xml/>" + CORP_ID.encode()
    padding = 32 - len(plain) % 32
    signed = sign_ciphertext(_aes_encrypt_raw(plain + bytes([padding]) * padding), timestamp=NOW)
    assert (await post(client, signed.query, signed.body))[0] == 400


async def test_wrong_corp_id_is_403(client: Client, recorder: Recorder) -> None:
    signed = encrypt_callback(
        event_xml("subscribe", "zhangsan", create_time=NOW), timestamp=NOW, receive_id="wwforgedcorp00000"
    )
    assert (await post(client, signed.query, signed.body))[0] == 403
    assert recorder.events == []


async def test_message_addressed_to_another_corp_is_403(client: Client) -> None:
    signed = encrypt_callback(
        event_xml("subscribe", "zhangsan", create_time=NOW, corp_id="wwother"), timestamp=NOW
    )
    assert (await post(client, signed.query, signed.body))[0] == 403


async def test_signature_of_another_body_is_403(client: Client, recorder: Recorder) -> None:
    first = encrypt_callback(event_xml("subscribe", "zhangsan", create_time=NOW), timestamp=NOW)
    second = encrypt_callback(event_xml("subscribe", "lisi", create_time=NOW), timestamp=NOW)
    assert (await post(client, first.query, second.body))[0] == 403
    assert recorder.events == []


async def test_old_timestamp_is_403(client: Client, clock: Clock, recorder: Recorder) -> None:
    stale = NOW - 601
    signed = encrypt_callback(event_xml("subscribe", "zhangsan", create_time=stale), timestamp=stale)
    assert (await post(client, signed.query, signed.body))[0] == 403
    clock.now = stale + 600  # the same callback, inside the window, is fine
    assert (await post(client, signed.query, signed.body))[0] == 200
    assert len(recorder.events) == 1


async def test_future_timestamp_is_403(client: Client) -> None:
    ahead = NOW + 601
    signed = encrypt_callback(event_xml("subscribe", "zhangsan", create_time=NOW), timestamp=ahead)
    assert (await post(client, signed.query, signed.body))[0] == 403


@pytest.mark.parametrize("missing", ["msg_signature", "timestamp", "nonce"])
async def test_missing_parameter_is_400(client: Client, missing: str) -> None:
    signed = encrypt_callback(event_xml("subscribe", "zhangsan", create_time=NOW), timestamp=NOW)
    query = {key: value for key, value in signed.query.items() if key != missing}
    assert (await post(client, query, signed.body))[0] == 400


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not xml",
        b"<xml></xml>",
        b"<other><Encrypt>x</Encrypt></other>",
        b"\xff\xfe<xml>",
        b"<xml><Encrypt>",
    ],
)
async def test_malformed_envelope_is_400(client: Client, body: bytes) -> None:
    query = {"msg_signature": "0" * 40, "timestamp": str(NOW), "nonce": "1"}
    status, text = await post(client, query, body)
    assert status == 400
    assert text == "bad request"


async def test_inner_message_without_create_time_is_400(client: Client) -> None:
    message = f"<xml><ToUserName>{CORP_ID}</ToUserName><MsgType>event</MsgType></xml>"
    signed = encrypt_callback(message, timestamp=NOW)
    assert (await post(client, signed.query, signed.body))[0] == 400


async def test_envelope_alone_never_reaches_a_500(client: Client) -> None:
    query = {"msg_signature": "0" * 40, "timestamp": "not-a-number", "nonce": "1"}
    assert (await post(client, query, envelope("abc")))[0] == 400


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=512), cut=st.integers(min_value=0, max_value=400))
async def test_random_bodies_and_corruptions_get_4xx(client: Client, body: bytes, cut: int) -> None:
    signed = encrypt_callback(event_xml("subscribe", "zhangsan", create_time=NOW), timestamp=NOW)
    ciphertext = signed.body.decode().split("<Encrypt><![CDATA[")[1].split("]]>")[0]
    corrupted = sign_ciphertext(ciphertext[:cut] + body.hex()[:8] + ciphertext[cut + 8 :], timestamp=NOW)
    for query, payload in ((signed.query, body), (corrupted.query, corrupted.body)):
        status, _ = await post(client, query, payload)
        assert status in (200, 400, 403), status


@pytest.mark.parametrize(
    "timestamp",
    [10**399, -(10**399), 10**19, NOW + 601, NOW - 601],
    ids=["400 digits", "minus 400 digits", "20 digits", "just after", "just before"],
)
async def test_a_signed_timestamp_far_outside_the_window_is_403(
    client: Client, clock: Clock, recorder: Recorder, timestamp: int
) -> None:
    # 400 digits: the clock's float minus such an int overflowed, and the answer was a 500.
    clock.now = NOW + 0.25
    signed = encrypt_callback(event_xml("subscribe", "zhangsan", create_time=NOW), timestamp=timestamp)
    assert (await post(client, signed.query, signed.body))[0] == 403
    echo = sign_ciphertext(_valid_ciphertext(), timestamp=timestamp)
    query = {**echo.query, "echostr": _valid_ciphertext()}
    query["msg_signature"] = WeComCrypto(token=TOKEN, encoding_aes_key=AES_KEY, receive_id=CORP_ID).sign(
        query["timestamp"], query["nonce"], query["echostr"]
    )
    assert (await client.get("/wecom/callback", params=query)).status == 403
    assert recorder.events == []
