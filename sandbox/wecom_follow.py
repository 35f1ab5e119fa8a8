"""The follow of the guide's step 4 in the WeCom emulator: simulated WeChats, 关注, 验证身份, errors 2.3/2.4.

The simulated WeChat is the browser's: 模拟微信 (`/wechat`) creates or picks one (a name and its
own phone) and keeps its id in a cookie scoped to the emulator's mount, as the real WeChat app
carries its identity. Scanning the follow QR is opening `/follow`:

- a member whose mobile equals the WeChat's phone is followed at once (图 1-4);
- otherwise 验证身份 asks for a phone (图 1-5, 1-6) and "sends" a six-digit code, shown on the
  page itself since no SMS leaves the machine; a right code follows (图 1-7);
- a phone in no member's record is error 2.3, a member followed by another WeChat error 2.4;
- a WeChat follows as one member only; `/unfollow` is 取消关注.

A follow activates the member (status 1) and an unfollow deactivates it (4) unless it also uses the
WeCom app; the app's callback hears `subscribe` or `unsubscribe` when that moves the member into or
out of the app (activated and in its visible range). With second
verification (二次验证) on, a verified WeChat is first sent to the service's admission page with an
OAuth code, and the follow completes when the service calls user/authsucc.

`/connect/oauth2/authorize` takes the WeChat from the same cookie (asking to pick one first) and
redirects to redirect_uri with a single-use code that auth/getuserinfo resolves.
"""

from __future__ import annotations

import functools
import hmac
import io
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

import aiohttp_jinja2
import segno
from aiohttp import web

from sandbox.wecom_keys import (
    TEMPLATES,
    WECOM_SANDBOX_ADMISSION,
    WECOM_SANDBOX_HELP,
    WECOM_SANDBOX_PUSHER,
    WECOM_SANDBOX_STATE,
)
from sandbox.wecom_rules import (
    FOLLOW_ERROR_SCREENS,
    FollowError,
    InvalidMobile,
    masked,
    wecom_mobile,
)
from sandbox.wecom_state import FollowOutcome, SandboxError, WeChatUser, WeComSandboxState

WECHAT_COOKIE: Final = "wecom_sandbox_wechat"
HOME: Final = "wecom_home"
WECHAT: Final = "wecom_wechat"
WECHAT_USE: Final = "wecom_wechat_use"
FOLLOW: Final = "wecom_follow"
FOLLOW_QR: Final = "wecom_follow_qr"
VERIFY: Final = "wecom_verify"
CODE: Final = "wecom_code"
UNFOLLOW: Final = "wecom_unfollow"
AUTHORIZE: Final = "wecom_authorize"
APP_LOGIN: Final = "wecom_app_login"
_NO_CACHE: Final = {"Cache-Control": "no-store"}
_STATE_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_NOT_ONE_MEMBER: Final = (
    "一个微信号只能关注一个成员：该微信已关注企业号，如需以其他成员身份关注，请先取消关注。"
)


def setup_follow_routes(app: web.Application) -> None:
    """Add the pages of the simulated WeChat, the follow and OAuth to the emulator."""
    app.router.add_get("/", _home, name=HOME)
    app.router.add_get("/wechat", _wechat_page, name=WECHAT)
    app.router.add_post("/wechat", _wechat_create)
    app.router.add_post("/wechat/use", _wechat_use, name=WECHAT_USE)
    app.router.add_get("/follow", _follow_page, name=FOLLOW)
    app.router.add_post("/follow", _follow_submit)
    app.router.add_get("/follow/qr.svg", _follow_qr, name=FOLLOW_QR)
    app.router.add_get("/follow/verify", _verify_page, name=VERIFY)
    app.router.add_post("/follow/verify", _verify_submit)
    app.router.add_get("/follow/code", _code_page, name=CODE)
    app.router.add_post("/follow/code", _code_submit)
    app.router.add_get("/unfollow", _unfollow_page, name=UNFOLLOW)
    app.router.add_post("/unfollow", _unfollow_submit)
    app.router.add_get("/connect/oauth2/authorize", _authorize, name=AUTHORIZE)
    app.router.add_get("/app-login", _app_login_page, name=APP_LOGIN)
    app.router.add_post("/app-login", _app_login_submit)


# pages


async def _home(request: web.Request) -> web.Response:
    state = request.app[WECOM_SANDBOX_STATE]
    wechat = _current(request)
    return _render(request, "sandbox/wecom_home.html", {
        "wechat": wechat,
        "followed": _member_name(state, state.followed_member(wechat.wechat_id)) if wechat else None,
        "members": len(state.members),
        "follows": len(state.follows),
        "app_login": _url(request, APP_LOGIN),
    })


