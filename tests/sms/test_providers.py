"""Both providers' clients against the emulator over loopback HTTP: sent, refused as each refuses, timed out."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from callback_service.clients.sms import AliyunSms, TencentSms
from handlers.core.phone import Phone
from handlers.core.sms_code import SmsFailure, SmsNotSent
from handlers.usecases.sms_proof import SmsSender
from sandbox.sms import SmsRefusal, SmsSandboxState
from tests.sms.conftest import ACCOUNT

PHONE = Phone("13800000001")


def sender(
    provider: str, server: TestServer, http: aiohttp.ClientSession, *, secret: str = ACCOUNT.key_secret,
    timeout: float = 5.0,
) -> SmsSender:
    base = str(server.make_url(f"/{provider}")).rstrip("/")
    if provider == "tencent":
        return TencentSms(
            session=http, secret_id=ACCOUNT.key_id, secret_key=secret, sdk_app_id=ACCOUNT.app_id,
            sign_name=ACCOUNT.sign_name, template_id=ACCOUNT.template_id, api_base=base, timeout=timeout,
        )
    return AliyunSms(
        session=http, access_key_id=ACCOUNT.key_id, access_key_secret=secret, sign_name=ACCOUNT.sign_name,
        template_code=ACCOUNT.template_id, api_base=base, timeout=timeout,
    )


PROVIDERS = pytest.mark.parametrize("provider", ["tencent", "aliyun"])


@PROVIDERS
async def test_a_code_reaches_the_phones_inbox(
    provider: str, sms_server: TestServer, sms_state: SmsSandboxState, http: aiohttp.ClientSession
) -> None:
    await sender(provider, sms_server, http).send_code(PHONE, "246810")
    [message] = sms_state.messages("13800000001")
    assert "246810" in message.text
    assert message.text.startswith(f"【{ACCOUNT.sign_name}】")
    assert message.provider == provider


@PROVIDERS
async def test_a_wrong_secret_is_refused_as_the_provider_refuses_it(
    provider: str, sms_server: TestServer, sms_state: SmsSandboxState, http: aiohttp.ClientSession
) -> None:
    with pytest.raises(SmsNotSent) as refused:
        await sender(provider, sms_server, http, secret="not-the-secret").send_code(PHONE, "246810")
    assert refused.value.failure is SmsFailure.LATER
    assert refused.value.provider_code == {
        "tencent": "AuthFailure.SignatureFailure", "aliyun": "SignatureDoesNotMatch"
    }[provider]
    assert sms_state.messages() == []


@PROVIDERS
@pytest.mark.parametrize(
    ("refusal", "failure"),
    [
        (SmsRefusal.INVALID_NUMBER, SmsFailure.INVALID_NUMBER),
        (SmsRefusal.DAILY_LIMIT, SmsFailure.DAILY_LIMIT),
        (SmsRefusal.FLOW_CONTROL, SmsFailure.LATER),
        (SmsRefusal.NO_BALANCE, SmsFailure.LATER),
    ],
)
async def test_the_providers_refusals_reach_the_student_as_what_they_mean(
    provider: str, refusal: SmsRefusal, failure: SmsFailure,
    sms_server: TestServer, sms_state: SmsSandboxState, http: aiohttp.ClientSession,
) -> None:
    sms_state.refusal = refusal
    with pytest.raises(SmsNotSent) as refused:
        await sender(provider, sms_server, http).send_code(PHONE, "246810")
    assert refused.value.failure is failure
    assert refused.value.provider_code == (refusal.tencent if provider == "tencent" else refusal.aliyun)
    assert sms_state.refused == ["13800000001"]
    assert sms_state.messages() == []


@PROVIDERS
async def test_a_provider_that_does_not_answer_in_time_is_one_to_retry_later(
    provider: str, sms_server: TestServer, sms_state: SmsSandboxState, http: aiohttp.ClientSession
) -> None:
    sms_state.hang_seconds = 5.0
    with pytest.raises(SmsNotSent) as refused:
        await sender(provider, sms_server, http, timeout=0.2).send_code(PHONE, "246810")
    assert refused.value.failure is SmsFailure.LATER
    assert refused.value.provider_code == "no-answer"
    sms_state.released.set()


async def test_aliyun_refuses_a_nonce_used_twice(
    sms_server: TestServer, sms_state: SmsSandboxState, http: aiohttp.ClientSession
) -> None:
    client = AliyunSms(
        session=http, access_key_id=ACCOUNT.key_id, access_key_secret=ACCOUNT.key_secret,
        sign_name=ACCOUNT.sign_name, template_code=ACCOUNT.template_id,
        api_base=str(sms_server.make_url("/aliyun")).rstrip("/"), nonce=lambda: "the-same-nonce",
    )
    await client.send_code(PHONE, "111111")
    with pytest.raises(SmsNotSent) as refused:
        await client.send_code(PHONE, "222222")
    assert refused.value.provider_code == "SignatureNonceUsed"


async def test_the_emulators_json_view_lists_messages_newest_last(
    sms_server: TestServer, http: aiohttp.ClientSession
) -> None:
    client = sender("tencent", sms_server, http)
    await client.send_code(PHONE, "111111")
    await client.send_code(Phone("13900000002"), "222222")
    async with http.get(sms_server.make_url("/messages")) as response:
        listed = await response.json()
    assert [(m["phone"], "222222" in m["text"]) for m in listed] == [
        ("13800000001", False), ("13900000002", True)
    ]
    assert set(listed[0]) == {"phone", "text", "sent_at"}
    async with http.get(sms_server.make_url("/")) as response:
        page = await response.text()
    assert "13900000002" in page
    assert "222222" in page
