"""An emulated WeCom (企业微信) for the tests and the demo, mountable as a sub-application.

It serves the /cgi-bin API the service uses, with WeCom's JSON and errcodes, the OAuth authorize
page, and the follow of the guide's step 4 (see `sandbox.wecom_follow`). Which
secret may call which API follows DESIGN.md: only the contacts-sync secret writes the directory
and lists it; messages and OAuth take an application's secret.

By default it plays WeCom as its documentation describes it today (not the 企业号 of 2015): members
carry a status; user/update ignores an activated member's mobile; user/get hides the sensitive
fields from an app; each secret has its trusted IPs, and the contacts-sync assistant, trusted from
an address added after 2022-08-15, writes members but may not read them (48009); change_contact
goes to the contacts-sync assistant's own event server, and only for changes made outside the API
(the admin console under /_sandbox/console); the app has a visible range; user/create invites;
message/send can drop a duplicate; 45009 blocks for a while. The admin endpoints under /_sandbox/
are the emulator's own.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, Final, Literal

import aiohttp_jinja2
import jinja2
from aiohttp import web

from sandbox.wecom_follow import setup_follow_routes
from sandbox.wecom_keys import (
    TEMPLATES,
    WECOM_SANDBOX_ADMISSION,
    WECOM_SANDBOX_FAULTS,
    WECOM_SANDBOX_HELP,
    WECOM_SANDBOX_PUSHER,
    WECOM_SANDBOX_STATE,
)
from sandbox.wecom_push import CallbackTarget, Pusher
from sandbox.wecom_rules import InvalidMobile, wecom_mobile
from sandbox.wecom_state import (
    APP,
    CONTACTS,
    DUPLICATE_CHECK_INTERVAL,
    DUPLICATE_CHECK_MAX,
    LOOPBACK,
    STATUS_ACTIVE,
    STATUS_DISABLED,
    STATUS_INACTIVE,
    STATUS_QUIT,
    FaultSwitch,
    Invite,
    Member,
    SandboxError,
    SentMessage,
    WeComSandboxState,
    system_random,
)

__all__ = [
    "APP",
    "CONTACTS",
    "LOOPBACK",
    "STATUS_ACTIVE",
    "STATUS_DISABLED",
    "STATUS_INACTIVE",
    "STATUS_QUIT",
    "WECOM_SANDBOX_FAULTS",
    "WECOM_SANDBOX_PUSHER",
    "WECOM_SANDBOX_STATE",
    "CallbackTarget",
    "FaultSwitch",
    "Member",
    "WeComSandboxState",
    "create_wecom_sandbox",
]

Access = Literal["any", "contacts", "app"]
"""Which secrets may call an API: any, only the contacts-sync one, or only an application's."""
_MAX_BODY: Final = 256 * 1024

ApiResult = dict[str, Any]
ApiHandler = Callable[[web.Request, WeComSandboxState, dict[str, Any]], Awaitable[ApiResult]]


