"""The async WeCom API client: one instance per secret, its access token cached in the shared store.

The token lives in the store under a key derived from a hash of the corp id and the secret (never
the secret itself), so every instance of the service shares it. It is refreshed once, under a
store lock, before it expires: one caller fetches while the others keep using the still-valid
token, or wait and re-read the cache when there is none. A call answered 40014/42001 drops the
token, fetches another and is retried once; 40001 and the other configuration errors are raised at
once, typed, with their remedy. Errcodes -1, 45033, HTTP 5xx, timeouts and connection failures are
retried with jittered exponential backoff, bounded in attempts and in total time; 45009 is not.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
from aiohttp import web

from callback_service.clients.budget import CallBudget
from handlers.core.phone import mask_phone
from handlers.core.wecom_errors import (
    ApiForbidden,
    AppUntrustedIp,
    ConfigurationError,
    ContactsUntrustedAddress,
    ContactsUntrustedIp,
    InvalidCode,
    InvalidCorpId,
    InvalidSecret,
    MobileExists,
    MobileInvalid,
    MobileNotFound,
    OutsideVisibleRange,
    RateLimited,
    UserIdExists,
    UserNotFound,
    WeComError,
    WeComRefusal,
    WeComUnanswered,
    WeComUnavailable,
    WrongAgent,
    error_for,
)
from handlers.usecases.contracts import KeyValueStore

log: Final = logging.getLogger(__name__)

RETRIABLE_ERRCODES: Final = frozenset({-1, 45033})
"""System busy, concurrency limit: worth another try after a pause. 45009 is not: WeCom blocks the
caller for a minute or an hour (developer.work.weixin.qq.com/document/path/90312), so it is raised
at once as RateLimited, and the caller (a student's page, an inbox worker) decides when to try again."""
TOKEN_ERRCODES: Final = frozenset({40014, 42001})
"""Invalid or expired access_token: drop it, fetch another, retry the call once."""
# An address trusted by the contacts-sync assistant after 2022-08-15 gets 48009 from user/get while
# its writes work (developer.work.weixin.qq.com/document/path/90196): that 48009 refuses the read,
# not the secret (ContactsThenApp reads with the app's then), so readiness does not report it.
_MEMBER_READ: Final = "user/get"

__all__ = [
    "ApiForbidden",
    "AppUntrustedIp",
    "ConfigurationError",
    "ContactsUntrustedAddress",
    "ContactsUntrustedIp",
    "InvalidCode",
    "InvalidCorpId",
    "InvalidSecret",
    "MobileExists",
    "MobileInvalid",
    "MobileNotFound",
    "OutsideVisibleRange",
    "RateLimited",
    "TokenProbe",
    "UserIdExists",
    "UserNotFound",
    "WeComClient",
    "WeComError",
    "WeComMember",
    "WeComRefusal",
    "WeComUnanswered",
    "WeComUnavailable",
    "WrongAgent",
    "error_for",
]


@dataclass(frozen=True, slots=True)
class WeComMember:
    """A member as user/get returns it; mobile is None when WeCom holds none or hid it (mobile_shown)."""

    userid: str
    name: str
    mobile: str | None
    department: tuple[int, ...]
    status: int
    raw: Mapping[str, Any] = field(repr=False, compare=False)
    mobile_shown: bool = True


@dataclass(frozen=True, slots=True)
class DeptUser:
    """One row of user/list_id: a member in one department."""

    userid: str
    department: int


@dataclass(frozen=True, slots=True)
class OAuthIdentity:
    """Who an OAuth code belongs to: a member's userid, or the openid of a WeChat that is not one."""

    userid: str | None
    openid: str | None


@dataclass(frozen=True, slots=True)
class TfaInfo:
    """What auth/get_tfa_info says: the member, and the code that admits it once (five minutes)."""

    userid: str
    tfa_code: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class InviteResult:
    """What batch/invite could not invite."""

    invalid_users: tuple[str, ...]
    invalid_parties: tuple[int, ...]
    invalid_tags: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class SendResult:
    """A sent message's id and the recipients WeCom refused."""

    msgid: str
    invalid_users: tuple[str, ...]


class _Transient(Exception):
    """A failure worth retrying; `errcode`/`reason` describe it for the final error.

    answered: WeCom answered (busy, with an errcode) and so did nothing; otherwise the request may
    have reached WeCom and its answer was lost (a timeout, a 5xx, a dropped connection).
    """

    def __init__(self, errcode: int, reason: str, *, answered: bool = False) -> None:
        super().__init__(reason)
        self.errcode = errcode
        self.reason = reason
        self.answered = answered


ApiObserver = Callable[[str, int, float], None]
"""Told of each WeCom API request: the endpoint, its errcode (-1: no answer) and the seconds it took."""


class WeComClient:
    """Calls the WeCom API with one secret (the app's, or the contacts-sync one: contacts=True)."""

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        api_base: str,
        corp_id: str,
        secret: str,
        store: KeyValueStore,
        clock: Callable[[], float] = time.time,
        timeout: float = 5.0,
        max_attempts: int = 4,
        max_retry_time: float = 10.0,
        base_delay: float = 0.2,
        max_delay: float = 2.0,
        jitter: Callable[[], float] = random.random,
        refresh_margin: float = 300.0,
        lock_lease: float = 30.0,
        lock_poll: float = 0.05,
        timer: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        observe: ApiObserver | None = None,
        contacts: bool = False,
        budget: CallBudget | None = None,
    ) -> None:
        if not secret:
            raise InvalidSecret(40001, "empty secret")
        if max_attempts < 1 or max_retry_time <= 0 or timeout <= 0:
            raise ValueError("max_attempts, max_retry_time and timeout must be positive")
        self._session = session
        self._base = api_base.rstrip("/") + "/cgi-bin/"
        self._corp_id = corp_id
        self._secret = secret
        self._store = store
        self._clock = clock
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_attempts = max_attempts
        self._max_retry_time = max_retry_time
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._jitter = jitter
        self._refresh_margin = refresh_margin
        self._lock_lease = lock_lease
        self._lock_poll = lock_poll
        self._timer = timer
        self._sleep = sleep
        self._observe = observe
        self._contacts = contacts
        self._budget = budget
        digest = hashlib.sha256(f"{corp_id}\0{secret}".encode()).hexdigest()[:32]
        self._cache_key = f"wecom:token:{digest}"
        self._lock_name = f"wecom:token-refresh:{digest}"
        # What the log and repr name this secret by: a short tag of the hash. The whole digest is a
        # store key, not a log field: 32 hex digits hold a run of 11 decimal digits often enough (about
        # one fetch in fifty) for the log's phone masking to take it for a phone.
        self._tag = f"{'contacts' if contacts else 'app'} secret {digest[:8]}"
        self._local = asyncio.Lock()
        self._refused: tuple[float, ConfigurationError] | None = None
        # The store's token as this process last saw it: a call does not read the store again until
        # its refresh time. WeCom repeats a live token to every instance that asks, and an instance
        # holding one that another dropped hears 40014 or 42001 and reads the store's new one.
        self._held: _CachedToken | None = None

    def __repr__(self) -> str:
        return f"WeComClient(corp_id={self._corp_id!r}, {self._tag})"

    def refusal(self, *, since: float) -> ConfigurationError | None:
        """The configuration error that refused this secret's last call, if it came after since."""
        if self._refused is None or self._refused[0] < since:
            return None
        return self._refused[1]

    @property
    def cache_key(self) -> str:
        """The store key of this secret's token (a hash; it never contains the secret)."""
        return self._cache_key

    # the API

    async def user_get(self, userid: str) -> WeComMember:
        """user/get: a member of the contacts."""
        data = await self._call("GET", "user/get", params={"userid": userid})
        mobile = data.get("mobile")
        department = data.get("department")
        departments = [d for d in department if isinstance(d, int)] if isinstance(department, list) else []
        return WeComMember(
            userid=str(data.get("userid", userid)),
            name=str(data.get("name", "")),
            mobile=mobile if isinstance(mobile, str) and mobile else None,
            department=tuple(departments),
            status=int(data.get("status", 0)),
            # Hidden from an app since 2022-06-20 (developer.work.weixin.qq.com/document/path/90196):
            # unknown, not empty, whether the key is absent or "" (nothing in WeCom's documents
            # promises absent, and a hidden gender comes as 0). The contacts-sync assistant, where
            # WeCom lets it read members at all (an address trusted before 2022-08-15), reads every
            # field: its "" is a member without a mobile.
            mobile_shown="mobile" in data and (self._contacts or bool(mobile)),
            raw=data,
        )

    async def user_getuserid(self, mobile: str) -> str:
        """user/getuserid (document/path/95402): the member holding this mobile; MobileNotFound (46004)
        when none does, or none inside the app's visible range. WeCom bars the API for a day once its
        misses exceed 20% of the organisation's member cap: callers count their misses."""
        data = await self._call("POST", "user/getuserid", json_body={"mobile": mobile})
        userid = data.get("userid")
        if not isinstance(userid, str) or not userid:
            raise WeComUnavailable(-1, "user/getuserid answered without a userid")
        return userid

    async def user_create(
        self,
        *,
        userid: str,
        name: str,
        department: Sequence[int],
        mobile: str | None = None,
        main_department: int | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """user/create (contacts secret): MobileExists, UserIdExists or MobileInvalid when refused."""
        body: dict[str, Any] = {
            **(extra or {}), "userid": userid, "name": name, "department": list(department)
        }
        if mobile is not None:
            body["mobile"] = mobile
        if main_department is not None:
            body["main_department"] = main_department
        log.info("wecom: creating member %s (mobile %s)", userid, mask_phone(mobile) if mobile else "-")
        await self._call("POST", "user/create", json_body=body)

    async def user_update(
        self,
        userid: str,
        *,
        mobile: str | None = None,
        name: str | None = None,
        department: Sequence[int] | None = None,
        new_userid: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """user/update (contacts secret): only the given fields change; mobile="" clears the mobile."""
        body: dict[str, Any] = {**(extra or {}), "userid": userid}
        if mobile is not None:
            body["mobile"] = mobile
        if name is not None:
            body["name"] = name
        if department is not None:
            body["department"] = list(department)
        if new_userid is not None:
            body["new_userid"] = new_userid
        log.info(
            "wecom: updating member %s (mobile %s)",
            userid,
            "unchanged" if mobile is None else (mask_phone(mobile) if mobile else "cleared"),
        )
        await self._call("POST", "user/update", json_body=body)

    async def user_delete(self, userid: str) -> None:
        """user/delete (contacts secret)."""
        await self._call("GET", "user/delete", params={"userid": userid})

    async def user_list_id(self, *, limit: int = 10000) -> AsyncIterator[DeptUser]:
        """user/list_id (contacts secret): every (member, department), page by page through the cursor."""
        cursor = ""
        while True:
            rows, next_cursor = await self.user_list_page(cursor, limit=limit)
            for row in rows:
                yield row
            if not next_cursor or next_cursor == cursor:
                return
            cursor = next_cursor

    async def user_list_page(self, cursor: str, *, limit: int = 10000) -> tuple[list[DeptUser], str]:
        """One page of user/list_id (document/path/96067) from the cursor ("" first), and the next
        cursor ("" after the last page)."""
        body: dict[str, Any] = {"limit": limit}
        if cursor:
            body["cursor"] = cursor
        data = await self._call("POST", "user/list_id", json_body=body)
        rows = data.get("dept_user")
        page = [
            DeptUser(userid=row["userid"], department=int(row.get("department", 0)))
            for row in (rows if isinstance(rows, list) else [])
            if isinstance(row, dict) and isinstance(row.get("userid"), str)
        ]
        next_cursor = data.get("next_cursor")
        return page, next_cursor if isinstance(next_cursor, str) else ""

    async def convert_to_openid(self, userid: str) -> str:
        """user/convert_to_openid: the openid of the WeChat that follows as this member."""
        data = await self._call("POST", "user/convert_to_openid", json_body={"userid": userid})
        openid = data.get("openid")
        if not isinstance(openid, str) or not openid:
            raise WeComError(-1, "convert_to_openid answered without an openid")
        return openid

    async def get_user_info(self, code: str) -> OAuthIdentity:
        """auth/getuserinfo: resolve a single-use OAuth code; InvalidCode when it is spent.

        The admission page asks it with the contacts-sync secret, as second verification's calls
        are made (docs/wecom-setup.md, second verification).
        """
        data = await self._call("GET", "auth/getuserinfo", params={"code": code})
        userid = data.get("userid") or data.get("UserId")
        openid = data.get("openid") or data.get("OpenId")
        return OAuthIdentity(
            userid=userid if isinstance(userid, str) and userid else None,
            openid=openid if isinstance(openid, str) and openid else None,
        )

    async def batch_invite(
        self, *, users: Sequence[str] = (), parties: Sequence[int] = (), tags: Sequence[int] = ()
    ) -> InviteResult:
        """batch/invite: invite members to join; returns who could not be invited."""
        body = {"user": list(users), "party": list(parties), "tag": list(tags)}
        data = await self._call("POST", "batch/invite", json_body=body)
        return InviteResult(
            invalid_users=tuple(str(u) for u in _list(data.get("invaliduser"))),
            invalid_parties=tuple(int(p) for p in _list(data.get("invalidparty"))),
            invalid_tags=tuple(int(t) for t in _list(data.get("invalidtag"))),
        )

    async def send_text(
        self, touser: Sequence[str], content: str, *, agent_id: int, duplicate_check: bool = False
    ) -> SendResult:
        """message/send (app secret): a text message to members; duplicate_check: WeCom drops a repeat."""
        body: dict[str, Any] = {
            "touser": "|".join(touser), "msgtype": "text", "agentid": agent_id, "text": {"content": content}
        }
        if duplicate_check:
            # WeCom drops the same message to the same members within the interval (default 1800 s,
            # developer.work.weixin.qq.com/document/path/90236): a retry after a timeout is sent once.
            body["enable_duplicate_check"] = 1
        data = await self._call("POST", "message/send", json_body=body)
        invalid = data.get("invaliduser")
        return SendResult(
            msgid=str(data.get("msgid", "")),
            invalid_users=tuple(u for u in invalid.split("|") if u) if isinstance(invalid, str) else (),
        )

    async def auth_succ(self, userid: str) -> None:
        """user/authsucc (contacts secret): admit a member after second verification (二次验证)."""
        await self._call("GET", "user/authsucc", params={"userid": userid})

    async def get_tfa_info(self, code: str) -> TfaInfo:
        """auth/get_tfa_info: the member a verification page's code is for, and its single-use tfa_code."""
        data = await self._call("POST", "auth/get_tfa_info", json_body={"code": code})
        userid = data.get("userid")
        tfa_code = data.get("tfa_code")
        if not isinstance(userid, str) or not userid or not isinstance(tfa_code, str) or not tfa_code:
            raise WeComUnavailable(-1, "get_tfa_info answered without a userid and tfa_code")
        return TfaInfo(userid=userid, tfa_code=tfa_code)

    async def tfa_succ(self, userid: str, tfa_code: str) -> None:
        """user/tfa_succ: admit the member with the tfa_code of its verification (the newer 二次验证)."""
        await self._call("POST", "user/tfa_succ", json_body={"userid": userid, "tfa_code": tfa_code})

    # the access token

    async def access_token(self) -> str:
        """The current access token, from the store, fetched once when none is valid."""
        held = self._held
        if held is not None and self._clock() < held.refresh_at:
            return held.token
        cached = await self._read_cache()
        now = self._clock()
        if cached is not None and now < cached.refresh_at:
            return cached.token
        return await self._refresh(stale=None)

    async def drop_token(self, token: str) -> None:
        """Forget the cached token if it is still this one (WeCom said it is invalid or expired)."""
        if self._held is not None and self._held.token == token:
            self._held = None
        cached = await self._read_cache()
        if cached is not None and cached.token == token:
            await self._store.kv_delete(self._cache_key)

    async def _refresh(self, *, stale: str | None) -> str:
        # One coroutine per process goes to the store lock; the others wait here and re-read.
        async with self._local:
            deadline = self._timer() + self._lock_lease
            while True:
                cached = await self._read_cache()
                now = self._clock()
                usable = cached is not None and cached.token != stale and now < cached.expires_at
                if cached is not None and usable and now < cached.refresh_at:
                    return cached.token
                owner = await self._store.lock_acquire(self._lock_name, lease=self._lock_lease)
                if owner is not None:
                    try:
                        return await self._fetch_under_lock(stale)
                    finally:
                        await self._store.lock_release(self._lock_name, owner)
                if cached is not None and usable:
                    # Another instance is refreshing; the current token is still valid meanwhile.
                    return cached.token
                if self._timer() >= deadline:
                    raise WeComUnavailable(-1, "gave up waiting for another instance to fetch the token")
                await self._sleep(self._lock_poll)

    async def _fetch_under_lock(self, stale: str | None) -> str:
        # Someone may have refreshed between our read and our lock.
        cached = await self._read_cache()
        now = self._clock()
        if cached is not None and cached.token != stale and now < cached.refresh_at:
            return cached.token
        query = {"corpid": self._corp_id, "corpsecret": self._secret}
        data = await self._with_retries(
            "gettoken", functools.partial(self._request, "GET", "gettoken", query, None)
        )
        token = data.get("access_token")
        expires_in = data.get("expires_in")
        if not isinstance(token, str) or not token or not isinstance(expires_in, int) or expires_in <= 0:
            raise WeComUnavailable(-1, "gettoken answered without a token")
        now = self._clock()
        expires_at = now + expires_in
        margin = min(self._refresh_margin, expires_in / 2)
        # WeCom repeats a live token; once it hands back the one we hold, refreshing early again
        # would only return it again, so it is kept until it expires.
        refresh_at = expires_at if cached is not None and token == cached.token else expires_at - margin
        await self._store.kv_set(
            self._cache_key,
            json.dumps({"token": token, "expires_at": expires_at, "refresh_at": refresh_at}),
            ttl=expires_in,
        )
        self._held = _CachedToken(token, expires_at, refresh_at)
        log.info("wecom: fetched an access token for the %s (valid %d s)", self._tag, expires_in)
        return token

    async def _read_cache(self) -> _CachedToken | None:
        raw = await self._store.kv_get(self._cache_key)
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            cached = _CachedToken(str(data["token"]), float(data["expires_at"]), float(data["refresh_at"]))
        except (ValueError, KeyError, TypeError):
            return None
        self._held = cached
        return cached

    # the plumbing

    async def _call(
        self,
        method: str,
        api: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        try:
            data = await self._call_with_token(method, api, params=params, json_body=json_body)
        except ConfigurationError as exc:
            if exc.whole_secret and not (api == _MEMBER_READ and isinstance(exc, ContactsUntrustedIp)):
                # Remembered for readiness: gettoken may succeed while every API call is refused
                # (an untrusted IP answers 48009 or 60020 only on the calls themselves).
                self._refused = (self._clock(), exc)
            raise
        self._refused = None
        return data

    async def _call_with_token(
        self,
        method: str,
        api: str,
        *,
        params: Mapping[str, str] | None,
        json_body: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        retried_token = False
        while True:
            token = await self.access_token()
            query = {**(params or {}), "access_token": token}
            try:
                return await self._with_retries(
                    api, functools.partial(self._request, method, api, query, json_body)
                )
            except WeComError as exc:
                if exc.errcode not in TOKEN_ERRCODES or retried_token:
                    raise
                log.info("wecom: %s answered %d; fetching a new access token", api, exc.errcode)
                retried_token = True
                await self.drop_token(token)
                await self._refresh(stale=token)

    async def _with_retries(
        self, api: str, attempt: Callable[[], Awaitable[dict[str, Any]]]
    ) -> dict[str, Any]:
        started = self._timer()
        last: _Transient | None = None
        unanswered = False
        for number in range(1, self._max_attempts + 1):
            try:
                return await attempt()
            except _Transient as exc:
                last = exc
                unanswered = unanswered or not exc.answered
            delay = min(self._max_delay, self._base_delay * 2 ** (number - 1))
            delay *= 0.5 + self._jitter() / 2
            spent = self._timer() - started
            if number == self._max_attempts or spent + delay > self._max_retry_time:
                break
            log.warning(
                "wecom: %s failed (%s), try %d of %d; retrying in %.2f s",
                api, last.reason, number, self._max_attempts, delay,
            )
            await self._sleep(delay)
        if last is None:  # max_attempts < 1: no try was made
            raise WeComUnavailable(-1, f"{api}: no attempt was made")
        log.error("wecom: %s failed after %d tries: %s", api, number, last.reason)
        if unanswered:
            raise WeComUnanswered(last.errcode, last.reason)
        raise WeComUnavailable(last.errcode, last.reason)

    async def _request(
        self, method: str, api: str, params: Mapping[str, str], json_body: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        if self._budget is not None:
            # Each request, a retry too, is one call of WeCom's per-API limit (document/path/90312).
            await self._budget.take(api)
        if self._observe is None:
            return await self._request_once(method, api, params, json_body)
        started = time.perf_counter()
        errcode = -1  # no answer: a timeout, a transport error, an HTTP error or a body that is not JSON
        try:
            data = await self._request_once(method, api, params, json_body)
            errcode = 0
            return data
        except (WeComError, _Transient) as exc:
            errcode = exc.errcode
            raise
        finally:
            self._observe(api, errcode, time.perf_counter() - started)

    async def _request_once(
        self, method: str, api: str, params: Mapping[str, str], json_body: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        try:
            async with self._session.request(
                method, self._base + api, params=params, json=json_body, timeout=self._timeout
            ) as response:
                if response.status >= 500:
                    raise _Transient(-1, f"HTTP {response.status}")
                if response.status != 200:
                    raise WeComUnavailable(-1, f"HTTP {response.status} from {api}")
                text = await response.text()
        except TimeoutError:
            raise _Transient(-1, "timeout") from None
        except aiohttp.ClientError as exc:
            raise _Transient(-1, type(exc).__name__) from None
        try:
            data = json.loads(text)
        except ValueError:
            raise _Transient(-1, "answer is not JSON") from None
        if not isinstance(data, dict):
            raise _Transient(-1, "answer is not a JSON object")
        errcode = data.get("errcode", 0)
        if not isinstance(errcode, int):
            raise _Transient(-1, "errcode is not an integer")
        if errcode in RETRIABLE_ERRCODES:
            raise _Transient(errcode, f"errcode {errcode}: {data.get('errmsg', '')}", answered=True)
        if errcode != 0:
            raise error_for(errcode, str(data.get("errmsg", "")), contacts=self._contacts)
        return data


class TokenProbe:
    """Readiness's question to WeCom: a token for this client and each watched one, asked at most once
    per interval while it fails, and any secret (this client's or a watched one's) that WeCom refused
    in the last interval.

    WeCom blocks an IP that keeps presenting a wrong secret, so a failing answer is remembered and
    repeated instead of asking again at every probe of a load balancer.
    """

    def __init__(
        self,
        client: WeComClient,
        *,
        clock: Callable[[], float],
        interval: float = 60.0,
        watched: Sequence[WeComClient] = (),
    ) -> None:
        self._client = client
        self._watched = (client, *watched)
        self._clock = clock
        self._interval = interval
        self._failure: tuple[float, str] | None = None

    async def problem(self, *, within: float) -> str | None:
        """None when WeCom gives a token; else what is wrong ("down", or a configuration error's remedy)."""
        now = self._clock()
        if self._failure is not None and now - self._failure[0] < self._interval:
            return self._failure[1]
        try:
            async with asyncio.timeout(within):
                # Each secret's token (the app's, then each watched one's): a wrong contacts-sync
                # secret shows here, not at the first student's bind.
                for client in self._watched:
                    await client.access_token()
        except ConfigurationError as exc:
            self._failure = (now, f"{exc.errcode}: {exc.describe()}")
        except (WeComError, TimeoutError):
            self._failure = (now, "down")
        else:
            self._failure = None
        if self._failure is None:
            # A secret refused by the calls of the last interval (its token came, its calls did not).
            for client in self._watched:
                refused = client.refusal(since=now - self._interval)
                if refused is not None:
                    return f"{refused.errcode}: {refused.describe()}"
        return None if self._failure is None else self._failure[1]


@dataclass(frozen=True, slots=True)
class _CachedToken:
    token: str = field(repr=False)
    expires_at: float
    refresh_at: float


def _list(value: object) -> list[Any]:
    if isinstance(value, list):
        return value
    if isinstance(value, str):
        return [part for part in value.split("|") if part]
    return []


WECOM_APP: Final = web.AppKey("wecom_app", WeComClient)
"""WeCom's API with the app's secret: messages, openids, members' status."""
WECOM_CONTACTS: Final = web.AppKey("wecom_contacts", WeComClient)
"""WeCom's API with the contacts-sync secret: the contacts, the OAuth code and 二次验证."""
WECOM_READY: Final = web.AppKey("wecom_ready", TokenProbe)
"""/ready's question to WeCom with the app's secret, remembered for a minute while it fails."""
