"""One-time SMS codes that prove a typed phone is the student's: the rules, and why a code was not sent."""

from __future__ import annotations

import enum


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