def create_wecom_sandbox(
    *,
    corp_id: str,
    secrets: Mapping[str, str],
    agent_id: int,
    callback: CallbackTarget | None,
    contacts_callback: CallbackTarget | None = None,
    corp_name: str = "上海工程技术大学",
    departments: Mapping[int, str] | None = None,
    members: Iterable[Member] = (),
    token_ttl: float = 7200.0,
    oauth_code_ttl: float = 300.0,
    sms_code_ttl: float = 300.0,
    push_timeout: float = 5.0,
    push_retry_delay: float = 1.0,
    admission_url: str | None = None,
    help_url: str | None = None,
    clock: Callable[[], float] = time.time,
    rng: random.Random | None = None,
    visible_departments: Iterable[int] | None = None,
    app_sees_sensitive: bool = False,
    contacts_trusted_ips: Iterable[str] | None = LOOPBACK,
    app_trusted_ips: Iterable[str] | None = LOOPBACK,
    contacts_reads_details: bool = False,
    hidden_as_empty: bool = False,
    contacts_event_server_since_2022: bool = True,
) -> web.Application:
    """Build the WeCom emulator; `secrets` maps each secret to its label (APP, CONTACTS, ...).

    `callback` is the app's 接收消息 URL (subscribe, unsubscribe, enter_agent); `contacts_callback`
    the contacts-sync assistant's event server (change_contact). `visible_departments` is the app's
    visible range (None: the whole organisation); `app_sees_sensitive` plays an app created before
    2022-06-20; the trusted IPs are networks (None: any address; the default, the loopback only).
    By default the contacts-sync assistant's trusted address was added after 2022-08-15, as for every
    deployment since: its writes work, its user/get answers 48009 (document/path/90196: "从2022年8月15日
    10点开始，'企业管理后台 - 管理工具 - 通讯录同步'的新增IP将不能再调用此接口");
    `contacts_reads_details=True` plays an address trusted before that date, which reads every field.
    Either secret used from outside its trusted IPs gets 60020 (document/path/90313).
    `hidden_as_empty=True` answers the fields a read hides as "" instead of leaving them out (WeCom's
    documents promise neither). `contacts_event_server_since_2022=False` plays a contacts-sync event
    server saved before 2022-08-15: update_user for every change, with every changed field.
    """
    if not secrets or any(not secret for secret in secrets):
        raise ValueError("the emulator needs at least one non-empty secret")
    if any(label not in (APP, CONTACTS) for label in secrets.values()):
        raise ValueError(f"each secret's label must be {APP!r} or {CONTACTS!r}")
    if min(token_ttl, oauth_code_ttl, sms_code_ttl, push_timeout) <= 0 or push_retry_delay < 0:
        raise ValueError("ttls and the push timeout must be positive")
    state = WeComSandboxState(
        corp_id=corp_id,
        corp_name=corp_name,
        agent_id=agent_id,
        secrets=secrets,
        departments=departments or {1: corp_name},
        token_ttl=token_ttl,
        oauth_code_ttl=oauth_code_ttl,
        sms_code_ttl=sms_code_ttl,
        clock=clock,
        rng=rng if rng is not None else system_random(),
        visible_departments=visible_departments,
        app_sees_sensitive=app_sees_sensitive,
        contacts_trusted_ips=contacts_trusted_ips,
        app_trusted_ips=app_trusted_ips,
        contacts_reads_details=contacts_reads_details,
        hidden_as_empty=hidden_as_empty,
        contacts_event_server_since_2022=contacts_event_server_since_2022,
    )
    for member in members:
        if member.userid in state.members:
            raise ValueError(f"member {member.userid!r} seeded twice")
        state.members[member.userid] = member
    app = web.Application(client_max_size=_MAX_BODY)
    app[WECOM_SANDBOX_STATE] = state
    app[WECOM_SANDBOX_FAULTS] = state.faults
    app[WECOM_SANDBOX_PUSHER] = Pusher(
        state=state, target=callback, contacts_target=contacts_callback, timeout=push_timeout,
        retry_delay=push_retry_delay,
    )
    app[WECOM_SANDBOX_ADMISSION] = admission_url
    app[WECOM_SANDBOX_HELP] = help_url
    aiohttp_jinja2.setup(
        app,
        app_key=TEMPLATES,
        loader=jinja2.PackageLoader("sandbox", "templates"),
        autoescape=True,
    )
    app.cleanup_ctx.append(_pusher_ctx)
    _setup_api_routes(app)
    setup_follow_routes(app)
    return app


async def _pusher_ctx(app: web.Application) -> AsyncIterator[None]:
    pusher = app[WECOM_SANDBOX_PUSHER]
    await pusher.start()
    yield
    await pusher.close()


