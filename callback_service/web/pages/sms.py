"""The phone page's SMS step: whether a submitted phone must be proved by a code, and sending one.

The code page itself (pages/sms_views.py) judges the code and, when it is right, hands the phone to
the same submit that a phone needing no code goes through.
"""

from __future__ import annotations

import logging
from typing import Final

from aiohttp import web

from callback_service.client_address import client_of
from callback_service.compose import SETTINGS, SMS_PROOF
from callback_service.store import PAGES_STORE
from callback_service.web.pages.session import Session
from handlers.core.binding import BindingState
from handlers.core.phone import Phone
from handlers.core.sms_code import SmsNotSent, SmsTooSoon

log: Final = logging.getLogger(__name__)


async def needs_code(request: web.Request, session: Session, phone: Phone) -> bool:
    """Whether this phone must be proved first: not the directory's nor the one bound already, or always."""
    if SMS_PROOF not in request.app:
        return False
    mode = request.app[SETTINGS].sms_verify_mode
    if mode != "changed":
        return mode == "always"
    store = request.app[PAGES_STORE]
    entry = await store.directory_get(session.member_id)
    if entry is not None and entry.phone == phone:
        return False
    binding = await store.get_binding(session.member_id)
    # Binding the phone bound already writes nothing new to WeCom.
    return not (binding is not None and binding.state is not BindingState.PENDING and binding.phone == phone)


def too_soon(wait: int | None) -> str:
    """What the student reads when a new code is asked for within the minute."""
    if wait is None:
        return "获取验证码过于频繁：每分钟只能获取一次验证码，请稍后（不超过 1 分钟）再试。"
    return f"获取验证码过于频繁，请在 {wait} 秒后再试。"


async def send_code(
    request: web.Request, session: Session, phone: Phone, *, resend: bool = False
) -> str | None:
    """Send a code for this login session; None when sent (or one for this phone is still fresh and
    this is not a resend), else what the student reads."""
    proof = request.app[SMS_PROOF]
    try:
        await proof.send(
            login=session.sid, member_id=session.member_id, phone=phone, address=client_of(request)
        )
    except SmsTooSoon as early:
        pending = await proof.pending(session.sid)
        if not resend and pending is not None and pending.phone == phone:
            return None
        return too_soon(early.wait)
    except SmsNotSent as refused:
        log.info("bind: no code to %s for %s: %s", phone.masked, session.member_id, refused.provider_code)
        return refused.failure.value
    return None
