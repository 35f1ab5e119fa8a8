"""Proving a typed phone by an SMS code: what the use case needs from outside, as Protocols."""

from __future__ import annotations

from typing import Protocol

from handlers.core.phone import Phone


class SmsSender(Protocol):
    """An SMS provider that sends a verification code through the approved 签名 and template."""

    async def send_code(self, phone: Phone, code: str) -> None:
        """Send the code to the phone; SmsNotSent (handlers.core.sms_code) when it was not sent."""
        ...
