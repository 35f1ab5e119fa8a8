"""The students' pages: the guide's steps 1 to 3 (/bind, the CAS return, the phone form, the result),
the help of chapter 2 (/help) and the student's own state (/me).

Views are thin: they read the session and the form, call the binding rules, and show the outcome.
Every redirect goes to a path of our router or to the CAS login URL built from settings.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import json
import logging
import math
import re
from dataclasses import dataclass, replace
from typing import Any, Final

from aiohttp import web

from callback_service.client_address import client_of
from callback_service.clients.cas import CAS, TICKET, CasAuthenticationFailure, logout_request_ticket
from callback_service.compose import BINDING_FLOW, CLOCK, SETTINGS
from callback_service.qr import bind_url, qr_image
from callback_service.store import PAGES_STORE
from callback_service.store.sessions import Session
from callback_service.web.pages import sms
from callback_service.web.pages.config import PAGES_CONFIG
from callback_service.web.pages.render import SECURITY_HEADERS, message, page, render, url
from callback_service.web.pages.session import SESSIONS
from handlers.core.binding import Actor, Binding, BindingState, DirectoryEntry
from handlers.core.guide import GUIDE, RULES, STEPS, ErrorCode, GuideEntry
from handlers.core.member import MemberSeen, MemberStatus
from handlers.core.phone import InvalidPhone, Phone
from handlers.core.wecom_errors import WeComError
from handlers.usecases.binding_flow import (
    Bound,
    Confirming,
    Refusal,
    Refused,
    Standing,
    result_key,
    submits_key,
)
from handlers.usecases.contracts import Remembers

log: Final = logging.getLogger(__name__)

LOGIN_COOKIE: Final = "wecom_bind_login"
FORM_ID: Final = re.compile(r"[A-Za-z0-9_\-]{16,64}\Z")
_MAX_PHONE_INPUT: Final = 64
_POLL: Final = 0.1
# A used login is remembered as long as its cookie could be believed (the window and the clock skew).
_LOGIN_SKEW: Final = 60.0

PHONE_FORMAT_ERROR: Final = (
    "手机号格式不正确：请输入 11 位中国大陆手机号，例如 138 0013 8000（可带 +86、空格或短横线）。"
)
"""Shown above the form again when the typed phone is not a mainland mobile."""

REFUSALS: Final[dict[Refusal, tuple[str, str]]] = {
    Refusal.MOBILE_REFUSED: (
        "手机号无法使用",
        "企业号通讯录不接受该手机号。请核对后重新输入，或更换其他手机号进行绑定。",
    ),
    Refusal.IN_PROGRESS: (
        "绑定正在处理中",
        "您刚才提交的绑定请求仍在处理中。请稍等一分钟后，到“我的绑定”查看结果，或重新提交。",
    ),
}
"""What a refusal outside the guide's chapter 2 (and not a standing) says: a title and a remedy."""

STANDING_HEADINGS: Final = {
    Standing.JOINED: "您的账号已加入企业号",
    Standing.DISABLED: "您的账号已停用",
    Standing.QUIT: "您的账号已退出企业",
    Standing.UNKNOWN: "未找到您的通讯录信息",
}
"""The heading of the page that stands in for the phone page, by the student's standing."""


# step 1 and 2: the QR code leads here, and on to the unified identity login


@page
async def bind(request: web.Request) -> web.StreamResponse:
    """/bind: on to the CAS login (or straight to the phone page for a student logged in already).

    The login is tied to this browser (login CSRF): a signed cookie, and a state derived from it in
    the CAS service URL, which CAS binds each ticket to. A ticket someone else obtained, in a link,
    comes back with another state or none, and logs no one in. Nothing is stored per visitor until
    CAS comes back, so a flood of /bind writes nothing.
    """
    app = request.app
    sessions = app[SESSIONS]
    if await sessions.load(request) is not None:
        return redirect(url(request, "bind-phone"))
    login = sessions.new_login()
    response = redirect(app[CAS].login_url(state=login.state))
    response.set_cookie(
        LOGIN_COOKIE,
        login.cookie,
        max_age=int(app[PAGES_CONFIG].login_window),
        path=url(request, "bind"),
        httponly=True,
        samesite="Lax",
        secure=app[SETTINGS].is_https,
    )
    return response


