"""Who may enter the console: a CAS login of its own (the students' CAS client and session code, with
the console's service URL and cookie), open only to the ids of WECOM_BIND_ADMINS.

A visitor who is not logged in is sent to CAS; anyone logged in who is not listed (a student of the
pages, or anyone CAS knows) gets the site's ordinary 404 on every /admin path, so the console does
not even say that it exists. The session cookie is the console's own: path /admin, HttpOnly,
SameSite=Strict, Secure on https, ended after 30 minutes without a page. Every form carries the
session's CSRF token.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

import aiohttp_jinja2
from aiohttp import web

from callback_service.admin.keys import ADMIN_CAS, ADMIN_SESSIONS, ADMIN_TEMPLATES
from callback_service.answers import UNAVAILABLE, log_failure
from callback_service.client_address import client_of
from callback_service.clients.cas import TICKET, CasAuthenticationFailure, CasUnreachable
from callback_service.compose import CLOCK, SETTINGS
from callback_service.store import CONSOLE_STORE
from callback_service.web.pages.render import SECURITY_HEADERS
from callback_service.web.pages.session import SESSIONS, Session
from handlers.core.binding import Actor
from handlers.core.wecom_errors import ConfigurationError
from handlers.usecases.contracts import StoreUnavailable

log: Final = logging.getLogger(__name__)

PREFIX: Final = "/admin"
CAS_RETURN_PATH: Final = PREFIX + "/cas"
COOKIE: Final = "wecom_bind_admin"
LOGIN_COOKIE: Final = "wecom_bind_admin_login"
IDLE: Final = 30 * 60.0
"""An administrator's session ends after this long without a page."""
LOGIN_WINDOW: Final = 10 * 60.0
_TOUCH_EVERY: Final = 60.0
_NONCE: Final = re.compile(r"[A-Za-z0-9_\-]{16,64}\Z")
_TICKET_MEMORY: Final = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Admin:
    """The administrator behind a request: their CAS id and session (its CSRF token for the forms)."""

    member_id: str
    session: Session
    address: str

    @property
    def csrf(self) -> str:
        """The token every form of the page carries."""
        return self.session.csrf

    def actor(self, what: str) -> Actor:
        """Who did it, for the audit log: the administrator's id, the console, the address and what."""
        return Actor(who=f"admin:{self.member_id}", source=f"console {self.address}: {what}")


ConsoleView = Callable[[web.Request, Admin], Awaitable[web.StreamResponse]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def render(
    request: web.Request,
    admin: Admin | None,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
) -> web.Response:
    """Render a page of templates/admin/ in the console's layout."""
    values = {
        "school": request.app[SETTINGS].school_name,
        "admin": admin,
        "csrf": admin.csrf if admin is not None else "",
        "nav": _nav(request) if admin is not None else [],
        "current": request.path,
        **(context or {}),
    }
    response = aiohttp_jinja2.render_template(
        f"admin/{template}", request, values, app_key=ADMIN_TEMPLATES, status=status
    )
    response.headers.update(SECURITY_HEADERS)
    return response


def message(
    request: web.Request,
    admin: Admin | None,
    *,
    title: str,
    text: str,
    status: int = 200,
    link: tuple[str, str] | None = None,
) -> web.Response:
    """A console page that says one thing and offers one way on."""
    href, label = link or (url(request, "admin"), "返回概览")
    context = {"title": title, "text": text, "link_href": href, "link_label": label}
    return render(request, admin, "message.html", context, status=status)



def refused_form(request: web.Request, admin: Admin) -> web.Response:
    """The page for a console form whose CSRF token is missing or wrong: nothing was done."""
    text = "页面已过期或来源不明，操作没有生效。请刷新后重试。"
    return message(request, admin, title="请求无效", text=text, status=403)

def url(request: web.Request, name: str, **parts: str) -> str:
    """The path of a named route."""
    return str(request.app.router[name].url_for(**parts))


def _nav(request: web.Request) -> list[tuple[str, str]]:
    return [
        (url(request, "admin"), "概览"),
        (url(request, "admin-stuck"), "待处理"),
        (url(request, "admin-search"), "查找学生"),
        (url(request, "admin-export"), "催办名单"),
        (url(request, "admin-directory"), "学校通讯录"),
    ]


def console(view: ConsoleView) -> Handler:
    """Open a view to the listed administrators only, check the CSRF token of every POST, keep the
    session alive, and show every failure as a console page (a 404 as the site's own)."""
    return _console(view, own_csrf=False)


def console_upload(view: ConsoleView) -> Handler:
    """As console, for a view that streams a large multipart body and checks its CSRF token itself."""
    return _console(view, own_csrf=True)


def _console(view: ConsoleView, *, own_csrf: bool) -> Handler:
    @functools.wraps(view)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            admin = await _admin(request)
            if admin is None:
                return await _to_cas(request)
            if request.method == "POST" and not own_csrf:
                form = await request.post()
                token = form.get("csrf")
                if not admin.session.csrf_ok(token if isinstance(token, str) else None):
                    log.warning("admin: CSRF token missing or wrong for %s", admin.member_id)
                    return refused_form(request, admin)
            response = await _answer(request, admin, view)
            await _touch(request, admin.session, response)
            return response
        except web.HTTPException as answer:
            answer.headers.update(SECURITY_HEADERS)
            raise

    return wrapped


async def _answer(request: web.Request, admin: Admin, view: ConsoleView) -> web.StreamResponse:
    try:
        response = await view(request, admin)
    except web.HTTPException:
        raise
    except Exception as exc:
        # Logged, and its status chosen, by the one table of answers; the words are the console's own,
        # for an administrator (WeCom's refusal of our configuration names its remedy).
        answer = log_failure(log, f"admin {request.path}", exc)
        if isinstance(exc, ConfigurationError):
            title, text = "企业微信拒绝了本服务的配置", f"操作没有生效。{exc.remedy}"
        elif answer.status == UNAVAILABLE.status:
            title, text = "服务暂时不可用", "数据存储或企业微信暂时无法访问，操作没有生效。请稍后再试。"
        else:
            title, text = "出错了", "处理请求时出错，操作可能没有生效。"
        response = message(request, admin, title=title, text=text, status=answer.status)
        if answer.retry_after is not None:
            response.headers["Retry-After"] = str(answer.retry_after)
    response.headers.update(SECURITY_HEADERS)
    return response


async def _admin(request: web.Request) -> Admin | None:
    """The listed administrator of the request; None when no one is logged in to the console.

    Raises 404 for anyone known not to be listed: an administrator's session of an id no longer
    listed, or a student logged in to the students' pages.
    """
    admins = request.app[SETTINGS].admins
    session = await request.app[ADMIN_SESSIONS].load(request)
    if session is not None:
        if session.member_id not in admins:
            raise web.HTTPNotFound()
        return Admin(session.member_id, session, client_of(request))
    student = await request.app[SESSIONS].load(request)
    if student is not None and student.member_id not in admins:
        raise web.HTTPNotFound()
    return None


async def _touch(request: web.Request, session: Session, response: web.StreamResponse) -> None:
    """Thirty minutes idle: each page moves the session's end on (at most once a minute)."""
    if COOKIE in response.cookies:
        return  # the view started or ended the session itself (a logout)
    now = request.app[CLOCK]()
    if session.expires_at - now < IDLE - _TOUCH_EVERY and not response.prepared:
        await request.app[ADMIN_SESSIONS].save(replace(session, expires_at=now + IDLE), response)


async def _to_cas(request: web.Request) -> web.StreamResponse:
    """Send a visitor to CAS, tied to this browser by a cookie, to come back to the page asked for."""
    app = request.app
    nonce = app[ADMIN_SESSIONS].new_token()
    back = request.path if request.method == "GET" else PREFIX
    await app[CONSOLE_STORE].kv_set(_login_key(nonce), back, ttl=LOGIN_WINDOW)
    response = web.Response(status=302, headers={"Location": app[ADMIN_CAS].login_url(), **SECURITY_HEADERS})
    # Lax, not Strict: it must come back with CAS's redirect, a navigation from another site.
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        max_age=int(LOGIN_WINDOW),
        path=CAS_RETURN_PATH,
        httponly=True,
        samesite="Lax",
        secure=app[SETTINGS].is_https,
    )
    return response


