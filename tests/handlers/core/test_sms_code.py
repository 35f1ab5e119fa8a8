"""The code's rules, pure: drawing, reading what was typed, hashing, judging an entry, the resend wait."""

from __future__ import annotations

import pytest

from handlers.core.phone import Phone
from handlers.core.sms_code import (
    CODE_TTL,
    MAX_ATTEMPTS,
    Challenge,
    SmsFailure,
    Verdict,
    code_hash,
    judge,
    limit_failure,
    member_counters,
    new_code,
    phone_counters,
    phone_tag,
    resend_wait,
    send_limits,
    typed_code,
)

SECRET = b"k" * 32
PHONE = Phone("13800000001")
T0 = 1_800_000_000.0


def challenge(code: str = "012345", *, login: str = "login-a", member_id: str = "2021001") -> Challenge:
    return Challenge(
        member_id=member_id,
        phone=PHONE,
        code_hash=code_hash(SECRET, login=login, member_id=member_id, phone=PHONE, code=code),
        sent_at=T0,
    )


def entry(code: str, *, login: str = "login-a", member_id: str = "2021001", phone: Phone = PHONE) -> str:
    return code_hash(SECRET, login=login, member_id=member_id, phone=phone, code=code)


def test_a_code_is_six_digits_leading_zeros_kept() -> None:
    assert new_code(lambda bound: 42) == "000042"
    assert new_code(lambda bound: bound - 1) == "999999"


@pytest.mark.parametrize(
    ("text", "code"),
    [("012345", "012345"), (" 012 345 ", "012345"), ("０１２３４５", "012345"),
     ("12345", None), ("1234567", None), ("12345a", None), ("", None), ("１２３４５６７", None)],
)
def test_what_was_typed_is_read_as_six_digits_or_refused(text: str, code: str | None) -> None:
    assert typed_code(text) == code


def test_the_hash_binds_the_code_to_its_session_student_and_phone() -> None:
    base = entry("012345")
    assert entry("012345") == base
    assert "012345" not in base
    assert entry("012345", login="login-b") != base
    assert entry("012345", member_id="2021002") != base
    assert entry("012345", phone=Phone("13800000002")) != base
    assert code_hash(b"x" * 32, login="login-a", member_id="2021001", phone=PHONE, code="012345") != base


def test_the_right_code_within_ten_minutes_is_right() -> None:
    assert judge(challenge(), member_id="2021001", phone=PHONE, typed_hash=entry("012345"),
                 attempt=1, now=T0 + CODE_TTL - 1) is Verdict.RIGHT


def test_the_right_code_after_ten_minutes_has_expired() -> None:
    assert judge(challenge(), member_id="2021001", phone=PHONE, typed_hash=entry("012345"),
                 attempt=1, now=T0 + CODE_TTL) is Verdict.EXPIRED


def test_wrong_entries_end_the_code_at_the_fifth() -> None:
    verdicts = [
        judge(challenge(), member_id="2021001", phone=PHONE, typed_hash=entry("999999"), attempt=n, now=T0)
        for n in range(1, MAX_ATTEMPTS + 1)
    ]
    assert verdicts == [Verdict.WRONG] * (MAX_ATTEMPTS - 1) + [Verdict.ENDED]


def test_after_five_entries_even_the_right_code_is_refused() -> None:
    assert judge(challenge(), member_id="2021001", phone=PHONE, typed_hash=entry("012345"),
                 attempt=MAX_ATTEMPTS + 1, now=T0) is Verdict.ENDED


def test_a_code_for_another_phone_or_student_proves_nothing() -> None:
    other = Phone("13900000009")
    assert judge(challenge(), member_id="2021001", phone=other, typed_hash=entry("012345", phone=other),
                 attempt=1, now=T0) is Verdict.ABSENT
    assert judge(challenge(), member_id="2021002", phone=PHONE, typed_hash=entry("012345"),
                 attempt=1, now=T0) is Verdict.ABSENT
    assert judge(None, member_id="2021001", phone=PHONE, typed_hash=entry("012345"),
                 attempt=1, now=T0) is Verdict.ABSENT


def test_the_same_digits_from_another_session_are_wrong() -> None:
    assert judge(challenge(), member_id="2021001", phone=PHONE, typed_hash=entry("012345", login="login-b"),
                 attempt=1, now=T0) is Verdict.WRONG


def test_a_new_code_waits_a_minute() -> None:
    assert resend_wait(None, T0) == 0
    assert resend_wait(challenge(), T0) == 60
    assert resend_wait(challenge(), T0 + 59.5) == 1
    assert resend_wait(challenge(), T0 + 60) == 0


def test_a_phone_tag_is_keyed_and_holds_no_digits_of_the_phone() -> None:
    tag = phone_tag(SECRET, PHONE)
    assert tag == phone_tag(SECRET, Phone("13800000001"))
    assert tag != phone_tag(b"another secret of at least 32 bytes", PHONE)
    assert tag != phone_tag(SECRET, Phone("13800000002"))
    assert "13800000001" not in tag


def test_the_stored_challenge_holds_no_code_and_reads_back() -> None:
    stored = challenge("654321").to_json()
    assert "654321" not in stored
    assert Challenge.from_json(stored) == challenge("654321")
    assert Challenge.from_json('{"phone": "123"}') is None
    assert Challenge.from_json(None) is None


def test_limits_name_the_phone_by_its_keyed_tag_the_student_and_the_address() -> None:
    tag = phone_tag(SECRET, PHONE)
    windows = send_limits(phone_tag=tag, member_id="2021001", address="10.0.0.1")
    keys = [key for limits, _ in windows for key in limits]
    assert any(tag in key and key.startswith("sms-day:") for key in keys)
    assert any("2021001" in key and key.startswith("sms-day:") for key in keys)
    assert any("10.0.0.1" in key for key in keys)
    assert set(phone_counters(tag)) | set(member_counters("2021001")) <= set(keys)
    assert limit_failure(phone_counters(tag)[1]) is SmsFailure.DAILY_LIMIT
assert limit_failure("sms-hour:address:10.0.0.1") is SmsFailure.LATER