@page
async def bind_cas(request: web.Request) -> web.StreamResponse:
    """/bind/cas?state=&ticket=: check the login is this browser's, validate the ticket once, rotate
    the session, on to the phone page."""
    app = request.app
    ticket = request.query.get("ticket", "")
    if not TICKET.match(ticket):
        return message(
            request,
            title="未收到登录凭据",
            text="没有收到统一身份认证的登录凭据，请从头开始认证绑定：重新扫描二维码或点击下方按钮。",
            status=400,
        )
    store = app[PAGES_STORE]
    sessions = app[SESSIONS]
    kept = await sessions.load_kept(request)
    current = kept if kept is not None and kept.live(app[CLOCK]()) else None
    spent_key = f"cas-ticket:{hashlib.sha256(ticket.encode()).hexdigest()}"
    login = sessions.login_of(request.cookies.get(LOGIN_COOKIE))
    used_key = sessions.used_login_key(login) if login is not None else spent_key
    spent, used = await store.kv_get_many([spent_key, used_key])
    # A ticket is used once here too, whatever the CAS server does with a replay.
    if spent is not None:
        if current is not None and await sessions.opened_by(current, ticket):
            # This browser's own login, reloaded or reached with the back button: it stands.
            return redirect(url(request, "bind-phone"))
        log.info("bind: a CAS ticket was presented again")
        return _ticket_spent(request)
    if login is None or used is not None or not login.state_ok(request.query.get("state", "")):
        if current is not None:
            # Back to CAS's page after the login: CAS's single sign-on sent a new ticket. The
            # browser's login stands; the ticket is neither used nor spent.
            return redirect(url(request, "bind-phone"))
        log.info("bind: a CAS ticket came back to a browser that did not start this login")
        return message(
            request,
            title="请重新登录",
            text="本次登录不是从本浏览器开始的，或已超时，登录没有生效。请点击下方按钮重新开始认证绑定。",
            status=400,
        )
    try:
        principal = await app[CAS].validate(ticket, state=login.state)
    except CasAuthenticationFailure as exc:
        log.info("bind: CAS refused a ticket: %s", exc.code)
        await store.kv_set(spent_key, "1", ttl=app[PAGES_CONFIG].ticket_memory)
        return _ticket_spent(request)
    settings = app[SETTINGS]
    response = redirect(url(request, "bind-phone"))
    response.del_cookie(
        LOGIN_COOKIE, path=url(request, "bind"), httponly=True, samesite="Lax", secure=settings.is_https
    )
    # The ticket is marked spent only once CAS has answered (a CAS outage leaves it good for a
    # retry), in the same step as the session opens: a ticket presented twice at once logs in once,
    # and a login cookie opens one session.
    session = await sessions.start(
        response,
        previous=kept,
        member_id=principal.user,
        name=principal.attribute(settings.cas_name_attribute),
        cas_mobile=Phone.parse_or_none(principal.attribute(settings.cas_mobile_attribute)),
        ticket=ticket,
        sets={
            spent_key: ("1", app[PAGES_CONFIG].ticket_memory),
            used_key: ("1", app[PAGES_CONFIG].login_window + _LOGIN_SKEW),
        },
        if_absent=[spent_key, used_key],
    )
    if session is None:
        log.info("bind: a CAS ticket or a login was presented twice at once")
        return _ticket_spent(request)
    log.info("bind: student %s logged in", principal.user)
    return response


async def cas_logout_request(request: web.Request) -> web.StreamResponse:
    """POST /bind/cas: CAS single logout; end the session that the named ticket opened.

    It comes from the CAS server, not a browser, so it carries no CSRF token: it can only end a
    session, of a ticket that only that login saw. Whatever the body, the answer is the same 200.
    """
    ticket = None
    try:
        form = await request.post()
    except (web.HTTPException, ValueError, LookupError):  # too large, not in its charset, no such charset
        form = None
    if form is not None:
        ticket = logout_request_ticket(form_field(form, "logoutRequest"))
    ended = ticket is not None and TICKET.match(ticket) and await request.app[SESSIONS].end_by_ticket(ticket)
    if ended:
        log.info("bind: CAS single logout ended a session")
    return web.Response(text="ok", headers=SECURITY_HEADERS)


