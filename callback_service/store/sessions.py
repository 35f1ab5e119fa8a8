"""The students' sessions as the store keeps them: the record, its keys, and each student's index.

The pages (callback_service.web.pages.session) open and read sessions through their cookies; the
personal-data commands (callback_service.ops.personal_data) list and end a student's sessions here,
without the pages.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Collection
from dataclasses import dataclass
from typing import Final

from callback_service.store.common import stored_phone
from handlers.core.phone import Phone
from handlers.usecases.contracts import KeyValueStore, SessionsStore

KEY_PREFIX: Final = "session:"
# Each student's session keys, so that a data erasure can end them (kv has no listing by prefix).
INDEX_PREFIX: Final = "sessions-of:"
INDEX_TTL: Final = 7 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Session:
    """A student's session: who CAS said they are, the CSRF token of their forms, and what the
    pages keep for them (a phone typed into a form that expired, a phone that 2.1 refused).

    draft_phone is text as the student typed it, to show in the form again, and need not be a
    phone yet: it is parsed when the form is sent, like any typed phone.
    """

    sid: str
    member_id: str
    csrf: str
    name: str | None = None
    cas_mobile: Phone | None = None
    expires_at: float = float("inf")
    former_csrf: str | None = None
    draft_phone: str | None = None
    refused_phone: Phone | None = None

    def to_json(self) -> str:
        """The data as stored (the id is the key, not part of the value)."""
        return json.dumps({name: getattr(self, name) for name in _STORED})

    @classmethod
    def from_json(cls, sid: str, raw: str) -> Session | None:
        """The session stored under sid, or None when the value is not one of ours."""
        try:
            data = json.loads(raw)
            member_id, csrf, expires_at = data["member_id"], data["csrf"], data.get("expires_at")
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        if not (isinstance(member_id, str) and member_id and isinstance(csrf, str) and csrf):
            return None
        texts = {name: text if isinstance(text := data.get(name), str) else None for name in _OPTIONAL_TEXTS}
        return cls(
            sid=sid,
            member_id=member_id,
            csrf=csrf,
            expires_at=float(expires_at) if isinstance(expires_at, int | float) else 0.0,
            name=texts["name"],
            cas_mobile=stored_phone(texts["cas_mobile"], member_id=member_id, record="session's CAS"),
            former_csrf=texts["former_csrf"],
            draft_phone=texts["draft_phone"],
            refused_phone=stored_phone(texts["refused_phone"], member_id=member_id, record="session's 2.1"),
        )

    def csrf_ok(self, token: str | None) -> bool:
        """True when a form's token is this session's, compared in constant time."""
        return token is not None and hmac.compare_digest(token.encode(), self.csrf.encode())

    def former_csrf_ok(self, token: str | None) -> bool:
        """True when a form's token is that of this browser's previous login of the same student."""
        former = self.former_csrf
        if token is None or former is None:
            return False
        return hmac.compare_digest(token.encode(), former.encode())

    def live(self, now: float) -> bool:
        """Whether the login still holds (after it, the session keeps only what the pages saved)."""
        return now < self.expires_at


_OPTIONAL_TEXTS: Final = ("name", "cas_mobile", "former_csrf", "draft_phone", "refused_phone")
_STORED: Final = ("member_id", "csrf", "expires_at", *_OPTIONAL_TEXTS)


async def session_index(kv: SessionsStore, member_id: str, ended: Collection[str]) -> tuple[str, list[str]]:
    """The student's index key and the session keys it lists that are still open, less those ending."""
    # Read here, written by the caller: two logins of one student at the same instant may keep only
    # one key, and then the other session escapes an erasure until it expires (session_ttl after
    # its last use).
    index = INDEX_PREFIX + member_id
    listed = [k for k in _keys(await kv.kv_get(index)) if k not in ended]
    open_now = await kv.kv_get_many(listed)
    return index, [k for k, raw in zip(listed, open_now, strict=True) if raw is not None]


def _keys(raw: str | None) -> list[str]:
    try:
        value = json.loads(raw) if raw else []
    except ValueError:
        return []
    return [key for key in value if isinstance(key, str)] if isinstance(value, list) else []


async def sessions_of(kv: KeyValueStore, member_id: str) -> list[Session]:
    """The student's open sessions (for a data request's export)."""
    found = []
    for key in _keys(await kv.kv_get(INDEX_PREFIX + member_id)):
        raw = await kv.kv_get(key)
        session = None if raw is None else Session.from_json("", raw)
        if session is not None and session.member_id == member_id:
            found.append(session)
    return found


async def end_sessions_of(kv: KeyValueStore, member_id: str) -> int:
    """End every open session of the student (a data erasure); return how many were open."""
    ended = 0
    for key in _keys(await kv.kv_pop(INDEX_PREFIX + member_id)):
        if await kv.kv_pop(key) is not None:
            ended += 1
    return ended
