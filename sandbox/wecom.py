"""An emulated WeCom (企业微信) for the tests and the demo, mountable as a sub-application.

It serves the /cgi-bin API the service uses, with WeCom's JSON and errcodes, the OAuth authorize
page, and the follow of the guide's step 4 (see `sandbox.wecom_follow`). Which
secret may call which API follows DESIGN.md: only the contacts-sync secret writes the directory
and lists it; messages and OAuth take an application's secret.
"""

from __future__ import annotations

import asyncio
import json
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
from sandbox.wecom_state import (
    APP,
    CONTACTS,
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
) -> web.Application:
    """Build the WeCom emulator; `secrets` maps each secret to its label (APP, CONTACTS, ...)."""
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
    )
    for member in members:
        if member.userid in state.members:
            raise ValueError(f"member {member.userid!r} seeded twice")
        state.members[member.userid] = member
    app = web.Application(client_max_size=_MAX_BODY)
    app[WECOM_SANDBOX_STATE] = state
    app[WECOM_SANDBOX_FAULTS] = state.faults
    app[WECOM_SANDBOX_PUSHER] = Pusher(
        state=state, target=callback, timeout=push_timeout, retry_delay=push_retry_delay
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
        ("POST", "user/convert_to_openid", _convert_to_openid, "any"),
        ("GET", "user/authsucc", _authsucc, "any"),
        ("GET", "auth/getuserinfo", _getuserinfo, "app"),
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


def _api(name: str, handler: ApiHandler, *, access: Access | None
         ) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def view(request: web.Request) -> web.Response:
        state = request.app[WECOM_SANDBOX_STATE]
        state.calls.append(name)
        fault = state.faults.take(name)
        if fault is not None:
            if fault.kind == "delay":
                await asyncio.sleep(fault.value)
            elif fault.kind == "status":
                return web.Response(status=int(fault.value), text="sandbox fault")
            else:
                return _json(int(fault.value), _FAULT_MESSAGES.get(int(fault.value), "sandbox fault"))
        try:
            if access is not None:
                label = state.check_token(request.query.get("access_token"))
                if (access == "contacts") != (label == CONTACTS) and access != "any":
                    # 48002: writes need the contacts secret, which cannot send or do OAuth.
                    raise SandboxError(48002, "api forbidden")
            body = await _json_body(request) if request.method == "POST" else {}
            result = await handler(request, state, body)
        except SandboxError as exc:
            return _json(exc.errcode, exc.errmsg)
        errmsg = str(result.pop("errmsg", "ok"))
        return _json(0, errmsg, result)

    return view


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
    token, expires_in = state.issue_token(corp_id, secret)
    return {"access_token": token, "expires_in": expires_in}


async def _user_get(request: web.Request, state: WeComSandboxState, body: dict[str, Any]) -> ApiResult:
    userid = request.query.get("userid")
    if not userid:
        raise SandboxError(41009, "missing userid")
    return state.member(userid).as_json()


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
    request.app[WECOM_SANDBOX_PUSHER].push(
        "change_contact", member.userid, sender="sys", agent=False, fields={
            "ChangeType": "create_user",
            "UserID": member.userid,
            "Name": member.name,
            "Department": ",".join(str(d) for d in member.department),
            **({"Mobile": member.mobile} if member.mobile else {}),
            "Status": str(member.status),
        },
    )
    return {"errmsg": "created"}


async def _user_update(request: web.Request, state: WeComSandboxState, body: dict[str, Any]) -> ApiResult:
    userid = _text(body, "userid")
    if not userid:
        raise SandboxError(41009, "missing userid")
    member, fields = state.update_member(userid, body)
    if fields:
        old = userid if "NewUserID" in fields else member.userid
        request.app[WECOM_SANDBOX_PUSHER].push(
            "change_contact", old, sender="sys", agent=False,
            fields={"ChangeType": "update_user", "UserID": old, **fields},
        )
    return {"errmsg": "updated"}


async def _user_delete(request: web.Request, state: WeComSandboxState, body: dict[str, Any]) -> ApiResult:
    userid = request.query.get("userid")
    if not userid:
        raise SandboxError(41009, "missing userid")
    member = state.delete_member(userid)
    request.app[WECOM_SANDBOX_PUSHER].push(
        "change_contact", member.userid, sender="sys", agent=False,
        fields={"ChangeType": "delete_user", "UserID": member.userid},
    )
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
    return {"openid": state.openid_of(userid)}


async def _authsucc(request: web.Request, state: WeComSandboxState, body: dict[str, Any]) -> ApiResult:
    userid = request.query.get("userid")
    if not userid:
        raise SandboxError(41009, "missing userid")
    member = state.member(userid)
    state.authsucc.append(member.userid)
    wechat_id = state.pending_admissions.pop(member.userid, None)
    wechat = state.wechats.get(wechat_id) if wechat_id else None
    if wechat is not None and state.followed_member(wechat.wechat_id) is None:
        state.follow(member.userid, wechat)
        request.app[WECOM_SANDBOX_PUSHER].push("subscribe", member.userid)
    return {}


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
    valid = [state.member(u).userid for u in touser if _exists(state, u)]
    invalid = [u.lower() for u in touser if not _exists(state, u)]
    if not valid:
        raise SandboxError(81013, "user & party & tag all invalid")
    msgid = state.random_text(32, "abcdefghijklmnopqrstuvwxyz0123456789")
    state.messages.append(
        SentMessage(
            msgid=msgid, agent_id=state.agent_id, touser=tuple(valid), msgtype="text", content=content
        )
    )
    result: ApiResult = {"msgid": msgid}
    if invalid:
        result["invaliduser"] = "|".join(invalid)
    return result


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
        "members": [m.as_json() for m in state.members.values()],
        "follows": {u: state.wechats[w].openid for u, w in state.follows.items() if w in state.wechats},
        "messages": [{"touser": list(m.touser), "content": m.content} for m in state.messages],
        "invites": [list(i.users) for i in state.invites],
        "pushes": [{"event": p.event, "userid": p.userid, "tries": p.tries, "delivered": p.delivered}
                   for p in state.pushes],
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
        else:
            raise ValueError("kind")
    except (ValueError, TypeError, AttributeError):
        return web.json_response({"error": "send {errcode|status|delay, count?, api?}"}, status=400)
    return web.json_response({"armed": len(faults.armed)})


async def _faults_clear(request: web.Request) -> web.Response:
    request.app[WECOM_SANDBOX_FAULTS].clear()
    return web.json_response({"armed": 0})