def _ticket_spent(request: web.Request) -> web.Response:
    return message(
        request,
        title="登录凭据已失效",
        text="该登录凭据已被使用或已过期（每个凭据只能使用一次）。请重新开始认证绑定。",
        status=400,
    )


# step 3: the phone binding page (figure 1-3) and its submit


@page
async def bind_phone(request: web.Request) -> web.StreamResponse:
    """/bind/phone: the phone form, pre-filled from the binding, the directory or CAS."""
    session = await request.app[SESSIONS].load(request)
    if session is None:
        return redirect(url(request, "bind"))
    store = request.app[PAGES_STORE]
    # Status first: a member who has joined, is disabled or has quit has no phone to bind.
    standing = await _standing(request, session)
    binding = await store.get_binding(session.member_id)
    entry = await store.directory_get(session.member_id)
    if standing is not Standing.MAY_BIND:
        return _standing_page(request, session, entry, standing)
    return await _phone_form(request, session, binding, entry, prefill=_prefill(binding, entry, session))


async def _standing(request: web.Request, session: Session) -> Standing:
    """The student's standing by WeCom's status; may bind when WeCom cannot tell now (the submit asks
    again, and shows WeCom's failure there)."""
    actor = Actor(who=session.member_id, source=f"bind-page {client_of(request)}")
    try:
        return await request.app[BINDING_FLOW].standing(session.member_id, actor=actor)
    except WeComError as exc:
        log.warning("bind: the status of %s is unknown (errcode %s)", session.member_id, exc.errcode)
        return Standing.MAY_BIND


def _standing_page(
    request: web.Request, session: Session, entry: DirectoryEntry | None, standing: Standing
) -> web.Response:
    """The page that stands in for the phone page: joined, disabled, quit, or in neither directory."""
    return render(
        request,
        "standing.html",
        {
            **_student(session, entry),
            "standing": standing.value,
            "heading": STANDING_HEADINGS[standing],
            "entry": GUIDE[ErrorCode.ACCOUNT_FOLLOWED],
            **_follow_context(request),
        },
    )


@page
async def bind_phone_submit(request: web.Request) -> web.StreamResponse:
    """POST /bind/phone: CSRF, rate limits, double-submit guard, then the binding rules."""
    app = request.app
    sessions = app[SESSIONS]
    session = await sessions.load(request)
    form = await read_form(request)
    token = form_field(form, "csrf")
    if session is None or not session.csrf_ok(token):
        return await _expired_form(request, session, token, form_field(form, "phone"))
    store = app[PAGES_STORE]
    phone_text = form_field(form, "phone")
    # A typing mistake is not an attempt on the rules: it is refused here and counts for nothing.
    try:
        phone = Phone.parse(phone_text)
    except InvalidPhone:
        binding = await store.get_binding(session.member_id)
        entry = await store.directory_get(session.member_id)
        return await _phone_form(
            request,
            session,
            binding,
            entry,
            prefill=_Prefill(phone_text[:_MAX_PHONE_INPUT], PrefillSource.TYPED),
            error=PHONE_FORMAT_ERROR,
            status=400,
        )
    # A phone of the student's own choosing is proved by an SMS code first (pages/sms.py): nothing
    # is written to WeCom until the code comes back right, and then submit_binding runs from there.
    if await sms.needs_code(request, session, phone):
        failure = await sms.send_code(request, session, phone)
        if failure is None:
            return redirect(url(request, "bind-code"), status=303)
        binding = await store.get_binding(session.member_id)
        entry = await store.directory_get(session.member_id)
        return await _phone_form(
            request, session, binding, entry,
            prefill=_Prefill(phone, PrefillSource.TYPED), error=failure, status=400,
        )
    return await submit_binding(request, session, phone, form_field(form, "form_id"))