def _setup_api_routes(app: web.Application) -> None:
    routes: list[tuple[str, str, ApiHandler, Access]] = [
        ("GET", "user/get", _user_get, "any"),
        ("POST", "user/create", _user_create, "contacts"),
        ("POST", "user/update", _user_update, "contacts"),
        ("GET", "user/delete", _user_delete, "contacts"),
        ("POST", "user/list_id", _user_list_id, "contacts"),
        ("POST", "user/getuserid", _user_getuserid, "any"),
        ("POST", "user/convert_to_openid", _convert_to_openid, "any"),
        # 二次验证: the documented path resolves the code with the contacts-sync assistant, then calls
        # user/authsucc (document/path/90203: "企业收到code后，使用'通讯录同步助手'调用接口'根据code获取
        # 成员信息'获取成员的userid"); the newer pair is "仅『通讯录同步』或者自建应用可调用" (99499, 99500).
        ("GET", "user/authsucc", _authsucc, "any"),
        ("POST", "auth/get_tfa_info", _get_tfa_info, "any"),
        ("POST", "user/tfa_succ", _tfa_succ, "any"),
        ("GET", "auth/getuserinfo", _getuserinfo, "any"),
        ("POST", "batch/invite", _batch_invite, "any"),
        ("POST", "message/send", _message_send, "app"),
    ]
    app.router.add_get("/cgi-bin/gettoken", _api("gettoken", _gettoken, access=None), name="wecom_gettoken")
    for method, name, handler, access in routes:
        view = _api(name, handler, access=access)
        app.router.add_route(method, f"/cgi-bin/{name}", view, name="wecom_" + name.replace("/", "_"))
    app.router.add_get("/_sandbox/state", _state_view, name="wecom_sandbox_state")
    app.router.add_post("/_sandbox/faults", _faults_arm, name="wecom_sandbox_faults")
    app.router.add_delete("/_sandbox/faults", _faults_clear)
    app.router.add_post("/_sandbox/members/{userid}", _member_switches, name="wecom_sandbox_member")
    app.router.add_post("/_sandbox/members/{userid}/enter-agent", _enter_agent, name="wecom_sandbox_enter")
    app.router.add_post("/_sandbox/console/members", _console_create, name="wecom_console_members")
    app.router.add_post("/_sandbox/console/members/{userid}", _console_update, name="wecom_console_member")
    app.router.add_delete("/_sandbox/console/members/{userid}", _console_delete)
    app.router.add_post("/_sandbox/console/visible", _console_visible, name="wecom_console_visible")


def _api(name: str, handler: ApiHandler, *, access: Access | None
         ) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def view(request: web.Request) -> web.Response:
        state = request.app[WECOM_SANDBOX_STATE]
        state.calls.append(name)
        if state.faults.blocked(name):
            return _json(45009, "api freq out of limit")
        fault = state.faults.take(name)
        if fault is not None:
            if fault.kind == "delay":
                # The request has arrived whole: WeCom applies it even when the caller stops waiting
                # for the answer (a write whose answer is lost), so the late answer is shielded from
                # the caller's disconnect.
                await request.read()
                late = asyncio.ensure_future(_late(fault.value, lambda: answer(request, state)))
                _LATE.add(late)
                late.add_done_callback(_LATE.discard)
                return await asyncio.shield(late)
            elif fault.kind == "status":
                return web.Response(status=int(fault.value), text="sandbox fault")
            else:
                return _json(int(fault.value), _FAULT_MESSAGES.get(int(fault.value), "sandbox fault"))
        return await answer(request, state)

    async def answer(request: web.Request, state: WeComSandboxState) -> web.Response:
        try:
            label = ""
            if access is not None:
                label = state.check_token(request.query.get("access_token"))
                state.check_ip(label, request.remote)
                if (access == "contacts") != (label == CONTACTS) and access != "any":
                    # 48002: writes need the contacts secret, which cannot send or do OAuth.
                    raise SandboxError(48002, "api forbidden")
            body = await _json_body(request) if request.method == "POST" else {}
            request[_LABEL] = label
            result = await handler(request, state, body)
        except SandboxError as exc:
            return _json(exc.errcode, exc.errmsg)
        errmsg = str(result.pop("errmsg", "ok"))
        return _json(0, errmsg, result)

    return view


_LATE: Final[set[asyncio.Future[web.Response]]] = set()
"""Late answers in flight: held so that they finish after their caller left."""


async def _late(seconds: float, answering: Callable[[], Awaitable[web.Response]]) -> web.Response:
    await asyncio.sleep(seconds)
    return await answering()


_LABEL: Final = web.RequestKey("wecom_sandbox_label", str)
"""The label of the secret whose token made the call ("" for gettoken)."""

_FAULT_MESSAGES: Final = {
    -1: "system busy",
    45009: "api freq out of limit",
    45033: "api concurrent out of limit",
}


def _json(errcode: int, errmsg: str, extra: Mapping[str, Any] | None = None) -> web.Response:
    return web.json_response({"errcode": errcode, "errmsg": errmsg, **(extra or {})})


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise SandboxError(47001, "data format error") from None
    if not isinstance(body, dict):
        raise SandboxError(47001, "data format error")
    return body


