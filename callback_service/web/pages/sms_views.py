"""/bind/code: the page after a phone of the student's own choosing, where the SMS code is entered.

It says where the code went (masked) and for how long it holds, offers a new code once the minute
has passed (a disabled button until then, the time checked again by the server), and a way back to
change the number. Only a right code goes on to the binding, through views.submit_binding.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Final

from aiohttp import web

from callback_service.compose import SMS_PROOF
from callback_service.store import PAGES_STORE
from callback_service.web.pages import sms
from callback_service.web.pages.render import message, page, render, url
from callback_service.web.pages.session import SESSIONS, Session
from callback_service.web.pages.views import (
    FORM_ID,
    form_field,
    read_form,
    redirect,
    refused_form,
    submit_binding,
)
from handlers.core.sms_code import MAX_ATTEMPTS, Challenge, Verdict, resend_wait, typed_code
from handlers.usecases.binding_flow import result_key

CODE_FORMAT_ERROR: Final = "请输入短信中的 6 位数字验证码。"
WRONG_CODE: Final = f"验证码不正确，请核对短信后重新输入（输错 {MAX_ATTEMPTS} 次后需重新获取）。"
ENDED: Final = (
    "验证码已失效", f"验证码输错已达 {MAX_ATTEMPTS} 次，该验证码已失效。请返回手机号绑定页面重新获取。"
)
EXPIRED: Final = ("验证码已过期", "验证码已超过 10 分钟有效期。请返回手机号绑定页面，重新获取验证码。")
ABSENT: Final = (
    "验证码无效", "本次登录没有待验证的验证码（可能已使用或已失效）。请返回手机号绑定页面重新获取。"
)


async def _logged_in(request: web.Request) -> tuple[Session | None, Challenge | None]:
    session = await request.app[SESSIONS].load(request)
    if session is None or SMS_PROOF not in request.app:
        return None, None
    return session, await request.app[SMS_PROOF].pending(session.sid)


def _code_page(
    request: web.Request,
    session: Session,
    challenge: Challenge,
    *,
    error: str | None = None,
    status: int = 200,
) -> web.Response:
    now = request.app[SMS_PROOF].now()
    return render(
        request,
        "sms_code.html",
        {
            "phone_masked": challenge.phone.masked,
            "minutes_left": max(1, math.ceil((challenge.expires_at - now) / 60)),
            "wait": resend_wait(challenge, now),
            "error": error,
            "csrf": session.csrf,
            "form_id": request.app[SESSIONS].new_token(),
            "action": url(request, "bind-code"),
            "resend_action": url(request, "bind-code-resend"),
            "change_action": url(request, "bind-code-change"),
        },
        status=status,
    )


@page
async def code_page(request: web.Request) -> web.StreamResponse:
    """GET /bind/code: the code form for the phone this login session was sent a code for."""
    session, challenge = await _logged_in(request)
    if session is None:
        return redirect(url(request, "bind"))
    if challenge is None:
        return redirect(url(request, "bind-phone"))
    return _code_page(request, session, challenge)


async def _submitted(request: web.Request, session: Session, form_id: str) -> bool:
    """Whether this code form has been through submit_binding already (its result is kept)."""
    if not FORM_ID.match(form_id):
        return False
    return await request.app[PAGES_STORE].kv_get(result_key(session.member_id, form_id)) is not None


@page
async def code_submit(request: web.Request) -> web.StreamResponse:
    """POST /bind/code: judge the code; a right one binds the phone as the phone page would."""
    session, challenge = await _logged_in(request)
    form = await read_form(request)
    if session is None or not session.csrf_ok(form_field(form, "csrf")):
        return refused_form(request)
    back = (url(request, "bind-phone"), "返回手机号绑定页面")
    if challenge is None:
        if await _submitted(request, session, form_field(form, "form_id")):
            return redirect(url(request, "bind-result", form=form_field(form, "form_id")), status=303)
        return message(request, title=ABSENT[0], text=ABSENT[1], status=400, link=back)
    code = typed_code(form_field(form, "code")[:64])
    if code is None:
        # Not six digits: a typing slip, not an attempt.
        return _code_page(request, session, challenge, error=CODE_FORMAT_ERROR, status=400)
    form_id = form_field(form, "form_id")
    verdict = await request.app[SMS_PROOF].verify(
        login=session.sid, member_id=session.member_id, phone=challenge.phone, code=code
    )
    if verdict is Verdict.RIGHT:
        return await submit_binding(request, session, challenge.phone, form_id, sms_verified=True)
    if verdict is Verdict.ABSENT and await _submitted(request, session, form_id):
        # The same form sent twice (a double tap): the first used the code up and bound; both land on it.
        return redirect(url(request, "bind-result", form=form_id), status=303)
    if verdict is Verdict.WRONG:
        return _code_page(request, session, challenge, error=WRONG_CODE, status=400)
    title, text = {Verdict.ENDED: ENDED, Verdict.EXPIRED: EXPIRED}.get(verdict, ABSENT)
    response = message(request, title=title, text=text, status=400, link=back)
    # The phone typed survives the code: the phone page offers it again, kept server-side.
    await request.app[SESSIONS].save(replace(session, draft_phone=str(challenge.phone)), response)
    return response


@page
async def code_resend(request: web.Request) -> web.StreamResponse:
    """POST /bind/code/resend: a new code to the same phone, once the minute has passed."""
    session, challenge = await _logged_in(request)
    form = await read_form(request)
    if session is None or not session.csrf_ok(form_field(form, "csrf")):
        return refused_form(request)
    if challenge is None:
        return redirect(url(request, "bind-phone"), status=303)
    failure = await sms.send_code(request, session, challenge.phone, resend=True)
    if failure is not None:
        return _code_page(request, session, challenge, error=failure, status=429)
    return redirect(url(request, "bind-code"), status=303)


@page
async def code_change(request: web.Request) -> web.StreamResponse:
    """POST /bind/code/change: back to the phone page with the typed phone, the code forgotten."""
    session, challenge = await _logged_in(request)
    form = await read_form(request)
    if session is None or not session.csrf_ok(form_field(form, "csrf")):
        return refused_form(request)
    response = redirect(url(request, "bind-phone"), status=303)
    if challenge is not None:
        await request.app[SMS_PROOF].cancel(session.sid)
        await request.app[SESSIONS].save(replace(session, draft_phone=str(challenge.phone)), response)
    return response