async def submit_binding(
    request: web.Request, session: Session, phone: Phone, form_id: str, *, sms_verified: bool = False
) -> web.StreamResponse:
    """The double-submit guard, rate limits, then the binding rules; on to the result page."""
    app = request.app
    sessions = app[SESSIONS]
    config = app[PAGES_CONFIG]
    store = app[PAGES_STORE]
    if not FORM_ID.match(form_id):
        form_id = sessions.new_token()
    result_url = url(request, "bind-result", form=form_id)
    outcome_key = result_key(session.member_id, form_id)
    # The same form sent twice (a double tap, a resend) runs once and counts once against the
    # limits: the first writes its result, pending until the rules have answered; all land on it.
    pending = _Outcome(state=OutcomeState.PENDING).to_json()
    if not await store.kv_set_if_absent(outcome_key, pending, ttl=config.result_ttl):
        log.info("bind: a repeated submit of student %s", session.member_id)
        return redirect(result_url, status=303)
    limited = await _over_limit(request, session)
    if limited is not None:
        # Refused: nothing ran, so the same form may be sent again once the window has passed.
        await store.kv_delete(outcome_key)
        return _too_many(request, limited)
    # The audit entry says how the phone was proved: by an SMS code, or as the directory's own.
    source = f"bind-page {client_of(request)}" + (" sms-verified" if sms_verified else "")
    actor = Actor(who=session.member_id, source=source)

    async def record_end(ended: Bound | Refused | None) -> None:
        # A lost WeCom answer was replayed in the background: the result page shows how it ended.
        outcome = _Outcome(state=OutcomeState.UNCONFIRMED) if ended is None else _Outcome.of(ended, phone)
        await store.kv_set(outcome_key, outcome.to_json(), ttl=config.result_ttl)

    try:
        result = await app[BINDING_FLOW].bind(session.member_id, phone, actor=actor, on_ended=record_end)
    except BaseException:
        await _record_failure(store, outcome_key, config.result_ttl)
        raise
    await store.kv_set(outcome_key, _Outcome.of(result, phone).to_json(), ttl=config.result_ttl)
    response = redirect(result_url, status=303)
    # The form is no longer a draft; a phone 2.1 refused is not offered again.
    refused = isinstance(result, Refused) and result.reason is Refusal.PHONE_TAKEN
    kept = replace(session, draft_phone=None, refused_phone=phone if refused else session.refused_phone)
    if kept != session:
        await sessions.save(kept, response)
    return response


async def _expired_form(
    request: web.Request, session: Session | None, token: str, phone_text: str
) -> web.Response:
    """A submit whose login or form has expired: nothing is bound, and the phone typed is kept in
    the session when the form is provably this browser's (its token is this session's, or that of
    its previous login of the same student); never from a form of unknown origin."""
    sessions = request.app[SESSIONS]
    keep = 0 < len(phone_text) <= _MAX_PHONE_INPUT and phone_text.isprintable()
    if session is None:
        kept = await sessions.load_kept(request)
        text = "登录状态已失效，本次提交没有生效。请重新开始认证绑定。"
        link = None
        if kept is None or not (kept.csrf_ok(token) or kept.former_csrf_ok(token)):
            return message(request, title="页面已过期", text=text, status=403)
        owner = kept
    elif session.former_csrf_ok(token):
        text = "该页面已过期（您已重新登录），本次提交没有生效。请返回手机号绑定页面，核对后重新提交。"
        link = (url(request, "bind-phone"), "返回手机号绑定页面")
        owner = session
    else:
        log.warning("bind: CSRF token missing or wrong for student %s", session.member_id)
        return refused_form(request)
    if keep:
        text += "您输入的手机号已为您保留。"
    response = message(request, title="页面已过期", text=text, status=403, link=link)
    if keep:
        await sessions.save(replace(owner, draft_phone=phone_text), response)
    return response