def _text(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    return value if isinstance(value, str) else None


async def _gettoken(request: web.Request, state: WeComSandboxState, body: dict[str, Any]) -> ApiResult:
    corp_id = request.query.get("corpid")
    secret = request.query.get("corpsecret")
    if not corp_id:
        raise SandboxError(41002, "corpid missing")
    if not secret:
        raise SandboxError(41004, "corpsecret missing")
    token, expires_in = state.issue_token(corp_id, secret, peer=request.remote or "")
    return {"access_token": token, "expires_in": expires_in}


async def _user_get(request: web.Request, state: WeComSandboxState, body: dict[str, Any]) -> ApiResult:
    userid = request.query.get("userid")
    if not userid:
        raise SandboxError(41009, "missing userid")
    label = request[_LABEL]
    if label == CONTACTS and not state.contacts_reads_details:
        # document/path/90313, 48009: "不再允许通讯录同步助手从新增IP读取通讯录详情".
        raise SandboxError(48009, "api forbidden for contacts sync from a new ip: read member details "
                                  "with an app's secret, or the ids with user/list_id")
    member = state.member(userid)
    state.check_visible(label, member)
    # document/path/90196: since 2022-06-20 a new app gets no 头像、性别、手机、邮箱、企业邮箱、员工个人
    # 二维码、地址; the contacts-sync secret, where it may read at all, reads them all.
    return member.as_json(
        sensitive=label == CONTACTS or state.app_sees_sensitive, hidden_as_empty=state.hidden_as_empty
    )


async def _user_getuserid(request: web.Request, state: WeComSandboxState, body: dict[str, Any]) -> ApiResult:
    # document/path/95402: {"mobile"} → {"userid"}; "应用须拥有指定成员的查看权限". A mobile no member holds,
    # or one held outside the app's visible range, answers 46004 (90313 46004: "根据手机号或邮箱地址查userid
    # 时，传入的手机号或邮箱不存在企业通讯录中，或者不在应用的可见范围之内").
    mobile = _text(body, "mobile")
    if not mobile:
        raise SandboxError(41009, "missing mobile")
    try:
        phone = wecom_mobile(mobile)
    except InvalidMobile:
        raise SandboxError(46004, "user not found") from None
    member = state.member_by_mobile(phone)
    if member is None or (request[_LABEL] == APP and not state.visible(member)):
        raise SandboxError(46004, "user not found")
    return {"userid": member.userid}


async def _user_create(request: web.Request, state: WeComSandboxState, body: dict[str, Any]) -> ApiResult:
    if "department" not in body:
        raise SandboxError(41019, "missing department")
    member = state.create_member(
        userid=_text(body, "userid") or "",
        name=_text(body, "name") or "",
        department=body["department"],
        mobile=_text(body, "mobile"),
        position=_text(body, "position") or "",
        email=_text(body, "email") or "",
        gender=str(body.get("gender", "0")),
        main_department=body.get("main_department") if isinstance(body.get("main_department"), int) else None,
    )
    # document/path/90195, to_invite: "是否邀请该成员使用企业微信（将通过微信服务通知或短信或邮件下发邀请，
    # 每天自动下发一次，最多持续3个工作日），默认值为true". No change_contact: the assistant's own writes
    # are not called back (document/path/90970: "由通讯录同步助手调用接口触发的变更事件不回调通讯录同步
    # 助手本身").
    if body.get("to_invite", True) not in (False, 0, "false"):
        state.invite(member.userid)
    return {"errmsg": "created"}


async def _user_update(request: web.Request, state: WeComSandboxState, body: dict[str, Any]) -> ApiResult:
    userid = _text(body, "userid")
    if not userid:
        raise SandboxError(41009, "missing userid")
    was_in = state.in_app(state.member(userid))
    member, _ = state.update_member(userid, body)
    # No change_contact for the API's own write (document/path/90970); the app hears a member who
    # joined leave or enter its visible range (document/path/90240).
    request.app[WECOM_SANDBOX_PUSHER].push_membership(member, was_in=was_in)
    return {"errmsg": "updated"}


async def _user_delete(request: web.Request, state: WeComSandboxState, body: dict[str, Any]) -> ApiResult:
    userid = request.query.get("userid")
    if not userid:
        raise SandboxError(41009, "missing userid")
    was_in = state.in_app(state.member(userid))
    member = state.delete_member(userid)
    if was_in:
        # document/path/90240: "成员已经在应用可见范围，成员加入(或退出)企业时" the app hears (un)subscribe.
        request.app[WECOM_SANDBOX_PUSHER].push("unsubscribe", member.userid)
    return {"errmsg": "deleted"}


async def _user_list_id(request: web.Request, state: WeComSandboxState, body: dict[str, Any]) -> ApiResult:
    limit = body.get("limit", 10000)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10000:
        raise SandboxError(40058, "invalid limit")
    cursor = _text(body, "cursor") or ""
    rows = state.dept_users()
    # The cursor is the position after the last row handed out; opaque to callers, as WeCom's.
    start = 0
    if cursor:
        try:
            start = int(bytes.fromhex(cursor).decode("ascii"))
        except (ValueError, UnicodeDecodeError):
            raise SandboxError(40058, "invalid cursor") from None
    page = rows[start : start + limit]
    end = start + len(page)
    next_cursor = str(end).encode("ascii").hex() if end < len(rows) else ""
    return {
        "next_cursor": next_cursor,
        "dept_user": [{"userid": userid, "department": department} for userid, department in page],
    }


async def _convert_to_openid(
    request: web.Request, state: WeComSandboxState, body: dict[str, Any]
) -> ApiResult:
    userid = _text(body, "userid")
    if not userid:
        raise SandboxError(41009, "missing userid")
    state.check_visible(request[_LABEL], state.member(userid))
    return {"openid": state.openid_of(userid)}


async def _authsucc(request: web.Request, state: WeComSandboxState, body: dict[str, Any]) -> ApiResult:
    userid = request.query.get("userid")
    if not userid:
        raise SandboxError(41009, "missing userid")
    member = state.member(userid)
    state.check_visible(request[_LABEL], member)
    _admit(request, state, member)
    return {}


async def _get_tfa_info(request: web.Request, state: WeComSandboxState, body: dict[str, Any]) -> ApiResult:
    userid, tfa_code = state.issue_tfa(_text(body, "code"))
    state.check_visible(request[_LABEL], state.member(userid))
    return {"userid": userid, "tfa_code": tfa_code}


async def _tfa_succ(request: web.Request, state: WeComSandboxState, body: dict[str, Any]) -> ApiResult:
    userid = _text(body, "userid")
    tfa_code = _text(body, "tfa_code")
    if not userid:
        raise SandboxError(41009, "missing userid")
    if not tfa_code:
        raise SandboxError(40207, "invalid tfa_code")
    state.check_visible(request[_LABEL], state.member(userid))
    _admit(request, state, state.redeem_tfa(userid, tfa_code))
    return {}


def _admit(request: web.Request, state: WeComSandboxState, member: Member) -> None:
    state.authsucc.append(member.userid)
    wechat_id = state.pending_admissions.pop(member.userid, None)
    wechat = state.wechats.get(wechat_id) if wechat_id else None
    if wechat is not None and state.followed_member(wechat.wechat_id) is None:
        was_in = state.in_app(member)
        state.follow(member.userid, wechat)
        request.app[WECOM_SANDBOX_PUSHER].push_membership(member, was_in=was_in)


async def _getuserinfo(request: web.Request, state: WeComSandboxState, body: dict[str, Any]) -> ApiResult:
    grant = state.redeem_code(request.query.get("code"))
    if grant.userid is not None:
        return {"userid": grant.userid}
    return {"openid": grant.openid}


async def _batch_invite(request: web.Request, state: WeComSandboxState, body: dict[str, Any]) -> ApiResult:
    raw_users = body.get("user")
    users = [u for u in raw_users if isinstance(u, str)] if isinstance(raw_users, list) else []
    parties = _ints(body.get("party"))
    tags = _ints(body.get("tag"))
    if not (users or parties or tags):
        raise SandboxError(40035, "user, party and tag are all empty")
    valid = [state.member(u).userid for u in users if _exists(state, u)]
    invalid_users = [u for u in users if not _exists(state, u)]
    invalid_parties = [p for p in parties if p not in state.departments]
    # Each invitation is sent again, whatever user/create's to_invite already sent (document/path/90975).
    invited = set(valid) | {m.userid for m in state.members.values() if set(parties) & set(m.department)}
    for userid in sorted(invited):
        state.invite(userid)
    state.invites.append(
        Invite(
            users=tuple(valid),
            parties=tuple(p for p in parties if p in state.departments),
            tags=tuple(tags),
        )
    )
    return {"invaliduser": invalid_users, "invalidparty": invalid_parties, "invalidtag": tags}


async def _message_send(request: web.Request, state: WeComSandboxState, body: dict[str, Any]) -> ApiResult:
    agent_id = body.get("agentid")
    if isinstance(agent_id, str) and agent_id.isdigit():
        agent_id = int(agent_id)
    if agent_id != state.agent_id:
        raise SandboxError(301002, "not allow operate another agent with this accesstoken")
    msgtype = _text(body, "msgtype")
    if msgtype != "text":
        raise SandboxError(40008, "invalid message type")
    text = body.get("text")
    content = text.get("content") if isinstance(text, dict) else None
    if not isinstance(content, str) or not content:
        raise SandboxError(41016 if content is None else 44004, "empty content")
    touser = [u for u in (_text(body, "touser") or "").split("|") if u]
    members = [state.member(u) for u in touser if _exists(state, u)]
    invalid = [u.lower() for u in touser if not _exists(state, u)]
    if not members:
        raise SandboxError(81013, "user & party & tag all invalid")
    for member in members:
        state.check_visible(APP, member)
    interval = _duplicate_interval(body)
    now = state.clock()
    msgid = state.random_text(32, "abcdefghijklmnopqrstuvwxyz0123456789")
    fresh: list[str] = []
    repeated: list[str] = []
    for member in members:
        earlier = _earlier_same(state, member.userid, content, now, interval) if interval else None
        (repeated if earlier is not None else fresh).append(member.userid)
    if fresh:
        state.messages.append(SentMessage(
            msgid=msgid, agent_id=state.agent_id, touser=tuple(fresh), msgtype="text", content=content,
            sent_at=now,
        ))
    if repeated:
        # document/path/90236, enable_duplicate_check: "表示是否开启重复消息检查"; a repeat within
        # duplicate_check_interval is accepted (errcode 0) and not delivered again.
        state.duplicates.append(SentMessage(
            msgid=msgid, agent_id=state.agent_id, touser=tuple(repeated), msgtype="text", content=content,
            sent_at=now,
        ))
    result: ApiResult = {"msgid": msgid}
    if invalid:
        result["invaliduser"] = "|".join(invalid)
    return result


def _duplicate_interval(body: Mapping[str, Any]) -> float:
    check = body.get("enable_duplicate_check", 0)
    if check not in (1, True, "1"):
        return 0.0
    raw = body.get("duplicate_check_interval", DUPLICATE_CHECK_INTERVAL)
    try:
        interval = float(raw)
    except (TypeError, ValueError):
        raise SandboxError(40058, "invalid duplicate_check_interval") from None
    if not math.isfinite(interval) or not 0 < interval <= DUPLICATE_CHECK_MAX:
        raise SandboxError(40058, "invalid duplicate_check_interval")
    return interval


def _earlier_same(
    state: WeComSandboxState, userid: str, content: str, now: float, interval: float
) -> SentMessage | None:
    return next(
        (m for m in reversed(state.messages)
         if userid in m.touser and m.content == content and now - m.sent_at < interval),
        None,
    )


def _exists(state: WeComSandboxState, userid: str) -> bool:
    try:
        state.member(userid)
    except SandboxError:
        return False
    return True


def _ints(value: object) -> list[int]:
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, int) and not isinstance(item, bool)]