async def _app_login_page(request: web.Request) -> web.Response:
    return _app_login_form(request, userid="", done=None, error=None)


async def _app_login_submit(request: web.Request) -> web.Response:
    """A member logs in to the WeCom app: activated (status 1) with no subscribe pushed, as WeCom
    counts "已激活企业微信或已关注微信插件" alike (developer.work.weixin.qq.com/document/path/90196)."""
    form = await request.post()
    userid = _field(form, "userid").strip()
    try:
        request.app[WECOM_SANDBOX_STATE].set_uses_wecom_app(userid, True)
    except SandboxError:
        return _app_login_form(request, userid=userid, done=None, error="通讯录中没有这个成员")
    return _app_login_form(request, userid="", done=userid, error=None)


def _app_login_form(
    request: web.Request, *, userid: str, done: str | None, error: str | None
) -> web.Response:
    return _render(request, "sandbox/wecom_app_login.html", {
        "userid": userid, "done": done, "error": error, "action": _url(request, APP_LOGIN),
    }, status=400 if error else 200)


async def _wechat_page(request: web.Request) -> web.Response:
    return _wechat_form(request, error=None, name="", phone="")


def _wechat_form(request: web.Request, *, error: str | None, name: str, phone: str) -> web.Response:
    state = request.app[WECOM_SANDBOX_STATE]
    current = _current(request)
    return _render(request, "sandbox/wecom_wechat.html", {
        "current": current,
        "wechats": [
            {
                "w": w,
                "masked": masked(w.phone),
                "member": _member_name(state, state.followed_member(w.wechat_id)),
            }
            for w in state.wechats.values()
        ],
        "next": _next(request),
        "error": error,
        "name": name,
        "phone": phone,
        "use_action": _url(request, WECHAT_USE),
    }, status=400 if error else 200)