@page
async def bind_result(request: web.Request) -> web.StreamResponse:
    """/bind/result/{form}: what the submit did, and what happens next (the guide's step 4)."""
    session = await request.app[SESSIONS].load(request)
    if session is None:
        return redirect(url(request, "bind"))
    form_id = request.match_info["form"]
    if not FORM_ID.match(form_id):
        return _result_gone(request)
    outcome = await _wait_for_outcome(request, result_key(session.member_id, form_id))
    if outcome is None:
        return _result_gone(request)
    if outcome.state is OutcomeState.PENDING:
        return render(request, "pending.html", {"refresh_url": url(request, "bind-result", form=form_id)})
    if outcome.state is OutcomeState.CONFIRMING:
        return render(
            request,
            "confirming.html",
            {"refresh_url": url(request, "bind-result", form=form_id), "phone_masked": outcome.phone_masked},
        )
    if outcome.state is OutcomeState.UNCONFIRMED:
        return message(
            request,
            title="暂未能确认绑定结果",
            text="企业号通讯录暂时没有确认本次绑定，系统会继续核对。请稍后在“我的绑定”查看结果，请勿重复提交。",
            status=200,
            link=(url(request, "me"), "查看我的绑定"),
        )
    if outcome.state is OutcomeState.FAILED:
        return message(
            request,
            title="绑定未完成",
            text="服务暂时不可用，本次绑定没有生效。请稍后再试。",
            status=200,
            link=(url(request, "bind-phone"), "返回手机号绑定页面"),
        )
    if outcome.state is OutcomeState.BOUND:
        return render(request, "result.html", {"outcome": outcome, **_follow_context(request)})
    reason = outcome.reason or Refusal.IN_PROGRESS
    standing = reason.standing
    if standing is not None:
        entry = await request.app[PAGES_STORE].directory_get(session.member_id)
        return _standing_page(request, session, entry, standing)
    code = reason.code
    if code is not None:
        context = {
            "entry": GUIDE[code],
            "retry_url": url(request, "bind-phone"),
            "phone_masked": outcome.phone_masked,
        }
        return render(request, "refused.html", context)
    title, text = REFUSALS[reason]
    return message(request, title=title, text=text, status=200, link=(url(request, "bind-phone"), "重新绑定"))


def refused_form(request: web.Request) -> web.Response:
    """The page for a binding form whose CSRF token is missing or wrong: nothing was done."""
    return message(
        request,
        title="请求无效",
        text="页面已过期或来源不明，本次提交没有生效。请返回手机号绑定页面重新提交。",
        status=403,
        link=(url(request, "bind-phone"), "返回手机号绑定页面"),
    )

def _result_gone(request: web.Request) -> web.Response:
    return message(
        request,
        title="找不到绑定结果",
        text="该绑定结果不存在或已过期。您可以在“我的绑定”查看当前的绑定状态。",
        status=404,
        link=(url(request, "me"), "查看我的绑定"),
    )


# the QR codes


@page
async def follow_qr(request: web.Request) -> web.StreamResponse:
    """/bind/follow-qr.png: the organisation's follow QR (step 4), when settings name its link."""
    follow_url = request.app[SETTINGS].follow_url
    if follow_url is None:
        return message(
            request, title="未配置关注二维码", text="请使用学校发布的企业号关注二维码。", status=404
        )
    return web.Response(body=qr_image(follow_url, "png", scale=6), content_type="image/png")


@page
async def bind_qr(request: web.Request) -> web.StreamResponse:
    """/bind/qr.png: the poster's QR code of step 1, which leads to /bind."""
    return web.Response(body=qr_image(bind_url(request.app[SETTINGS]), "png"), content_type="image/png")


# chapter 2 and the student's own state


@page
async def help_page(request: web.Request) -> web.StreamResponse:
    """/help: the guide's 1.2 rules and 1.3 steps, then chapter 2's errors with causes and remedies."""
    return render(request, "help.html", {"entries": guide_entries(), "rules": RULES, "steps": STEPS})


@page
async def me(request: web.Request) -> web.StreamResponse:
    """/me: a logged-in student's binding state, the phone masked."""
    session = await request.app[SESSIONS].load(request)
    if session is None:
        return _not_logged_in(request, "查看绑定状态前，请先使用学号登录统一身份认证。")
    store = request.app[PAGES_STORE]
    binding = await store.get_binding(session.member_id)
    entry = await store.directory_get(session.member_id)
    seen = await store.member_seen(session.member_id)
    return render(
        request,
        "me.html",
        {
            **_student(session, entry),
            "binding": _me_view(binding, _binding_view(binding, request.app[CLOCK]()), seen, entry),
            "csrf": session.csrf,
            "logout_url": url(request, "logout"),
            "phone_url": url(request, "bind-phone"),
            **_follow_context(request),
        },
    )