async def _state_view(request: web.Request) -> web.Response:
    state = request.app[WECOM_SANDBOX_STATE]
    summary = {
        "members": [m.as_json() | {"uses_wecom_app": m.uses_wecom_app, "visible": state.visible(m)}
                    for m in state.members.values()],
        "follows": {u: state.wechats[w].openid for u, w in state.follows.items() if w in state.wechats},
        "invitations": dict(state.invitations),
        "messages": [{"touser": list(m.touser), "content": m.content, "sent_at": m.sent_at}
                     for m in state.messages],
        "duplicates_dropped": [{"touser": list(m.touser), "content": m.content} for m in state.duplicates],
        "invites": [list(i.users) for i in state.invites],
        "pushes": [{"target": p.target, "event": p.event, "userid": p.userid, "tries": p.tries,
                    "delivered": p.delivered} for p in state.pushes],
        "blocks": [{"api": b.api, "until": b.until} for b in state.faults.blocks],
        "banned_ips": {ip: until for ip, until in state.banned_ips.items() if until > state.clock()},
        "calls": len(state.calls),
    }
    return web.Response(
        text=json.dumps(summary, ensure_ascii=False, indent=2), content_type="application/json"
    )


async def _faults_arm(request: web.Request) -> web.Response:
    faults = request.app[WECOM_SANDBOX_FAULTS]
    try:
        body = await request.json()
        count = int(body.get("count", 1))
        api = body.get("api")
        if api is not None and not isinstance(api, str):
            raise ValueError("api")
        if "errcode" in body:
            faults.errcode(int(body["errcode"]), count=count, api=api)
        elif "status" in body:
            faults.status(int(body["status"]), count=count, api=api)
        elif "delay" in body:
            faults.delay(float(body["delay"]), count=count, api=api)
        elif "block" in body:
            seconds = float(body["block"])
            if not math.isfinite(seconds):
                raise ValueError("block")
            faults.block(seconds, api=api)
        else:
            raise ValueError("kind")
    except (ValueError, TypeError, AttributeError):
        return web.json_response({"error": "send {errcode|status|delay|block, count?, api?}"}, status=400)
    return web.json_response({"armed": len(faults.armed), "blocks": len(faults.blocks)})