async def _wechat_create(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    name = _field(form, "name").strip()
    phone_text = _field(form, "phone")
    try:
        wechat = request.app[WECOM_SANDBOX_STATE].add_wechat(name, phone_text)
    except InvalidMobile:
        return _wechat_form(request, error="请输入正确的手机号", name=name, phone=phone_text)
    return _use(request, wechat, _next_of(request, _field(form, "next")))


async def _wechat_use(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    wechat = request.app[WECOM_SANDBOX_STATE].wechats.get(_field(form, "wechat"))
    if wechat is None:
        return _wechat_form(request, error="该模拟微信不存在", name="", phone="")
    return _use(request, wechat, _next_of(request, _field(form, "next")))


def _use(request: web.Request, wechat: WeChatUser, target: str) -> web.StreamResponse:
    response = _see_other(target)
    response.set_cookie(WECHAT_COOKIE, wechat.wechat_id, path=_mount(request), httponly=True, samesite="Lax")
    return response


async def _follow_page(request: web.Request) -> web.StreamResponse:
    wechat = _current(request)
    if wechat is None:
        return _pick_wechat(request)
    state = request.app[WECOM_SANDBOX_STATE]
    userid = state.followed_member(wechat.wechat_id)
    if userid is not None:
        return _followed(request, userid, just_now=False)
    return _render(request, "sandbox/wecom_follow.html", {
        "wechat": wechat, "masked": masked(wechat.phone), "qr": _url(request, FOLLOW_QR),
    })


async def _follow_submit(request: web.Request) -> web.StreamResponse:
    wechat = _current(request)
    if wechat is None:
        return _pick_wechat(request)
    outcome = request.app[WECOM_SANDBOX_STATE].try_direct_follow(wechat)
    if outcome is None:
        # 图 1-5: phones differ, so WeCom asks the WeChat to verify who it is.
        return _see_other(_url(request, VERIFY))
    return _answer_outcome(request, wechat, outcome)


async def _follow_qr(request: web.Request) -> web.Response:
    target = str(request.url.with_path(_url(request, FOLLOW)).with_query(None))
    # A standalone document (with the SVG namespace): an <img> shows nothing of an inline fragment.
    svg = _qr_svg(target)
    return web.Response(body=svg, content_type="image/svg+xml", headers=_NO_CACHE)


async def _verify_page(request: web.Request) -> web.StreamResponse:
    wechat = _current(request)
    if wechat is None:
        return _pick_wechat(request)
    return _verify_form(request, wechat, error=None, phone="")


def _verify_form(request: web.Request, wechat: WeChatUser, *, error: str | None, phone: str) -> web.Response:
    return _render(request, "sandbox/wecom_verify.html", {
        "wechat": wechat, "error": error, "phone": phone,
    }, status=400 if error else 200)


async def _verify_submit(request: web.Request) -> web.StreamResponse:
    wechat = _current(request)
    if wechat is None:
        return _pick_wechat(request)
    form = await request.post()
    text = _field(form, "phone")
    try:
        phone = wecom_mobile(text)
    except InvalidMobile:
        return _verify_form(request, wechat, error="请输入正确的手机号", phone=text)
    outcome, challenge = request.app[WECOM_SANDBOX_STATE].start_verification(wechat, phone)
    if challenge is None:
        return _answer_outcome(request, wechat, outcome)
    return _see_other(_url(request, CODE))


async def _code_page(request: web.Request) -> web.StreamResponse:
    wechat = _current(request)
    if wechat is None:
        return _pick_wechat(request)
    return _code_form(request, wechat, error=None)


def _code_form(request: web.Request, wechat: WeChatUser, *, error: str | None) -> web.Response:
    state = request.app[WECOM_SANDBOX_STATE]
    challenge = state.sms.get(wechat.wechat_id)
    if challenge is None:
        return _render(request, "sandbox/wecom_code.html", {
            "challenge": None, "error": error or "请先输入手机号获取验证码", "verify": _url(request, VERIFY),
        }, status=400)
    minutes = max(1, round(state.sms_code_ttl / 60))
    return _render(request, "sandbox/wecom_code.html", {
        "challenge": challenge,
        "masked": masked(challenge.phone),
        "minutes": minutes,
        "error": error,
        "verify": _url(request, VERIFY),
    }, status=400 if error else 200)


async def _code_submit(request: web.Request) -> web.StreamResponse:
    wechat = _current(request)
    if wechat is None:
        return _pick_wechat(request)
    form = await request.post()
    outcome, error = request.app[WECOM_SANDBOX_STATE].check_code(wechat, _field(form, "code"))
    if outcome is None:
        return _code_form(request, wechat, error=error)
    return _answer_outcome(request, wechat, outcome)


async def _unfollow_page(request: web.Request) -> web.StreamResponse:
    wechat = _current(request)
    if wechat is None:
        return _pick_wechat(request)
    state = request.app[WECOM_SANDBOX_STATE]
    userid = state.followed_member(wechat.wechat_id)
    return _render(request, "sandbox/wecom_unfollow.html", {
        "member": _member_name(state, userid), "done": False,
    })


async def _unfollow_submit(request: web.Request) -> web.StreamResponse:
    wechat = _current(request)
    if wechat is None:
        return _pick_wechat(request)
    state = request.app[WECOM_SANDBOX_STATE]
    followed = state.followed_member(wechat.wechat_id)
    name = _member_name(state, followed)
    member = state.members.get(followed) if followed else None
    was_in = member is not None and state.in_app(member)
    userid = state.unfollow(wechat)
    if member is not None:
        # A member who also uses the WeCom app stays activated: the app hears nothing then.
        request.app[WECOM_SANDBOX_PUSHER].push_membership(member, was_in=was_in)
    return _render(request, "sandbox/wecom_unfollow.html", {"member": name, "done": userid is not None})


async def _authorize(request: web.Request) -> web.StreamResponse:
    state = request.app[WECOM_SANDBOX_STATE]
    query = request.query
    redirect_uri = query.get("redirect_uri", "")
    problem = None
    if query.get("appid") != state.corp_id:
        problem = "参数错误：appid 不是本企业的 CorpID"
    elif query.get("response_type") != "code":
        problem = "参数错误：response_type 必须为 code"
    elif not _absolute_http(redirect_uri):
        problem = "参数错误：redirect_uri 必须是完整的 http(s) 地址"
    elif not set(query.get("state", "")) <= _STATE_CHARS or len(query.get("state", "")) > 128:
        problem = "参数错误：state 只能包含字母和数字，且不超过 128 字节"
    if problem is not None:
        return _render(
            request, "sandbox/wecom_message.html", {"title": "无法授权", "message": problem}, status=400
        )
    wechat = _current(request)
    if wechat is None:
        return _pick_wechat(request)
    code = state.issue_code(wechat)
    return _redirect_with_code(redirect_uri, code, query.get("state", ""))


# outcomes


def _answer_outcome(request: web.Request, wechat: WeChatUser, outcome: FollowOutcome) -> web.StreamResponse:
    state = request.app[WECOM_SANDBOX_STATE]
    if outcome.already_followed is not None:
        return _render(request, "sandbox/wecom_message.html", {
            "title": "无法关注", "message": _NOT_ONE_MEMBER,
            "detail": f"当前已关注的成员：{_member_name(state, outcome.already_followed)}",
            "code": "ONE_WECHAT_ONE_MEMBER", "link": _url(request, UNFOLLOW), "link_text": "取消关注",
        }, status=409)
    if outcome.error is not None:
        return _guide_error(request, outcome.error)
    if outcome.userid is None:
        raise RuntimeError("sandbox: a follow outcome without error, conflict or member")
    admission = request.app[WECOM_SANDBOX_ADMISSION]
    if admission is not None:
        # 二次验证: the member joins only once the service's admission page calls user/authsucc.
        state.pending_admissions[outcome.userid] = wechat.wechat_id
        return _redirect_with_code(admission, state.issue_code(wechat), "")
    member = state.member(outcome.userid)
    was_in = state.in_app(member)
    state.follow(member.userid, wechat)
    # subscribe only when the member joins the app: activated now, and inside its visible range.
    request.app[WECOM_SANDBOX_PUSHER].push_membership(member, was_in=was_in)
    return _followed(request, outcome.userid, just_now=True)


def _followed(request: web.Request, userid: str, *, just_now: bool) -> web.Response:
    state = request.app[WECOM_SANDBOX_STATE]
    return _render(request, "sandbox/wecom_followed.html", {
        "member": _member_name(state, userid), "userid": userid, "just_now": just_now,
        "unfollow": _url(request, UNFOLLOW),
    })


def _guide_error(request: web.Request, code: FollowError) -> web.Response:
    help_url = request.app[WECOM_SANDBOX_HELP]
    return _render(request, "sandbox/wecom_error.html", {
        "code": code, "screen": FOLLOW_ERROR_SCREENS[code], "verify": _url(request, VERIFY),
        "help": f"{help_url}#{code}" if help_url else None,
    }, status=409)


def _pick_wechat(request: web.Request) -> web.Response:
    return _see_other(_url(request, WECHAT) + "?" + urlencode({"next": request.path_qs}))


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, **_NO_CACHE})