@page
async def logout_page(request: web.Request) -> web.StreamResponse:
    """GET /logout (a link typed or kept): a button that logs out, or word that no one is logged in."""
    session = await request.app[SESSIONS].load(request)
    if session is None:
        return _not_logged_in(request, "您当前没有登录，无需退出。如需绑定手机号，请先登录统一身份认证。")
    context = {"csrf": session.csrf, "logout_url": url(request, "logout"), "name": session.name}
    return render(request, "logout.html", context)


@page
async def logout(request: web.Request) -> web.StreamResponse:
    """POST /logout: end the session (the form carries the CSRF token)."""
    sessions = request.app[SESSIONS]
    session = await sessions.load(request)
    form = await read_form(request)
    if session is not None and not session.csrf_ok(form_field(form, "csrf")):
        return message(request, title="请求无效", text="页面已过期或来源不明，请刷新后重试。", status=403)
    # The CAS single sign-on outlives our session: without its logout, /bind logs the same student in again.
    response = message(
        request,
        title="已退出",
        text="您已退出登录。如需使用其他学号登录，请同时退出统一身份认证。",
        status=200,
        link=(request.app[CAS].logout_url(bind_url(request.app[SETTINGS])), "退出统一身份认证"),
    )
    await sessions.end(session, response)
    return response


# helpers


def _not_logged_in(request: web.Request, text: str) -> web.Response:
    return message(
        request, title="您尚未登录", text=text, status=200, link=(url(request, "bind"), "登录统一身份认证")
    )


class OutcomeState(enum.StrEnum):
    """Where a submit stands, as its result page shows it."""

    PENDING = "pending"
    """The rules or WeCom have not answered yet."""
    CONFIRMING = "confirming"
    """WeCom's answer was lost: the write is being confirmed in the background."""
    UNCONFIRMED = "unsettled"
    """The background replay could not tell: reconcile will. (Its value is its former name, as the
    results kept in kv were written.)"""
    FAILED = "failed"
    """The submit failed before it changed anything (an outage)."""
    BOUND = "bound"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class _Outcome:
    """A submit's result as kept for its result page: never the full phone."""

    state: OutcomeState
    phone_masked: str | None = None
    already_bound: bool = False
    created: bool = False
    invited: bool = False
    followed: bool = False
    reason: Refusal | None = None
    corrected: bool = False

    @classmethod
    def of(cls, result: Bound | Refused | Confirming, phone: Phone) -> _Outcome:
        if isinstance(result, Confirming):
            return cls(state=OutcomeState.CONFIRMING, phone_masked=result.phone_masked)
        if isinstance(result, Bound):
            return cls(
                state=OutcomeState.BOUND,
                phone_masked=result.phone_masked,
                already_bound=result.already_bound,
                created=result.created,
                invited=result.invited,
                followed=result.followed,
            )
        return cls(
            state=OutcomeState.REFUSED,
            reason=result.reason,
            corrected=result.corrected,
            phone_masked=phone.masked,
        )

    def to_json(self) -> str:
        return json.dumps({name: getattr(self, name) for name in self.__slots__})

    @classmethod
    def from_json(cls, raw: str | None) -> _Outcome | None:
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            outcome = cls(**{name: data[name] for name in cls.__slots__ if name in data})
            reason = None if outcome.reason is None else Refusal(outcome.reason)
            outcome = replace(outcome, state=OutcomeState(outcome.state), reason=reason)
        except (ValueError, TypeError):
            return None
        if outcome.state is OutcomeState.REFUSED and outcome.reason is None:
            return None
        return outcome


async def _wait_for_outcome(request: web.Request, key: str) -> _Outcome | None:
    # A repeated submit lands here while the first is still at WeCom: wait a little for it.
    store = request.app[PAGES_STORE]
    deadline = asyncio.get_running_loop().time() + request.app[PAGES_CONFIG].result_wait
    while True:
        outcome = _Outcome.from_json(await store.kv_get(key))
        if outcome is not None and outcome.state is not OutcomeState.PENDING:
            return outcome
        if asyncio.get_running_loop().time() >= deadline:
            return outcome
        await asyncio.sleep(_POLL)


async def _record_failure(store: Remembers, key: str, ttl: float) -> None:
    try:
        await store.kv_set(key, _Outcome(state=OutcomeState.FAILED).to_json(), ttl=ttl)
    except Exception:
        log.warning("bind: could not record a failed submit")