async def _faults_clear(request: web.Request) -> web.Response:
    request.app[WECOM_SANDBOX_FAULTS].clear()
    return web.json_response({"armed": 0})


# The emulator's admin endpoints: what happens outside the API, in WeCom's admin console or its app.


async def _admin_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise web.HTTPBadRequest(text="send a JSON object") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="send a JSON object")
    return body


def _admin_error(exc: SandboxError) -> web.Response:
    return web.json_response({"errcode": exc.errcode, "errmsg": exc.errmsg}, status=400)


async def _member_switches(request: web.Request) -> web.Response:
    """POST {"uses_wecom_app": bool}: the member logs in to (or leaves) the WeCom app.

    No event is pushed: this plays a member activated before the service existed, or whose event was
    lost, so that tests can see a member WeCom counts as activated with no subscribe ever heard.
    """
    state = request.app[WECOM_SANDBOX_STATE]
    body = await _admin_body(request)
    uses = body.get("uses_wecom_app")
    if not isinstance(uses, bool) or set(body) != {"uses_wecom_app"}:
        return web.json_response({"error": 'send {"uses_wecom_app": true|false}'}, status=400)
    try:
        member = state.set_uses_wecom_app(request.match_info["userid"], uses)
    except SandboxError as exc:
        return _admin_error(exc)
    return web.json_response(member.as_json() | {"uses_wecom_app": member.uses_wecom_app})


