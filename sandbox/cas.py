"""An emulated CAS server (统一身份认证) for the tests and the demo, mountable as a sub-application.

With single logout (the default, as Apereo CAS), logging out of the emulator POSTs a SAML
LogoutRequest (form field `logoutRequest`, the ticket as SessionIndex) to the service URL of every
ticket that the ended single sign-on session issued and that a service validated (CAS protocol 2.3.3).
"""

from __future__ import annotations

import hmac
import re
import secrets
import string
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Protocol, TypeVar
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

import aiohttp
import aiohttp_jinja2
import jinja2
from aiohttp import web

__all__ = ["CasUser", "create_cas_sandbox"]

CAS_NAMESPACE: Final = "http://www.yale.edu/tp/cas"
TGC_COOKIE: Final = "TGC"
LOGIN_ROUTE: Final = "cas_login"
LOGOUT_ROUTE: Final = "cas_logout"

# CAS protocol 3.7: tickets and the ticket-granting cookie hold only [A-Za-z0-9] and "-".
_TICKET_ALPHABET: Final = string.ascii_letters + string.digits
_TICKET_RANDOM_CHARS: Final = 32
# Services must accept tickets of 256 characters; anything longer was never ours.
_MAX_TICKET_LENGTH: Final = 256
_XML_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9._-]*\Z")
_XML_TEXT: Final = re.compile(r"[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# Attributes the emulator releases itself, as CAS 3.0's AttributesType asks.
_RESERVED_ATTRIBUTES: Final = frozenset(
    {"authenticationDate", "longTermAuthenticationRequestTokenUsed", "isFromNewLogin", "name"}
)
_NO_CACHE: Final = {"Cache-Control": "no-store", "Pragma": "no-cache", "Expires": "0"}


@dataclass(frozen=True, slots=True)
class CasUser:
    """A seeded account of the emulated 统一身份认证: 学号, password and released attributes."""

    member_id: str
    password: str = field(repr=False)
    name: str
    attributes: Mapping[str, str | Sequence[str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _ServiceTicket:
    member_id: str
    service: str
    expires_at: float
    from_new_login: bool
    authenticated_at: float
    tgt: str


@dataclass(frozen=True, slots=True)
class _SsoSession:
    member_id: str
    expires_at: float
    authenticated_at: float


class _Expires(Protocol):
    @property
    def expires_at(self) -> float: ...


_Expiring = TypeVar("_Expiring", bound=_Expires)


class _CasState:
    """The emulator's memory: seeded users, open SSO sessions and unvalidated tickets."""

    def __init__(
        self,
        *,
        users: Mapping[str, CasUser],
        ticket_ttl: float,
        tgt_ttl: float,
        clock: Callable[[], float],
        random: Callable[[int], str],
    ) -> None:
        self.users = dict(users)
        self.ticket_ttl = ticket_ttl
        self.tgt_ttl = tgt_ttl
        self.clock = clock
        self.random = random
        # Insertion order is expiry order (constant TTLs), so purging stops at the first live one.
        self.tickets: dict[str, _ServiceTicket] = {}
        self.sessions: dict[str, _SsoSession] = {}
        # Per single sign-on session, the (service, ticket) pairs that services validated.
        self.validated: dict[str, list[tuple[str, str]]] = {}

    def authenticate(self, member_id: str, password: str) -> CasUser | None:
        user = self.users.get(member_id)
        expected = user.password if user is not None else secrets.token_hex(16)
        # Compared even for an unknown 学号, so timing does not tell which accounts exist.
        matches = hmac.compare_digest(password.encode(), expected.encode())
        return user if user is not None and matches else None

    def open_session(self, user: CasUser) -> str:
        now = self.clock()
        _purge(self.sessions, now)
        for gone in self.validated.keys() - self.sessions.keys():
            del self.validated[gone]
        tgt = self._new_id("TGT-", self.sessions)
        self.sessions[tgt] = _SsoSession(user.member_id, now + self.tgt_ttl, now)
        return tgt

    def session(self, tgt: str | None) -> _SsoSession | None:
        found = self.sessions.get(tgt) if tgt else None
        if found is None or self.clock() >= found.expires_at:
            return None
        return found

    def issue_ticket(
        self, member_id: str, service: str, *, from_new_login: bool, authenticated_at: float, tgt: str
    ) -> str:
        now = self.clock()
        _purge(self.tickets, now)
        ticket = self._new_id("ST-", self.tickets)
        self.tickets[ticket] = _ServiceTicket(
            member_id, service, now + self.ticket_ttl, from_new_login, authenticated_at, tgt
        )
        return ticket

    def _new_id(self, prefix: str, taken: Mapping[str, object]) -> str:
        candidate = prefix + self.random(_TICKET_RANDOM_CHARS)
        if candidate in taken:
            raise RuntimeError("the random source repeated a ticket")
        return candidate


_STATE: Final = web.AppKey("cas_sandbox_state", _CasState)
_TEMPLATES: Final = web.AppKey("cas_sandbox_templates", jinja2.Environment)
_SCHOOL: Final = web.AppKey("cas_sandbox_school", str)
_SHOW_ACCOUNTS: Final = web.AppKey("cas_sandbox_show_accounts", bool)
_SINGLE_LOGOUT: Final = web.AppKey("cas_sandbox_single_logout", bool)
_LOGOUT_TIMEOUT: Final = aiohttp.ClientTimeout(total=5)
SAML_PROTOCOL: Final = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML_ASSERTION: Final = "urn:oasis:names:tc:SAML:2.0:assertion"


def create_cas_sandbox(
    *,
    users: Mapping[str, CasUser],
    ticket_ttl: float = 300.0,
    tgt_ttl: float = 8 * 3600.0,
    clock: Callable[[], float] = time.time,
    random: Callable[[int], str] | None = None,
    school: str = "上海工程技术大学",
    show_accounts: bool = False,
    single_logout: bool = True,
) -> web.Application:
    """Build the CAS emulator: /login, /logout, /serviceValidate and /p3/serviceValidate."""
    _check_users(users)
    if ticket_ttl <= 0 or tgt_ttl <= 0:
        raise ValueError("ticket_ttl and tgt_ttl must be positive")
    app = web.Application()
    app[_STATE] = _CasState(
        users=users,
        ticket_ttl=ticket_ttl,
        tgt_ttl=tgt_ttl,
        clock=clock,
        random=random or _random_token,
    )
    app[_SCHOOL] = school
    app[_SHOW_ACCOUNTS] = show_accounts
    app[_SINGLE_LOGOUT] = single_logout
    aiohttp_jinja2.setup(
        app,
        app_key=_TEMPLATES,
        loader=jinja2.PackageLoader("sandbox", "templates"),
        autoescape=True,
    )
    app.router.add_get("/login", _login_form, name=LOGIN_ROUTE)
    app.router.add_post("/login", _login_submit)
    app.router.add_get("/logout", _logout, name=LOGOUT_ROUTE)
    app.router.add_get("/serviceValidate", _service_validate, name="cas_service_validate")
    app.router.add_get("/p3/serviceValidate", _service_validate, name="cas_p3_service_validate")
    return app


async def _login_form(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    service = request.query.get("service")
    if service is not None and not _is_acceptable_service(service):
        return _unauthorized_service(request)
    # renew asks for credentials even when an SSO session exists (CAS protocol 2.1.1).
    session = None if "renew" in request.query else state.session(_tgc(request))
    if session is not None:
        if service is not None:
            return _redirect_with_ticket(
                request,
                session.member_id,
                service,
                from_new_login=False,
                at=session.authenticated_at,
                tgt=_tgc(request) or "",
            )
        return _logged_in_page(request, state.users[session.member_id])
    return _render_login(request, service=service, username="", error=None)


async def _login_submit(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    form = await request.post()
    username = _form_text(form.get("username")).strip()
    password = _form_text(form.get("password"))
    service = _form_text(form.get("service")) or request.query.get("service") or None
    if service is not None and not _is_acceptable_service(service):
        return _unauthorized_service(request)
    user = state.authenticate(username, password)
    if user is None:
        # One message for an unknown 学号 and a wrong password: no account enumeration.
        return _render_login(request, service=service, username=username, error="用户名或密码错误")
    previous = _tgc(request)
    if previous:
        state.sessions.pop(previous, None)
    tgt = state.open_session(user)
    if service is not None:
        response = _redirect_with_ticket(
            request, user.member_id, service, from_new_login=True, at=state.clock(), tgt=tgt
        )
    else:
        response = _logged_in_page(request, user)
    response.set_cookie(
        TGC_COOKIE,
        tgt,
        path=_mount_path(request),
        httponly=True,
        samesite="Lax",
        secure=request.secure,
    )
    return response


async def _logout(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    tgt = _tgc(request)
    if tgt and state.sessions.pop(tgt, None) is not None:
        logins = state.validated.pop(tgt, [])
        if request.app[_SINGLE_LOGOUT]:
            await _single_logout(logins, state.clock())
    service = request.query.get("service")
    # A link, not a redirect: the emulator keeps no service registry, so redirecting would be open.
    link = service if service is not None and _is_acceptable_service(service) else None
    response = _render(
        request,
        "sandbox/cas_message.html",
        {"title": "已退出", "message": "您已安全退出统一身份认证。", "link": link, "link_text": "返回应用"},
    )
    response.del_cookie(TGC_COOKIE, path=_mount_path(request))
    return response


async def _service_validate(request: web.Request) -> web.Response:
    # CAS 3.0 (2.5.5) lets /serviceValidate release attributes as well, and Apereo CAS does,
    # so both validation paths answer alike.
    state = request.app[_STATE]
    ticket = request.query.get("ticket", "")
    service = request.query.get("service", "")
    if not ticket or not service:
        return _failure("INVALID_REQUEST", "'ticket' and 'service' parameters are both required")
    requested_format = request.query.get("format", "XML")
    if requested_format.upper() != "XML":
        return _failure("INVALID_REQUEST", f"Format '{requested_format[:32]}' is not supported")
    shown = ticket[:_MAX_TICKET_LENGTH]
    # Single use: the ticket is gone after this attempt, whatever its outcome (CAS 3.1.1).
    issued = state.tickets.pop(ticket, None)
    if issued is None or not ticket.startswith("ST-"):
        return _failure("INVALID_TICKET", f"Ticket '{shown}' not recognized")
    if state.clock() >= issued.expires_at:
        return _failure("INVALID_TICKET", f"Ticket '{shown}' has expired")
    if issued.service != service:
        return _failure(
            "INVALID_SERVICE",
            f"Ticket '{shown}' does not match supplied service. "
            f"The original service was '{issued.service}' and the supplied service was '{service}'.",
        )
    if "renew" in request.query and not issued.from_new_login:
        return _failure("INVALID_TICKET", f"Ticket '{shown}' did not come from an initial login")
    if "pgtUrl" in request.query:
        return _failure("UNAUTHORIZED_SERVICE_PROXY", "The emulator does not issue proxy-granting tickets")
    state.validated.setdefault(issued.tgt, []).append((service, ticket))
    return _success(state.users[issued.member_id], issued)


def _render_login(
    request: web.Request, *, service: str | None, username: str, error: str | None
) -> web.Response:
    users = request.app[_STATE].users.values() if request.app[_SHOW_ACCOUNTS] else ()
    return _render(
        request,
        "sandbox/cas_login.html",
        {
            "action": str(request.app.router[LOGIN_ROUTE].url_for()),
            "service": service,
            "username": username,
            "error": error,
            "accounts": list(users),
        },
    )


def _logged_in_page(request: web.Request, user: CasUser) -> web.Response:
    logout = str(request.app.router[LOGOUT_ROUTE].url_for())
    return _render(
        request,
        "sandbox/cas_message.html",
        {
            "title": "登录成功",
            "message": f"{user.name}（{user.member_id}），您已登录统一身份认证。",
            "link": logout,
            "link_text": "退出登录",
        },
    )


def _unauthorized_service(request: web.Request) -> web.Response:
    return _render(
        request,
        "sandbox/cas_message.html",
        {"title": "应用未授权", "message": "该应用未获授权使用统一身份认证。", "link": None},
        status=400,
    )


def _render(
    request: web.Request, template: str, context: dict[str, Any], *, status: int = 200
) -> web.Response:
    context = {"school": request.app[_SCHOOL], **context}
    response = aiohttp_jinja2.render_template(template, request, context, app_key=_TEMPLATES, status=status)
    response.headers.update(_NO_CACHE)
    return response


def _redirect_with_ticket(
    request: web.Request, member_id: str, service: str, *, from_new_login: bool, at: float, tgt: str
) -> web.Response:
    ticket = request.app[_STATE].issue_ticket(
        member_id, service, from_new_login=from_new_login, authenticated_at=at, tgt=tgt
    )
    return web.Response(status=302, headers={"Location": _with_ticket(service, ticket), **_NO_CACHE})


async def _single_logout(logins: Sequence[tuple[str, str]], now: float) -> None:
    """POST a LogoutRequest to each service that validated a ticket of the ended session."""
    if not logins:
        return
    instant = datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    async with aiohttp.ClientSession(timeout=_LOGOUT_TIMEOUT) as http:
        for service, ticket in logins:
            document = (
                f'<samlp:LogoutRequest xmlns:samlp="{SAML_PROTOCOL}" xmlns:saml="{SAML_ASSERTION}" '
                f'ID="LR-{_random_token(_TICKET_RANDOM_CHARS)}" Version="2.0" IssueInstant="{instant}">'
                "<saml:NameID>@NOT_USED@</saml:NameID>"
                f"<samlp:SessionIndex>{escape(ticket)}</samlp:SessionIndex>"
                "</samlp:LogoutRequest>"
            )
            form = {"logoutRequest": document}
            try:
                async with http.post(service, data=form, allow_redirects=False) as answer:
                    await answer.read()
            except (aiohttp.ClientError, TimeoutError):
                # Best effort, as a CAS server's is: a service that is down keeps its session.
                continue


def _with_ticket(service: str, ticket: str) -> str:
    # Appended by hand so the service's own query comes back byte for byte.
    base, hash_mark, fragment = service.partition("#")
    if "?" not in base:
        joiner = "?"
    elif base.endswith(("?", "&")):
        joiner = ""
    else:
        joiner = "&"
    return f"{base}{joiner}ticket={ticket}{hash_mark}{fragment}"


def _success(user: CasUser, issued: _ServiceTicket) -> web.Response:
    authenticated = datetime.fromtimestamp(issued.authenticated_at, UTC)
    attributes: list[tuple[str, str]] = [
        ("authenticationDate", authenticated.isoformat(timespec="seconds").replace("+00:00", "Z")),
        ("longTermAuthenticationRequestTokenUsed", "false"),
        ("isFromNewLogin", "true" if issued.from_new_login else "false"),
        ("name", user.name),
    ]
    for name, value in user.attributes.items():
        values = [value] if isinstance(value, str) else list(value)
        attributes.extend((name, item) for item in values)
    lines = [
        f'<cas:serviceResponse xmlns:cas="{CAS_NAMESPACE}">',
        "  <cas:authenticationSuccess>",
        f"    <cas:user>{escape(user.member_id)}</cas:user>",
        "    <cas:attributes>",
        *(f"      <cas:{name}>{escape(value)}</cas:{name}>" for name, value in attributes),
        "    </cas:attributes>",
        "  </cas:authenticationSuccess>",
        "</cas:serviceResponse>",
    ]
    return _xml("\n".join(lines))


def _failure(code: str, message: str) -> web.Response:
    clean = _XML_TEXT.sub("\ufffd", message)
    return _xml(
        f'<cas:serviceResponse xmlns:cas="{CAS_NAMESPACE}">\n'
        f'  <cas:authenticationFailure code="{code}">{escape(clean)}</cas:authenticationFailure>\n'
        "</cas:serviceResponse>"
    )


def _xml(document: str) -> web.Response:
    return web.Response(
        text=document + "\n",
        content_type="application/xml",
        charset="utf-8",
        headers={"Cache-Control": "no-store"},
    )


def _is_acceptable_service(service: str) -> bool:
    # Open mode, as a lenient CAS runs it, but only absolute http(s) URLs in plain ASCII:
    # nothing that could turn the redirect into a script, a header split or a relative path.
    if not service or not all("!" <= char <= "~" for char in service):
        return False
    parts = urlsplit(service)
    return parts.scheme in {"http", "https"} and bool(parts.netloc)


def _mount_path(request: web.Request) -> str:
    # The cookie path is as narrow as the mount (CAS protocol 3.6.1), e.g. /sandbox/cas.
    login = str(request.app.router[LOGIN_ROUTE].url_for())
    return login.removesuffix("/login") or "/"


def _tgc(request: web.Request) -> str | None:
    return request.cookies.get(TGC_COOKIE)


def _form_text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _purge(entries: dict[str, _Expiring], now: float) -> None:
    while entries:
        oldest = next(iter(entries))
        if entries[oldest].expires_at > now:
            return
        del entries[oldest]


def _random_token(length: int) -> str:
    return "".join(secrets.choice(_TICKET_ALPHABET) for _ in range(length))


def _check_users(users: Mapping[str, CasUser]) -> None:
    for key, user in users.items():
        if key != user.member_id or not user.member_id.strip():
            raise ValueError(f"user key {key!r} does not match its member_id")
        texts = [user.member_id, user.name]
        for name, value in user.attributes.items():
            if not _XML_NAME.match(name) or name in _RESERVED_ATTRIBUTES:
                raise ValueError(f"attribute name {name!r} of {key!r} cannot be released")
            texts.extend([value] if isinstance(value, str) else value)
        if any(_XML_TEXT.search(text) for text in texts):
            raise ValueError(f"user {key!r} holds characters that XML cannot carry")
