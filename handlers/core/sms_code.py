"""One-time SMS codes that prove a typed phone is the student's: the rules, and why a code was not sent."""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import math
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from handlers.core.phone import Phone


class SmsFailure(enum.Enum):
    """Why a code was not sent, as the student reads it (the provider's own code goes to the log)."""

    LATER = "短信发送失败，请稍后再试。"
    INVALID_NUMBER = "该手机号无法接收短信（号码无效），请检查后重新输入。"
    DAILY_LIMIT = "该手机号今日发送次数已达上限，请明天再试。"


class SmsNotSent(Exception):
    """The provider refused the code or could not be reached; nothing was sent."""

    def __init__(self, failure: SmsFailure, provider_code: str) -> None:
        super().__init__(f"{failure.name}: {provider_code}")
        self.failure = failure
        self.provider_code = provider_code


# The standards for one-time codes sent out of band (NIST SP 800-63B 5.1.3.2, OWASP ASVS 2.7): random
# digits, short-lived, single use, a few attempts, kept hashed; and the providers' own flow control
# (one code a minute, a few an hour and a day per number), which ours stays inside of.
CODE_DIGITS: Final = 6
CODE_TTL: Final = 600.0
"""Seconds a code is valid: the page says 10 minutes, and so does the template."""
MAX_ATTEMPTS: Final = 5
"""Entries of one code; the fifth wrong one ends it, and a new code must be sent."""
RESEND_INTERVAL: Final = 60.0
DAILY_SENDS: Final = 5
"""Codes a day to one phone, and to one student."""
ADDRESS_SENDS_PER_HOUR: Final = 30
"""Codes an hour asked from one client address: a campus NAT holds many students, a script more."""
_DAY: Final = 24 * 3600.0
_HOUR: Final = 3600.0
_TYPED: Final = re.compile(r"[0-9]{6}", re.ASCII)


class Verdict(enum.Enum):
    """What an entered code proves."""

    RIGHT = "right"
    WRONG = "wrong"
    ENDED = "ended"
    """The fifth wrong entry: the code is gone, a new one must be sent."""
    EXPIRED = "expired"
    ABSENT = "absent"
    """No code was sent to this phone in this login session (or it was used)."""


class SmsTooSoon(Exception):
    """A new code was asked for before the minute since the last one passed; wait is the seconds
    left, None when only a counter knows of the last code (it does not keep when that was)."""

    def __init__(self, wait: int | None) -> None:
        super().__init__(f"wait {wait} s" if wait is not None else "wait up to a minute")
        self.wait = wait


@dataclass(frozen=True, slots=True)
class Challenge:
    """A code sent to one phone for one student's login session, kept as its keyed hash only."""

    member_id: str
    phone: Phone
    code_hash: str
    sent_at: float

    @property
    def expires_at(self) -> float:
        """When the code stops being valid."""
        return self.sent_at + CODE_TTL

    @property
    def resend_at(self) -> float:
        """When a new code may be asked for."""
        return self.sent_at + RESEND_INTERVAL

    def to_json(self) -> str:
        """The challenge as the store keeps it (no code in it, only its hash)."""
        return json.dumps(
            {"member_id": self.member_id, "phone": str(self.phone), "code_hash": self.code_hash,
             "sent_at": self.sent_at}
        )

    @classmethod
    def from_json(cls, raw: str | None) -> Challenge | None:
        """The challenge stored, or None when absent or not one of ours."""
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            return cls(
                member_id=str(data["member_id"]),
                phone=Phone(str(data["phone"])),
                code_hash=str(data["code_hash"]),
                sent_at=float(data["sent_at"]),
            )
        except (ValueError, KeyError, TypeError):
            return None


def new_code(randbelow: Callable[[int], int]) -> str:
    """Six digits drawn by randbelow (secrets.randbelow in service; a fixed draw in tests)."""
    return f"{randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def typed_code(text: str) -> str | None:
    """The six digits a student typed (spaces, full-width digits allowed), or None when it is not six."""
    compact = "".join(unicodedata.normalize("NFKC", text).split())
    return compact if len(compact) <= CODE_DIGITS and _TYPED.fullmatch(compact) else None


def code_hash(secret: bytes, *, login: str, member_id: str, phone: Phone, code: str) -> str:
    """The keyed hash a code is kept as: bound to the login session, the student and the phone, so
    that the same digits typed in another session or for another phone are another hash."""
    message = "\0".join(("sms-code", login, member_id, str(phone), code)).encode("utf-8")
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def judge(
    challenge: Challenge | None, *, member_id: str, phone: Phone, typed_hash: str, attempt: int, now: float
) -> Verdict:
    """What the attempt-th entry of a code proves; compared in constant time."""
    if challenge is None or challenge.member_id != member_id or challenge.phone != phone:
        return Verdict.ABSENT
    if attempt > MAX_ATTEMPTS:
        return Verdict.ENDED
    if now >= challenge.expires_at:
        return Verdict.EXPIRED
    if hmac.compare_digest(challenge.code_hash.encode(), typed_hash.encode()):
        return Verdict.RIGHT
    return Verdict.ENDED if attempt >= MAX_ATTEMPTS else Verdict.WRONG


def resend_wait(challenge: Challenge | None, now: float) -> int:
    """Whole seconds before a new code may be sent for this session (0: now)."""
    if challenge is None:
        return 0
    return max(0, math.ceil(challenge.resend_at - now))


def phone_tag(secret: bytes, phone: Phone) -> str:
    """The keyed hash that stands for a phone in the send counters' keys: the store never holds a
    phone there in clear, and without the secret the tag cannot be turned back into the phone."""
    message = "\0".join(("sms-phone", str(phone))).encode("utf-8")
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def phone_counters(tag: str) -> tuple[str, str]:
    """The send counters of one phone, by its tag (phone_tag): the minute's and the day's."""
    return f"sms-minute:phone:{tag}", f"sms-day:phone:{tag}"


def member_counters(member_id: str) -> tuple[str, str]:
    """The send counters of one student: the minute's and the day's."""
    return f"sms-minute:member:{member_id}", f"sms-day:member:{member_id}"


def send_limits(*, phone_tag: str, member_id: str, address: str) -> tuple[tuple[dict[str, int], float], ...]:
    """The counters a new code must stay under, by window: (counter key: limit, the window's seconds).

    The phone is named by its tag (phone_tag), never in clear."""
    phone_minute, phone_day = phone_counters(phone_tag)
    member_minute, member_day = member_counters(member_id)
    return (
        ({phone_minute: 1, member_minute: 1}, RESEND_INTERVAL),
        ({phone_day: DAILY_SENDS, member_day: DAILY_SENDS}, _DAY),
        ({f"sms-hour:address:{address}": ADDRESS_SENDS_PER_HOUR}, _HOUR),
    )


def limit_failure(counter: str) -> SmsFailure:
    """What the student reads when the counter named stopped a new code."""
    return SmsFailure.DAILY_LIMIT if counter.startswith("sms-day:") else SmsFailure.LATER