async def _enter_agent(request: web.Request) -> web.Response:
    """POST: the member opens the app in WeCom; the app hears enter_agent (document/path/90240)."""
    state = request.app[WECOM_SANDBOX_STATE]
    try:
        member = state.member(request.match_info["userid"])
    except SandboxError as exc:
        return _admin_error(exc)
    if not state.in_app(member):
        return web.json_response({"error": "the member has not joined the app"}, status=409)
    request.app[WECOM_SANDBOX_PUSHER].push("enter_agent", member.userid, fields={"EventKey": ""})
    return web.json_response({"entered": member.userid})


_CONSOLE_FIELDS: Final = frozenset(
    {"name", "mobile", "department", "position", "email", "gender", "enable", "new_userid"}
)


async def _console_create(request: web.Request) -> web.Response:
    """POST {userid, name, department, mobile?, ...}: an administrator adds a member in the console."""
    state = request.app[WECOM_SANDBOX_STATE]
    body = await _admin_body(request)
    try:
        member = state.create_member(
            userid=_text(body, "userid") or "",
            name=_text(body, "name") or "",
            department=body.get("department", []),
            mobile=_text(body, "mobile"),
            position=_text(body, "position") or "",
            email=_text(body, "email") or "",
        )
    except SandboxError as exc:
        return _admin_error(exc)
    request.app[WECOM_SANDBOX_PUSHER].push_contact(
        "create_user", member.userid, {"Department": _departments_text(member)}
    )
    return web.json_response(member.as_json(), status=201)