class SubmitLimit(enum.StrEnum):
    """Which limit on binding submits refused one: the student's own, or their client address's."""

    STUDENT = "student"
    ADDRESS = "address"


async def _over_limit(request: web.Request, session: Session) -> SubmitLimit | None:
    """Count a submit that reaches the rules; say which limit refuses it."""
    config = request.app[PAGES_CONFIG]
    store = request.app[PAGES_STORE]
    address = client_of(request)
    student_key, address_key = submits_key(session.member_id), f"rate:bind:ip:{address}"
    # Counted all or none: a refused submit counts nowhere, so one student's burst must not lock
    # the others on its address out.
    full = await store.kv_incr_under(
        {student_key: config.submits_per_student, address_key: config.submits_per_ip},
        ttl=config.submit_window,
    )
    refused = None if full is None else SubmitLimit.STUDENT if full == student_key else SubmitLimit.ADDRESS
    if refused is not None:
        log.warning("bind: %s rate limit: refused student %s from %s", refused, session.member_id, address)
    return refused


def _too_many(request: web.Request, limit: SubmitLimit) -> web.Response:
    config = request.app[PAGES_CONFIG]
    minutes = max(1, math.ceil(config.submit_window / 60))
    if limit is SubmitLimit.STUDENT:
        allowed = config.submits_per_student
        what = f"您在 {minutes} 分钟内提交绑定的次数已达上限（{allowed} 次），本次提交没有生效。"
    else:
        what = f"您所在的网络在 {minutes} 分钟内提交绑定的次数过多，本次提交没有生效。"
    return message(
        request,
        title="提交过于频繁",
        text=f"{what}为保护您的账号，请在 {minutes} 分钟后再试；输错手机号格式不计入次数。",
        status=429,
        link=(url(request, "me"), "查看我的绑定"),
        headers={"Retry-After": str(math.ceil(config.submit_window))},
    )


async def _phone_form(
    request: web.Request,
    session: Session,
    binding: Binding | None,
    entry: DirectoryEntry | None,
    *,
    prefill: _Prefill,
    error: str | None = None,
    status: int = 200,
) -> web.Response:
    return render(
        request,
        "bind_phone.html",
        {
            **_student(session, entry),
            "phone": prefill.phone,
            "source": prefill.source,
            "refused_masked": prefill.refused_masked,
            "error": error,
            "csrf": session.csrf,
            "form_id": request.app[SESSIONS].new_token(),
            "action": url(request, "bind-phone"),
            "binding": _binding_view(binding, request.app[CLOCK]()),
            "followed_entry": GUIDE[ErrorCode.ACCOUNT_FOLLOWED],
        },
        status=status,
    )


def _student(session: Session, entry: DirectoryEntry | None) -> dict[str, str | None]:
    """Who the page is about: the directory's name and 院系, else what CAS said."""
    return {
        "student_id": session.member_id,
        "name": entry.name if entry else session.name,
        "department": entry.department if entry else None,
    }


class PrefillSource(enum.StrEnum):
    """Where the phone the form shows comes from; the phone page names it under the field."""

    TYPED = "typed"
    """Typed into this form just now (shown again with the error)."""
    DRAFT = "draft"
    """Typed into a form that expired, kept in the session."""
    BOUND = "bound"
    DIRECTORY = "directory"
    CAS = "cas"
    NONE = ""
    """Nowhere: the field is empty."""


@dataclass(frozen=True, slots=True)
class _Prefill:
    """The phone the form shows, and where it comes from; refused_masked: the candidate was the
    phone that 2.1 refused (shown masked), so the field is left empty."""

    phone: str
    source: PrefillSource
    refused_masked: str | None = None


def _prefill(binding: Binding | None, entry: DirectoryEntry | None, session: Session) -> _Prefill:
    """The phone shown in the form: a kept draft, the bound one, the directory's, CAS's, or none."""
    if session.draft_phone:
        return _Prefill(session.draft_phone, PrefillSource.DRAFT)
    if binding is not None and binding.state is not BindingState.PENDING and binding.phone:
        return _Prefill(binding.phone, PrefillSource.BOUND)
    # Both were parsed where they entered: the directory import and the CAS login.
    for candidate, source in (
        (entry.phone if entry else None, PrefillSource.DIRECTORY),
        (session.cas_mobile, PrefillSource.CAS),
    ):
        if candidate:
            if candidate == session.refused_phone:
                return _Prefill("", PrefillSource.NONE, refused_masked=candidate.masked)
            return _Prefill(candidate, source)
    return _Prefill("", PrefillSource.NONE)


