"""The admission page of WeCom's second verification (二次验证): /wecom/admit?code=.

WeCom sends a joining member here with a code. The page resolves the code, hands the member and the
WeChat's openid to the admission rules, and shows what they decided: admitted, or why not with the
guide's cause and remedy. Two APIs, by WECOM_BIND_TFA_MODE, both with the contacts-sync secret: tfa
(the default) resolves the code with auth/get_tfa_info and admits with user/tfa_succ and the single-use
tfa_code (document/path/99499, 99500: "仅『通讯录同步』或者自建应用可调用"); authsucc resolves it with
auth/getuserinfo and admits with user/authsucc (document/path/90203: "企业收到code后，使用'通讯录同步
助手'调用接口'根据code获取成员信息'"), which WeCom's own errcode 50001 contradicts ("来源于通讯录同步
助手：仅可同步通讯录，不可用于发消息或者消费code"), so it stays an option only.
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Final

from aiohttp import web

from callback_service import compose
from callback_service.client_address import client_of
from callback_service.clients.wecom import (
    WECOM_APP,
    WECOM_CONTACTS,
    InvalidCode,
    OAuthIdentity,
    WeComClient,
    WeComError,
    WeComRefusal,
    WeComUnavailable,
)
from callback_service.compose import SETTINGS
from callback_service.metrics import METRICS
from callback_service.store import PAGES_STORE
from callback_service.web.pages.render import message, page, render, url
from handlers.core.binding import Actor
from handlers.core.guide import GUIDE
from handlers.usecases.admission import AdmissionRefusal, AdmissionWeCom, Admitted

log: Final = logging.getLogger(__name__)

_CODE: Final = re.compile(r"[A-Za-z0-9._\-]{1,512}\Z")
CODE_MEMORY: Final = 3600.0
"""Seconds a resolved code is remembered, so that it admits once whatever WeCom does with a replay."""

ONE_TO_ONE: Final = (
    "企业号关注过程中，“企业号通讯录”成员与个人微信号为一对一关系，即一个通讯录成员不允许同时使用多个微信号"
    "关注企业号，一个微信号也不能同时被多个成员用于关注企业号。"
)
"""The guide's 1.2, note 3: the rule (I4) behind the two one-WeChat refusals."""

REFUSALS: Final[dict[AdmissionRefusal, tuple[str, str, str | None]]] = {
    AdmissionRefusal.NOT_BOUND: (
        "尚未完成认证绑定",
        "您尚未完成手机号认证绑定，暂时无法加入企业号。请先按“1.3 关注企业号的具体步骤”中的步骤2和步骤3，"
        "扫描二维码登录统一身份认证并绑定手机号，绑定成功后再重新关注企业号。",
        None,
    ),
    AdmissionRefusal.MEMBER_FOLLOWED_BY_OTHER: (
        "账号已被其他微信号关注",
        "您的账号已使用其他个人微信号关注了企业号。若需改用当前微信号，请先使用已关注的个人微信取消关注，"
        "再使用当前微信号重新关注。如您已取消关注仍看到此页面，请联系学校信息中心。",
        ONE_TO_ONE,
    ),
    AdmissionRefusal.WECHAT_FOLLOWS_OTHER: (
        "微信号已关注其他成员",
        "当前个人微信号已以其他成员的身份关注了企业号。请确保该微信号尚未关注企业号，否则请先取消关注，"
        "再以本人身份重新关注。",
        ONE_TO_ONE,
    ),
}
"""What each refusal says above the guide's entry: a headline, the remedy, and the rule behind it."""

TFA_REFUSALS: Final[dict[int, tuple[str, str, str]]] = {
    # go-workwx errcodes (WeCom's global codes, 90313): "40208 验证的用户不在二次验证生效范围内".
    40208: (
        "无需在此验证",
        "您的账号不在企业号“二次验证”的生效范围内，本页面无法为您完成验证。请返回微信或企业微信重新进入企业号；"
        "如仍无法加入，请联系{contact}。",
        "40208: the member is outside 二次验证's 生效范围 (管理工具 → 二次验证 in the admin console)",
    ),
    # "40209 oauth跳转域名与二次验证的域名不匹配".
    40209: (
        "验证页面配置有误",
        "企业号二次验证页面的地址与企业号的设置不一致，您暂时无法完成验证。"
        "这不是您的操作问题，请联系{contact}。",
        "40209: the 二次验证 page's domain differs from the OAuth domain: set the page to this service's "
        "/wecom/admit and the domain as the app's 可信域名",
    ),
    # "40210 未配置二次验证url".
    40210: (
        "验证页面尚未配置",
        "企业号尚未配置二次验证页面，您暂时无法完成验证。这不是您的操作问题，请联系{contact}。",
        "40210: no 二次验证 page is configured: set it to this service's /wecom/admit in the admin console",
    ),
}
"""The tfa flow's own errcodes: a headline, what the student is told, and the operator's remedy (logged)."""


