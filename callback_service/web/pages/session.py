"""The students' sessions: data kept server-side in the store, a random id in a signed cookie.

The cookie holds `{id}.{signature}`, the signature an HMAC of the id under the session secret, so
a forged or altered cookie is no session at all. The store keeps the data under a hash of the id.
The id is replaced after the CAS ticket check, so a session id planted before the login is worth
nothing afterwards.

A login lasts `ttl`; the data and the cookie are kept `keep` longer, logged out, so that a phone
typed into a form that outlived its login survives the next login of the same student in the same
browser. The CAS ticket of each login indexes its session, for CAS single logout.

A login started at /bind stores nothing: its cookie holds `{nonce}.{issued}.{signature}`, and the
CAS service URL carries `state`, a MAC of the nonce, so that only the browser holding the cookie can
present a ticket minted for that service URL (CAS binds a ticket to the exact service URL).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from callback_service.store.sessions import INDEX_TTL as _INDEX_TTL
from callback_service.store.sessions import KEY_PREFIX as _KEY_PREFIX
from callback_service.store.sessions import Session
from callback_service.store.sessions import session_index as _session_index
from handlers.core.phone import Phone
from handlers.usecases.contracts import SessionsStore

__all__ = ["COOKIE", "DEFAULT_KEEP", "SESSIONS", "Login", "Session", "SessionStore"]

COOKIE: Final = "wecom_bind_session"
_TICKET_PREFIX: Final = "session-of-ticket:"
DEFAULT_KEEP: Final = 24 * 3600.0
_ID_BYTES: Final = 32
_MAX_COOKIE: Final = 200
DEFAULT_LOGIN_WINDOW: Final = 10 * 60.0
# Domain separation: a session id's MAC never doubles as a login's, nor a login's as its state.
_LOGIN_COOKIE_MAC: Final = "login-cookie\0"
_LOGIN_STATE_MAC: Final = "login-state\0"
_USED_LOGIN_PREFIX: Final = "cas-login-used:"
# Behind a load balancer the login may start on one machine and come back to another.
_CLOCK_SKEW: Final = 60.0


@dataclass(frozen=True, slots=True)
class Login:
    """A CAS login started at /bind: the cookie that ties it to the browser, and the state that its
    service URL carries (a MAC of the cookie's nonce, so the URL does not show the cookie)."""

    cookie: str
    state: str

    def state_ok(self, state: str) -> bool:
        """True when a returning URL's state is this login's, compared in constant time."""
        return state.isascii() and hmac.compare_digest(state.encode(), self.state.encode())


class SessionStore:
    """Loads, saves, rotates and ends sessions; the cookie is HttpOnly, SameSite=Lax, Secure on https.

    The admin console keeps its own sessions with the same code: another scope (its own signing key
    and store keys, so that no student's cookie is an administrator's), cookie name, path and SameSite.
    """

    def __init__(
        self,
        *,
        kv: SessionsStore,
        secret: str,
        secure: bool,
        ttl: float,
        keep: float = DEFAULT_KEEP,
        login_window: float = DEFAULT_LOGIN_WINDOW,
        clock: Callable[[], float] = time.time,
        token: Callable[[int], str] = secrets.token_urlsafe,
        scope: str = "",
        cookie: str = COOKIE,
        path: str = "/",
        samesite: str = "Lax",
    ) -> None:
        self._kv = kv
        label = f"wecom-bind {scope} session cookie" if scope else "wecom-bind session cookie"
        self._key = hashlib.sha256(label.encode() + b"\0" + secret.encode()).digest()
        self._prefix = f"{scope}-{_KEY_PREFIX}" if scope else _KEY_PREFIX
        self._cookie = cookie
        self._path = path
        self._samesite = samesite
        self._secure = secure
        self._ttl = ttl
        self._keep = keep
        self._login_window = login_window
        self._clock = clock
        self._token = token

    def new_token(self) -> str:
        """A fresh unguessable token (session ids, CSRF tokens, form ids)."""
        return self._token(_ID_BYTES)

    def new_login(self) -> Login:
        """A login for /bind to start: its cookie and the state of its CAS service URL; nothing is stored."""
        nonce = self.new_token()
        body = f"{nonce}.{int(self._clock())}"
        return Login(cookie=f"{body}.{self._mac(_LOGIN_COOKIE_MAC + body)}", state=self._login_state(nonce))

    def login_of(self, cookie: str | None) -> Login | None:
        """The login a cookie set by new_login vouches for; None when missing, forged or older than
        the login window."""
        if not cookie or len(cookie) > _MAX_COOKIE or not cookie.isascii():
            return None
        body, _, mac = cookie.rpartition(".")
        nonce, _, issued = body.partition(".")
        if not nonce or not issued.isdigit() or len(issued) > 12:
            return None
        if not hmac.compare_digest(mac.encode(), self._mac(_LOGIN_COOKIE_MAC + body).encode()):
            return None
        if not -_CLOCK_SKEW <= self._clock() - int(issued) <= self._login_window:
            return None
        return Login(cookie=cookie, state=self._login_state(nonce))

    def used_login_key(self, login: Login) -> str:
        """The store key that marks a login used, once CAS has come back to it (it opens one session)."""
        return _USED_LOGIN_PREFIX + hashlib.sha256(login.cookie.encode()).hexdigest()

    def _login_state(self, nonce: str) -> str:
        return self._mac(_LOGIN_STATE_MAC + nonce)

    async def load(self, request: web.Request) -> Session | None:
        """The request's logged-in session, or None when the cookie is missing, forged or expired."""
        session = await self.load_kept(request)
        return session if session is not None and session.live(self._clock()) else None

    async def load_kept(self, request: web.Request) -> Session | None:
        """The request's session even when its login has expired (its data is kept a while longer)."""
        sid = self._unsign(request.cookies.get(self._cookie))
        if sid is None:
            return None
        raw = await self._kv.kv_get(self._store_key(sid))
        return None if raw is None else Session.from_json(sid, raw)

    async def start(
        self,
        response: web.StreamResponse,
        *,
        previous: Session | None,
        member_id: str,
        name: str | None,
        cas_mobile: Phone | None,
        ticket: str | None = None,
        sets: Mapping[str, tuple[str, float]] | None = None,
        deletes: Collection[str] = (),
        if_absent: Collection[str] = (),
    ) -> Session | None:
        """Open a session under a new id for a student just logged in, ending any previous one.

        What the pages kept for the same student in this browser's previous session (a typed phone,
        a refused phone, its CSRF token for a form still open) comes along; another student's does not.
        The caller's own entries (sets, deletes) change in the same atomic step, which happens only
        when every key of if_absent is absent: otherwise nothing changes, no cookie is sent, and the
        answer is None.
        """
        same = previous is not None and previous.member_id == member_id
        session = Session(
            sid=self.new_token(),
            member_id=member_id,
            csrf=self.new_token(),
            name=name,
            cas_mobile=cas_mobile,
            expires_at=self._clock() + self._ttl,
            former_csrf=previous.csrf if same and previous is not None else None,
            draft_phone=previous.draft_phone if same and previous is not None else None,
            refused_phone=previous.refused_phone if same and previous is not None else None,
        )
        key = self._store_key(session.sid)
        remaining = self._remaining(session)
        changes = dict(sets or {})
        changes[key] = (session.to_json(), remaining)
        if ticket is not None:
            changes[self._ticket_key(ticket)] = (key, self._ttl + self._keep)
        ended = [] if previous is None else [self._store_key(previous.sid)]
        index, keys = await _session_index(self._kv, member_id, ended)
        changes[index] = (json.dumps([*keys, key]), _INDEX_TTL)
        if not await self._kv.kv_apply(changes, deletes=[*deletes, *ended], if_absent=if_absent):
            return None
        self._set_cookie(response, session, remaining)
        return session

    async def save(self, session: Session, response: web.StreamResponse) -> None:
        """Store the session and (re)send its cookie, both kept until `keep` after the login ends."""
        remaining = self._remaining(session)
        await self._kv.kv_set(self._store_key(session.sid), session.to_json(), ttl=remaining)
        self._set_cookie(response, session, remaining)

    def _remaining(self, session: Session) -> float:
        return max(0.0, min(session.expires_at - self._clock(), self._ttl)) + self._keep

    def _set_cookie(self, response: web.StreamResponse, session: Session, remaining: float) -> None:
        response.set_cookie(
            self._cookie,
            self._sign(session.sid),
            max_age=int(remaining),
            path=self._path,
            httponly=True,
            samesite=self._samesite,
            secure=self._secure,
        )

    async def end(self, session: Session | None, response: web.StreamResponse) -> None:
        """Forget the session and clear its cookie."""
        if session is not None:
            await self._kv.kv_delete(self._store_key(session.sid))
        response.del_cookie(
            self._cookie, path=self._path, httponly=True, samesite=self._samesite, secure=self._secure
        )

    async def opened_by(self, session: Session, ticket: str) -> bool:
        """Whether this CAS ticket's login opened this session (a page reloaded after the login)."""
        return await self._kv.kv_get(self._ticket_key(ticket)) == self._store_key(session.sid)

    async def end_by_ticket(self, ticket: str) -> bool:
        """End the session that the login with this CAS ticket opened (CAS single logout)."""
        key = await self._kv.kv_pop(self._ticket_key(ticket))
        if key is None or not key.startswith(self._prefix):
            return False
        await self._kv.kv_delete(key)
        return True

    def _sign(self, sid: str) -> str:
        return f"{sid}.{self._mac(sid)}"

    def _unsign(self, value: str | None) -> str | None:
        # aiohttp decodes a header's bytes that are not UTF-8 to surrogates: no id of ours holds them.
        if not value or len(value) > _MAX_COOKIE or not value.isascii():
            return None
        sid, _, mac = value.rpartition(".")
        if not sid or not hmac.compare_digest(mac.encode(), self._mac(sid).encode()):
            return None
        return sid

    def _mac(self, sid: str) -> str:
        digest = hmac.digest(self._key, sid.encode(), "sha256")  # OpenSSL's one-shot HMAC
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    @staticmethod
    def _ticket_key(ticket: str) -> str:
        return _TICKET_PREFIX + hashlib.sha256(ticket.encode()).hexdigest()

    def _store_key(self, sid: str) -> str:
        # A leaked store dump shows hashes, not ids that would open the sessions.
        return self._prefix + hashlib.sha256(sid.encode()).hexdigest()


SESSIONS: Final = web.AppKey("sessions", SessionStore)
"""The students' sessions, opened at start."""
