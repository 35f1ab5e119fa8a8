"""The students' sessions: data kept server-side in the store, a random id in a signed cookie.

The cookie holds `{id}.{signature}`, the signature an HMAC of the id under the session secret, so
a forged or altered cookie is no session at all. The store keeps the data under a hash of the id,
with a time to live that each save renews. The id is replaced after the CAS ticket check, so a
session id planted before the login is worth nothing afterwards.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from handlers.contracts import KeyValueStore

COOKIE: Final = "wecom_bind_session"
_KEY_PREFIX: Final = "session:"
_ID_BYTES: Final = 32
_MAX_COOKIE: Final = 200


@dataclass(frozen=True, slots=True)
class Session:
    """A logged-in student's session: who CAS said they are, and the CSRF token of their forms."""

    sid: str
    student_id: str
    csrf: str
    name: str | None = None
    cas_mobile: str | None = None

    def to_json(self) -> str:
        """The data as stored (the id is the key, not part of the value)."""
        return json.dumps(
            {
                "student_id": self.student_id,
                "csrf": self.csrf,
                "name": self.name,
                "cas_mobile": self.cas_mobile,
            }
        )

    @classmethod
    def from_json(cls, sid: str, raw: str) -> Session | None:
        """The session stored under sid, or None when the value is not one of ours."""
        try:
            data = json.loads(raw)
            student_id, csrf = data["student_id"], data["csrf"]
            name, cas_mobile = data.get("name"), data.get("cas_mobile")
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        if not (isinstance(student_id, str) and student_id and isinstance(csrf, str) and csrf):
            return None
        return cls(
            sid=sid,
            student_id=student_id,
            csrf=csrf,
            name=name if isinstance(name, str) else None,
            cas_mobile=cas_mobile if isinstance(cas_mobile, str) else None,
        )

    def csrf_ok(self, token: str | None) -> bool:
        """True when a form's token is this session's, compared in constant time."""
        return token is not None and hmac.compare_digest(token.encode(), self.csrf.encode())


class SessionStore:
    """Loads, saves, rotates and ends sessions; the cookie is HttpOnly, SameSite=Lax, Secure on https."""

    def __init__(
        self,
        *,
        kv: KeyValueStore,
        secret: str,
        secure: bool,
        ttl: float,
        token: Callable[[int], str] = secrets.token_urlsafe,
    ) -> None:
        self._kv = kv
        self._key = hashlib.sha256(b"wecom-bind session cookie\0" + secret.encode()).digest()
        self._secure = secure
        self._ttl = ttl
        self._token = token

    def new_token(self) -> str:
        """A fresh unguessable token (session ids, CSRF tokens, form ids)."""
        return self._token(_ID_BYTES)

    async def load(self, request: web.Request) -> Session | None:
        """The request's session, or None when the cookie is missing, forged or expired."""
        sid = self._unsign(request.cookies.get(COOKIE))
        if sid is None:
            return None
        raw = await self._kv.kv_get(self._store_key(sid))
        return None if raw is None else Session.from_json(sid, raw)

    async def start(
        self,
        response: web.StreamResponse,
        *,
        previous: Session | None,
        student_id: str,
        name: str | None,
        cas_mobile: str | None,
    ) -> Session:
        """Open a session under a new id for a student just logged in, ending any previous one."""
        if previous is not None:
            await self._kv.kv_delete(self._store_key(previous.sid))
        session = Session(
            sid=self.new_token(),
            student_id=student_id,
            csrf=self.new_token(),
            name=name,
            cas_mobile=cas_mobile,
        )
        await self.save(session, response)
        return session

    async def save(self, session: Session, response: web.StreamResponse) -> None:
        """Store the session and (re)send its cookie, renewing its time to live."""
        await self._kv.kv_set(self._store_key(session.sid), session.to_json(), ttl=self._ttl)
        response.set_cookie(
            COOKIE,
            self._sign(session.sid),
            max_age=int(self._ttl),
            path="/",
            httponly=True,
            samesite="Lax",
            secure=self._secure,
        )

    async def end(self, session: Session | None, response: web.StreamResponse) -> None:
        """Forget the session and clear its cookie."""
        if session is not None:
            await self._kv.kv_delete(self._store_key(session.sid))
        response.del_cookie(COOKIE, path="/", httponly=True, samesite="Lax", secure=self._secure)

    def _sign(self, sid: str) -> str:
        return f"{sid}.{self._mac(sid)}"

    def _unsign(self, value: str | None) -> str | None:
        if not value or len(value) > _MAX_COOKIE:
            return None
        sid, _, mac = value.rpartition(".")
        if not sid or not hmac.compare_digest(mac.encode(), self._mac(sid).encode()):
            return None
        return sid

    def _mac(self, sid: str) -> str:
        digest = hmac.new(self._key, sid.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    @staticmethod
    def _store_key(sid: str) -> str:
        # A leaked store dump shows hashes, not ids that would open the sessions.
        return _KEY_PREFIX + hashlib.sha256(sid.encode()).hexdigest()