async def cas_return(request: web.Request) -> web.StreamResponse:
    """/admin/cas?ticket=: validate the ticket once, for the browser that started the login; open a
    session for a listed administrator, 404 for anyone else."""
    try:
        return await _cas_return(request)
    except web.HTTPException as answer:
        answer.headers.update(SECURITY_HEADERS)
        raise
    except (StoreUnavailable, CasUnreachable) as exc:
        log.warning("admin login: %s unavailable", type(exc).__name__)
        return message(
            request,
            None,
            title="服务暂时不可用",
            text="请稍后重新登录。",
            status=503,
            link=(PREFIX, "重新登录"),
        )


async def _cas_return(request: web.Request) -> web.StreamResponse:
    app = request.app
    ticket = request.query.get("ticket", "")
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    if not TICKET.match(ticket) or not _NONCE.match(nonce):
        return _login_again(request)
    store = app[CONSOLE_STORE]
    spent_key = f"cas-ticket:{hashlib.sha256(ticket.encode()).hexdigest()}"
    login_key = _login_key(nonce)
    spent, back = await store.kv_get_many([spent_key, login_key])
    if spent is not None or back is None:
        log.info("admin login: a spent ticket, or one that came back to a browser that did not start it")
        return _login_again(request)
    try:
        principal = await app[ADMIN_CAS].validate(ticket)
    except CasAuthenticationFailure as exc:
        log.info("admin login: CAS refused a ticket: %s", exc.code)
        await store.kv_set(spent_key, "1", ttl=_TICKET_MEMORY)
        return _login_again(request)
    if principal.user not in app[SETTINGS].admins:
        log.warning("admin login: %s is not an administrator", principal.user)
        await store.kv_apply({spent_key: ("1", _TICKET_MEMORY)}, deletes=[login_key])
        raise web.HTTPNotFound()
    target = back if back.startswith(PREFIX) else PREFIX
    # SameSite=Strict: the cookie set here is not sent with a redirect that began on CAS's site, so
    # the page moves on by itself (a navigation from our own site), with a link for the same.
    response = render(request, None, "logged_in.html", {"target": target})
    sessions = app[ADMIN_SESSIONS]
    session = await sessions.start(
        response,
        previous=await sessions.load_kept(request),
        member_id=principal.user,
        name=principal.attribute(app[SETTINGS].cas_name_attribute),
        cas_mobile=None,
        sets={spent_key: ("1", _TICKET_MEMORY)},
        deletes=[login_key],
        if_absent=[spent_key],
    )
    if session is None:
        return _login_again(request)
    response.del_cookie(
        LOGIN_COOKIE, path=CAS_RETURN_PATH, httponly=True, samesite="Lax", secure=app[SETTINGS].is_https
    )
    log.info("admin login: %s logged in to the console", principal.user)
    return response


def _login_again(request: web.Request) -> web.Response:
    return message(
        request,
        None,
        title="请重新登录",
        text="登录凭据已失效，或登录不是从本浏览器开始的。请重新登录。",
        status=400,
        link=(PREFIX, "重新登录"),
    )


def _login_key(nonce: str) -> str:
    return f"admin-login:{hashlib.sha256(nonce.encode()).hexdigest()}"