def _redirect_with_code(redirect_uri: str, code: str, state: str) -> web.Response:
    base, hash_mark, fragment = redirect_uri.partition("#")
    joiner = "&" if "?" in base else "?"
    target = f"{base}{joiner}{urlencode({'code': code, 'state': state})}{hash_mark}{fragment}"
    return web.Response(status=302, headers={"Location": target, **_NO_CACHE})


# helpers


@functools.lru_cache(maxsize=8)
def _qr_svg(target: str) -> bytes:
    out = io.BytesIO()
    segno.make(target, error="m").save(out, kind="svg", scale=6, border=4, xmldecl=True, title=target)
    return out.getvalue()


def _render(
    request: web.Request, template: str, context: dict[str, Any], *, status: int = 200
) -> web.Response:
    state = request.app[WECOM_SANDBOX_STATE]
    base = {
        "corp_name": state.corp_name,
        "home": _url(request, HOME),
        "wechat_page": _url(request, WECHAT),
        "follow": _url(request, FOLLOW),
        "verify_action": _url(request, VERIFY),
        "code_action": _url(request, CODE),
        "unfollow_action": _url(request, UNFOLLOW),
        "current_wechat": _current(request),
    }
    response = aiohttp_jinja2.render_template(
        template, request, {**base, **context}, app_key=TEMPLATES, status=status
    )
    response.headers.update(_NO_CACHE)
    return response


def _current(request: web.Request) -> WeChatUser | None:
    wechat_id = request.cookies.get(WECHAT_COOKIE)
    if not wechat_id:
        return None
    state = request.app[WECOM_SANDBOX_STATE]
    # Looked up by comparing every id, so the cookie's value cannot be probed by timing.
    found = None
    for known, wechat in state.wechats.items():
        if hmac.compare_digest(known.encode(), wechat_id.encode("utf-8", "surrogatepass")):
            found = wechat
    return found


def _member_name(state: WeComSandboxState, userid: str | None) -> str | None:
    if userid is None:
        return None
    member = state.members.get(userid)
    return f"{member.name}（{userid}）" if member is not None else userid


def _url(request: web.Request, name: str) -> str:
    return str(request.app.router[name].url_for())


def _mount(request: web.Request) -> str:
    return _url(request, HOME).rstrip("/") or "/"


def _next(request: web.Request) -> str:
    return _next_of(request, request.query.get("next", ""))


def _next_of(request: web.Request, target: str) -> str:
    # Only a path inside the emulator: never an open redirect.
    mount = _mount(request)
    parts = urlsplit(target)
    inside = target.startswith(mount.rstrip("/") + "/") or target == mount
    if target and not parts.scheme and not parts.netloc and inside and "\\" not in target:
        return target
    return _url(request, FOLLOW)


def _field(form: Any, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _absolute_http(url: str) -> bool:
    if not url or not all("!" <= char <= "~" for char in url):
        return False
    parts = urlsplit(url)
    return parts.scheme in {"http", "https"} and bool(parts.netloc)