@page
async def admit(request: web.Request) -> web.StreamResponse:
    """/wecom/admit?code=: resolve the code, apply the admission rules, call user/authsucc."""
    code = request.query.get("code", "")
    if not _CODE.match(code):
        return _link_spent(request, status=400)
    app = request.app
    wecom = app[WECOM_APP]
    contacts = app[WECOM_CONTACTS]
    admitter: AdmissionWeCom = contacts
    try:
        if app[SETTINGS].tfa_mode == "tfa":
            # A code of a WeChat that is no member has no tfa_code either: WeCom answers 40029.
            info = await contacts.get_tfa_info(code)
            identity = OAuthIdentity(userid=info.userid, openid=None)
            admitter = _TfaAdmission(contacts, info.userid, info.tfa_code)
        else:
            identity = await contacts.get_user_info(code)
    except InvalidCode:
        log.info("admit: an OAuth code was used, expired or unknown")
        return _link_spent(request)
    except WeComRefusal as exc:
        if exc.errcode not in TFA_REFUSALS:
            raise
        return _tfa_refused(request, exc.errcode)
    digest = hashlib.sha256(code.encode()).hexdigest()
    if not await app[PAGES_STORE].kv_set_if_absent(f"admit-code:{digest}", "1", ttl=CODE_MEMORY):
        log.warning("admit: an OAuth code was presented again and resolved again")
        return _link_spent(request)
    openid = identity.openid
    if openid is None and identity.userid is not None:
        openid = await _openid_of(wecom, identity.userid)
    gate = compose.admission_gate(store=app[PAGES_STORE], wecom=admitter, metrics=app[METRICS])
    source = f"admission-page {client_of(request)}"
    actor = Actor(who=identity.userid or openid or "unknown", source=source)
    try:
        result = await gate.admit(identity.userid, openid, actor=actor)
    except WeComUnavailable:
        raise
    except WeComError as exc:
        if exc.errcode in TFA_REFUSALS:
            return _tfa_refused(request, exc.errcode)
        log.warning("admit: WeCom refused user/authsucc for %s: errcode %s", identity.userid, exc.errcode)
        return message(
            request,
            title="验证未完成",
            text="企业号未能完成本次验证，您尚未加入企业号。请重新扫描企业号关注二维码；如仍失败，请联系学校信息中心。",
            status=502,
        )
    if isinstance(result, Admitted):
        return render(request, "admit.html", {"admitted": result})
    headline, remedy, rule = REFUSALS[result.reason]
    return render(
        request,
        "admit_refused.html",
        {
            "reason": result.reason.value,
            "headline": headline,
            "remedy": remedy,
            "rule": rule,
            "entry": GUIDE[result.reason.code],
            "bind_first": result.reason is AdmissionRefusal.NOT_BOUND,
        },
        status=403,
    )


class _TfaAdmission:
    """The gate's admission through user/tfa_succ, with the tfa_code that came with the code."""

    def __init__(self, contacts: WeComClient, userid: str, tfa_code: str) -> None:
        self._contacts = contacts
        self._userid = userid
        self._tfa_code = tfa_code

    async def auth_succ(self, userid: str) -> None:
        """user/tfa_succ for the member the code was issued for."""
        if userid != self._userid:
            raise WeComError(-1, "the tfa_code belongs to another member")
        await self._contacts.tfa_succ(userid, self._tfa_code)


async def _openid_of(wecom: WeComClient, userid: str) -> str | None:
    """The openid WeCom knows the member's WeChat by, or None when it tells none (not joined yet)."""
    try:
        return await wecom.convert_to_openid(userid)
    except WeComUnavailable:
        raise
    except WeComError as exc:
        log.info("admit: no openid for member %s yet (errcode %s)", userid, exc.errcode)
        return None


def _tfa_refused(request: web.Request, errcode: int) -> web.Response:
    """The page of one of the tfa flow's errcodes; the operator's remedy goes to the log."""
    title, text, remedy = TFA_REFUSALS[errcode]
    log.warning("admit: %s", remedy)
    contact = request.app[SETTINGS].help_contact
    status = 403 if errcode == 40208 else 502
    return message(request, title=title, text=text.format(contact=contact), status=status,
                   link=(url(request, "help"), "查看常见问题"))


def _link_spent(request: web.Request, *, status: int = 400) -> web.Response:
    return message(
        request,
        title="链接已失效",
        text="该验证链接已使用或已过期（每个链接只能使用一次）。若您刚才已验证通过，可直接在微信中打开企业号；"
        "否则请重新扫描企业号关注二维码。",
        status=status,
        link=(url(request, "me"), "查看我的绑定"),
    )