class ViewState(enum.StrEnum):
    """Where a student stands as /me and the phone page show it: by the binding (none, pending,
    bound, followed), or by WeCom's last word on the member (joined, disabled, quit)."""

    NONE = "none"
    PENDING = "pending"
    BOUND = "bound"
    FOLLOWED = "followed"
    JOINED = "joined"
    DISABLED = "disabled"
    QUIT = "quit"
    UNKNOWN = "unknown"
    """Neither bound, nor in the directory, nor ever seen in WeCom: nobody the flow may bind."""


@dataclass(frozen=True, slots=True)
class _BindingView:
    """A binding as the pages show it: none, pending, bound or followed; the phone masked."""

    state: ViewState
    phone_masked: str | None


_NO_BINDING: Final = _BindingView(ViewState.NONE, None)


def _binding_view(binding: Binding | None, now: float) -> _BindingView:
    if binding is None:
        return _NO_BINDING
    if binding.state is BindingState.PENDING:
        if not binding.lease_expired(now):
            return _BindingView(ViewState.PENDING, binding.phone.masked if binding.phone else None)
        if binding.previous_phone is None:
            return _NO_BINDING
        return _BindingView(ViewState.BOUND, binding.previous_phone.masked)
    masked = binding.phone.masked if binding.phone else None
    if binding.state is BindingState.FOLLOWED:
        return _BindingView(ViewState.FOLLOWED, masked)
    # Bound without a phone: the store could not read the phone it holds (store.common.stored_phone).
    return _NO_BINDING if masked is None else _BindingView(ViewState.BOUND, masked)


_SEEN_STATES: Final = {
    MemberStatus.ACTIVATED: ViewState.JOINED,
    MemberStatus.DISABLED: ViewState.DISABLED,
    MemberStatus.QUIT: ViewState.QUIT,
}


def _me_view(
    binding: Binding | None, view: _BindingView, seen: MemberSeen | None, entry: DirectoryEntry | None
) -> _BindingView:
    """The state /me shows: a follow through the flow as the store holds it, else the newer of the
    binding's own state and WeCom's last word on the member (joined through the WeCom app, disabled,
    departed): an unfollow after a login that saw the member joined shows the unfollow. A student
    with no binding, no directory entry and no word from WeCom is one the login found nowhere (a
    member WeCom knows is recorded at each login): unknown, as the login's page said, not 未绑定."""
    if binding is None and entry is None and (seen is None or seen.status is None):
        return _BindingView(ViewState.UNKNOWN, None)
    if view.state is ViewState.FOLLOWED or seen is None or seen.status is None:
        return view
    if binding is not None and binding.updated_at >= seen.seen_at:
        return view
    state = _SEEN_STATES.get(seen.status)
    return view if state is None else _BindingView(state, view.phone_masked)


def _follow_context(request: web.Request) -> dict[str, Any]:
    follow_url = request.app[SETTINGS].follow_url
    return {
        "follow_url": follow_url,
        "follow_qr_url": url(request, "bind-follow-qr") if follow_url else None,
    }


async def read_form(request: web.Request) -> Any:
    """The submitted form; a body that does not decode in the charset it names is a 400 page."""
    try:
        return await request.post()
    except (ValueError, LookupError):
        raise web.HTTPBadRequest() from None


def form_field(form: Any, name: str) -> str:
    """A form's text field by name; "" when absent or a file."""
    value = form.get(name)
    return value if isinstance(value, str) else ""


def redirect(location: str, *, status: int = 302) -> web.Response:
    """A redirect to a path of ours (never one a request named)."""
    return web.Response(status=status, headers={"Location": location})


def guide_entries() -> list[GuideEntry]:
    """The guide's chapter 2, in section order."""
    return sorted(GUIDE.values(), key=lambda entry: entry.section)
