"""The proof's use case on a real store (SQLite and Redis) and the Tencent client against the emulator."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from callback_service.clients.sms import TencentSms
from callback_service.metrics import Metrics
from handlers.core.phone import Phone
from handlers.core.sms_code import (
    ADDRESS_SENDS_PER_HOUR,
    CODE_TTL,
    DAILY_SENDS,
    SmsFailure,
    SmsNotSent,
    SmsTooSoon,
    Verdict,
)
from handlers.usecases.contracts import Store
from handlers.usecases.sms_proof import EXPIRED, FAILED, SENT, VERIFIED, SmsProof
from sandbox.sms import SmsRefusal, SmsSandboxState
from tests.sms.conftest import ACCOUNT
from tests.store.support import FakeClock

PHONE = Phone("13800000001")
SECRET = b"s" * 32


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def proof(
    store: Store, clock: FakeClock, sms_server: TestServer, http: aiohttp.ClientSession, metrics: Metrics
) -> SmsProof:
    sender = TencentSms(
        session=http, secret_id=ACCOUNT.key_id, secret_key=ACCOUNT.key_secret, sdk_app_id=ACCOUNT.app_id,
        sign_name=ACCOUNT.sign_name, template_id=ACCOUNT.template_id,
        api_base=str(sms_server.make_url("/tencent")).rstrip("/"), timeout=1.0,
    )
    return SmsProof(store=store, sender=sender, secret=SECRET, clock=clock, counters=metrics)


def count(metrics: Metrics, name: str) -> float:
    return metrics.registry.get_sample_value(name) or 0.0


async def send(proof: SmsProof, *, login: str = "login-a", member_id: str = "2021001",
               phone: Phone = PHONE, address: str = "10.0.0.1") -> None:
    await proof.send(login=login, member_id=member_id, phone=phone, address=address)


async def test_the_code_received_proves_the_phone_once(
    proof: SmsProof, sms_state: SmsSandboxState, metrics: Metrics, store: Store
) -> None:
    await send(proof)
    code = sms_state.last_code("13800000001")
    assert code is not None
    assert await proof.verify(login="login-a", member_id="2021001", phone=PHONE, code=code) is Verdict.RIGHT
    assert await proof.verify(login="login-a", member_id="2021001", phone=PHONE, code=code) is Verdict.ABSENT
    assert count(metrics, SENT) == 1
    assert count(metrics, VERIFIED) == 1


async def test_a_wrong_code_then_the_right_one(proof: SmsProof, sms_state: SmsSandboxState) -> None:
    await send(proof)
    code = sms_state.last_code("13800000001") or ""
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    assert await proof.verify(login="login-a", member_id="2021001", phone=PHONE, code=wrong) is Verdict.WRONG
    assert await proof.verify(login="login-a", member_id="2021001", phone=PHONE, code=code) is Verdict.RIGHT


async def test_five_wrong_codes_end_it_and_the_right_one_is_then_refused(
    proof: SmsProof, sms_state: SmsSandboxState, metrics: Metrics
) -> None:
    await send(proof)
    code = sms_state.last_code("13800000001") or ""
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    verdicts = [await proof.verify(login="login-a", member_id="2021001", phone=PHONE, code=wrong)
                for _ in range(5)]
    assert verdicts == [Verdict.WRONG] * 4 + [Verdict.ENDED]
    assert await proof.verify(login="login-a", member_id="2021001", phone=PHONE, code=code) is Verdict.ABSENT
    assert count(metrics, FAILED) == 5


async def test_a_code_after_ten_minutes_has_expired(
    proof: SmsProof, sms_state: SmsSandboxState, clock: FakeClock, metrics: Metrics
) -> None:
    await send(proof)
    code = sms_state.last_code("13800000001") or ""
    clock.advance(CODE_TTL + 1)
    assert await proof.verify(login="login-a", member_id="2021001", phone=PHONE, code=code) is Verdict.EXPIRED
    assert count(metrics, EXPIRED) == 1


async def test_a_code_does_nothing_in_another_students_session(
    proof: SmsProof, sms_state: SmsSandboxState
) -> None:
    await send(proof)
    code = sms_state.last_code("13800000001") or ""
    assert await proof.verify(login="login-b", member_id="2021002", phone=PHONE, code=code) is Verdict.ABSENT
    assert await proof.verify(login="login-a", member_id="2021001", phone=PHONE, code=code) is Verdict.RIGHT


async def test_a_new_code_waits_a_minute_and_replaces_the_old(
    proof: SmsProof, sms_state: SmsSandboxState, clock: FakeClock
) -> None:
    await send(proof)
    first = sms_state.last_code("13800000001") or ""
    clock.advance(30)
    with pytest.raises(SmsTooSoon) as early:
        await send(proof)
    assert early.value.wait == 30
    clock.advance(30)
    await send(proof)
    second = sms_state.last_code("13800000001") or ""
    assert len(sms_state.messages("13800000001")) == 2
    if first != second:
        assert await proof.verify(login="login-a", member_id="2021001", phone=PHONE, code=first) is Verdict.WRONG
    assert await proof.verify(login="login-a", member_id="2021001", phone=PHONE, code=second) is Verdict.RIGHT


async def test_another_session_cannot_send_to_the_phone_within_the_minute(proof: SmsProof) -> None:
    await send(proof)
    with pytest.raises(SmsTooSoon) as early:
        await send(proof, login="login-b", member_id="2021002")
    # Only the phone's counter knows of the other session's code, not when it went: no count of
    # seconds that would be wrong (the page says "up to a minute").
    assert early.value.wait is None


async def test_five_codes_a_day_per_phone(proof: SmsProof, clock: FakeClock) -> None:
    for number in range(DAILY_SENDS):
        await send(proof, login=f"login-{number}", member_id=f"20210{number:02d}")
        clock.advance(61)
    with pytest.raises(SmsNotSent) as refused:
        await send(proof, login="login-x", member_id="2021099")
    assert refused.value.failure is SmsFailure.DAILY_LIMIT


async def test_five_codes_a_day_per_student(proof: SmsProof, clock: FakeClock) -> None:
    for number in range(DAILY_SENDS):
        await send(proof, phone=Phone(f"1390000000{number}"))
        clock.advance(61)
    with pytest.raises(SmsNotSent) as refused:
        await send(proof, phone=Phone("13900000009"))
    assert refused.value.failure is SmsFailure.DAILY_LIMIT


async def test_codes_per_address_per_hour(proof: SmsProof, sms_state: SmsSandboxState) -> None:
    # Distinct students and phones, so that only the address's own counter can stop the next one.
    for number in range(ADDRESS_SENDS_PER_HOUR):
        await send(proof, login=f"login-{number}", member_id=f"2022{number:03d}", phone=Phone(f"13700000{number:03d}"))
    with pytest.raises(SmsNotSent) as refused:
        await send(proof, login="login-x", member_id="2022999", phone=Phone("13700000999"))
    assert refused.value.failure is SmsFailure.LATER
    assert sms_state.last_code("13700000999") is None
    # Another address is not held back by this one.
    await send(proof, login="login-y", member_id="2022998", phone=Phone("13700000998"), address="10.0.0.2")


async def test_a_refusal_keeps_no_code(proof: SmsProof, sms_state: SmsSandboxState) -> None:
    sms_state.refusal = SmsRefusal.INVALID_NUMBER
    with pytest.raises(SmsNotSent) as refused:
        await send(proof)
    assert refused.value.failure is SmsFailure.INVALID_NUMBER
    assert await proof.pending("login-a") is None


async def test_the_store_never_holds_the_code(proof: SmsProof, sms_state: SmsSandboxState, store: Store) -> None:
    challenge = await proof.send(login="login-a", member_id="2021001", phone=PHONE, address="10.0.0.1")
    code = sms_state.last_code("13800000001") or ""
    assert code not in challenge.to_json()
    assert (await proof.pending("login-a")) == challenge
