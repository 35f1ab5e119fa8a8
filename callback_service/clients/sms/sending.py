"""The steps both SMS providers take around their own signing: the POST, its answer, the refusal."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import aiohttp

from handlers.core.phone import Phone
from handlers.core.sms_code import SmsFailure, SmsNotSent


async def post_for_answer(
    session: aiohttp.ClientSession,
    url: str,
    *,
    data: bytes,
    headers: Mapping[str, str],
    client_timeout: aiohttp.ClientTimeout,
    provider: str,
    phone: Phone,
    log: logging.Logger,
) -> object:
    """POST the signed request and read its JSON answer; SmsNotSent (later) when none came readable."""
    try:
        async with session.post(url, data=data, headers=headers, timeout=client_timeout) as response:
            answer: object = await response.json(content_type=None)
    except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
        log.warning("%s sms: no answer (%s) for %s", provider, type(exc).__name__, phone.masked)
        raise SmsNotSent(SmsFailure.LATER, "no-answer") from None
    return answer


def refused(
    status: str, failure: SmsFailure, *, provider: str, phone: Phone, log: logging.Logger
) -> SmsNotSent:
    """The provider's refusal, logged with the masked phone, to raise."""
    log.warning("%s sms: %s refused for %s (%s)", provider, status, phone.masked, failure.name)
    return SmsNotSent(failure, status)