async def _console_update(request: web.Request) -> web.Response:
    """POST {field: value, ...}: the member's record changes in the console (or in the member's own app).

    The contacts-sync event server saved after 2022-08-15 hears update_user only when the department
    or the UserID changed, with those fields only (document/path/90970: "成员属性只回调UserId/Department
    两个字段"): a mobile changed in the console is heard by no one. One saved before hears every change
    with the fields that changed (Name, Mobile, Status...). The app hears a member leave or enter it
    (document/path/90376, 成员关注及取消关注事件: "成员已经在应用可见范围，成员加入(或退出)企业时、
    或者被禁用"): disabled (enable 0) is unsubscribe, re-enabled subscribe again (the
    documents name no event for it; the emulator plays the way back in), a move out of or into its
    visible range likewise.
    """
    state = request.app[WECOM_SANDBOX_STATE]
    body = await _admin_body(request)
    unknown = set(body) - _CONSOLE_FIELDS
    if unknown:
        return web.json_response({"error": f"unknown fields: {sorted(unknown)}"}, status=400)
    enable = body.get("enable")
    if enable is not None and enable not in (0, 1):
        return web.json_response({"error": "enable is 0 or 1"}, status=400)
    pusher = request.app[WECOM_SANDBOX_PUSHER]
    try:
        member = state.member(request.match_info["userid"])
        old_userid, was_in, old_status = member.userid, state.in_app(member), member.status
        changes = {key: value for key, value in body.items() if key != "enable"}
        member, fields = state.update_member(member.userid, changes, by_member=True)
        if enable is not None:
            state.set_enabled(member.userid, bool(enable))
    except SandboxError as exc:
        return _admin_error(exc)
    if member.status != old_status:
        fields["Status"] = str(member.status)
    if state.contacts_event_server_since_2022:
        fields = {tag: value for tag, value in fields.items() if tag in ("Department", "NewUserID")}
    if fields:
        pusher.push_contact("update_user", old_userid, fields)
    pusher.push_membership(member, was_in=was_in)
    return web.json_response(member.as_json())


async def _console_delete(request: web.Request) -> web.Response:
    """DELETE: an administrator removes the member in the console (delete_user, and unsubscribe)."""
    state = request.app[WECOM_SANDBOX_STATE]
    try:
        member = state.member(request.match_info["userid"])
        was_in = state.in_app(member)
        state.delete_member(member.userid)
    except SandboxError as exc:
        return _admin_error(exc)
    pusher = request.app[WECOM_SANDBOX_PUSHER]
    pusher.push_contact("delete_user", member.userid)
    if was_in:
        pusher.push("unsubscribe", member.userid)
    return web.json_response({"deleted": member.userid})


async def _console_visible(request: web.Request) -> web.Response:
    """POST {"departments": [ids] | null}: the app's visible range changes; members who joined hear it."""
    state = request.app[WECOM_SANDBOX_STATE]
    body = await _admin_body(request)
    departments = body.get("departments", "absent")
    if departments is not None and (
        not isinstance(departments, list)
        or any(isinstance(d, bool) or not isinstance(d, int) or d not in state.departments
               for d in departments)
    ):
        problem = 'send {"departments": [known department ids] or null}'
        return web.json_response({"error": problem}, status=400)
    before = {m.userid: state.in_app(m) for m in state.members.values()}
    state.visible_departments = None if departments is None else frozenset(departments)
    pusher = request.app[WECOM_SANDBOX_PUSHER]
    for member in list(state.members.values()):
        pusher.push_membership(member, was_in=before[member.userid])
    return web.json_response({"visible_departments": departments})


def _departments_text(member: Member) -> str:
    return ",".join(str(d) for d in member.department)


if __name__ == "__main__":  # python -m sandbox.wecom: the emulator on its own port (sandbox.wecom_main)
    import sys

    from sandbox.wecom_main import main

    sys.exit(main())
