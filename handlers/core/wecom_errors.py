"""WeCom's refusals as one typed family: the client raises them, the rules and the pages act on them.

Each class a caller acts on has its errcode; configuration errors carry the remedy an operator
needs, in the message itself (`/ready`, reconcile and the logs show it as it is). The codes and
their meaning are WeCom's global error codes (developer.work.weixin.qq.com/document/path/90313).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import ClassVar, Final

_FROM_IP: Final = re.compile(r"from ip:\s*([0-9A-Fa-f:.]{3,45})")


class WeComError(Exception):
    """A WeCom API call failed; errcode and errmsg are WeCom's (or -1 with our reason for transport)."""

    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(f"WeCom errcode {errcode}: {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg


class WeComUnavailable(WeComError):
    """WeCom did not answer usefully within the retry budget (busy, 5xx, timeouts, unreachable)."""


class WeComUnanswered(WeComUnavailable):
    """The request may have reached WeCom, but no answer came (timeouts, 5xx): a write may have applied."""


class RateLimited(WeComUnavailable):
    """45009: WeCom blocks this caller for a minute or an hour; retrying within seconds is futile."""


class CallBudgetSpent(RateLimited):
    """This process's budget for a WeCom API (WECOM_BIND_WECOM_CALLS_PER_MINUTE, kept under WeCom's
    limit, document/path/90312) has no call left now, and the caller would not wait: a student's
    request, whose page says 稍后再试. Nothing was sent to WeCom."""

    def __init__(self, api: str) -> None:
        super().__init__(45009, f"{api}: this process's call budget is spent for now; nothing was sent")
        self.api = api


class WeComRefusal(WeComError):
    """WeCom answered with an errcode: it decided, and asking again the same way changes nothing."""


class MobileExists(WeComRefusal):
    """60104: another member already has this mobile (rule I1, enforced by WeCom)."""


class UserIdExists(WeComRefusal):
    """60102: the userid is taken."""


class UserNotFound(WeComRefusal):
    """60111: no member has this userid, or (WeCom's own list of causes, 90313 60111: "d) 成员不在应用
    可见范围内") none that this secret may see: from the app's secret it may mean 60011."""


class MobileNotFound(WeComRefusal):
    """46004 from user/getuserid: no member has this mobile, or none inside the app's visible range
    (90313 46004: "根据手机号或邮箱地址查userid时，传入的手机号或邮箱不存在企业通讯录中，
    或者不在应用的可见范围之内")."""


class MobileInvalid(WeComRefusal):
    """60103: WeCom refuses the mobile number."""


class NoOpenid(WeComRefusal):
    """41054 from user/convert_to_openid: no WeChat follows as the member, who joined through the WeCom
    app only. A normal member, not a failure: its subscribe is a join with nothing to convert. (The
    errcode is what the emulator answers and what the demo saw; WeCom's pages name none for it.)"""


class InvalidCode(WeComRefusal):
    """40029: the OAuth code is unknown, used or expired."""


class ConfigurationError(WeComRefusal):
    """The settings or the admin console are wrong: never retried; the message names the remedy."""

    remedy: ClassVar[str] = "check the WeCom settings against docs/wecom-setup.md"
    whole_secret: ClassVar[bool] = True
    """Whether every call with this secret fails alike (not only calls about one member)."""

    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(errcode, errmsg)
        self.args = (f"WeCom errcode {errcode}: {self.describe()}",)

    def describe(self) -> str:
        """What is wrong and what the administrator does about it, in one line."""
        return f"{self.remedy} (errmsg: {self.errmsg[:120]})"


class InvalidSecret(ConfigurationError):
    """40001: the secret is not valid for this corp."""

    remedy = (
        "the secret is wrong: copy it again from the admin console (the app's Secret into "
        "WECOM_BIND_APP_SECRET, 通讯录同步's Secret into WECOM_BIND_CONTACTS_SECRET); WeCom blocks an IP "
        "that keeps presenting a wrong secret"
    )


class InvalidCorpId(ConfigurationError):
    """40013: the corp id is not valid."""

    remedy = "the corp id is wrong: copy 我的企业 → 企业信息 → 企业ID into WECOM_BIND_CORP_ID"


class ApiForbidden(ConfigurationError):
    """48002: this secret may not call the API (e.g. a write with the app's secret)."""

    remedy = (
        "this secret may not call this API: contacts writes and reconcile need the contacts-sync secret "
        "(WECOM_BIND_CONTACTS_SECRET, 管理工具 → 通讯录同步, with API 编辑通讯录 on)"
    )


class _UntrustedIp(ConfigurationError):
    """A secret used from an address the admin console does not trust."""

    where: ClassVar[str] = ""

    def describe(self) -> str:
        found = _FROM_IP.search(self.errmsg)
        address = found.group(1) if found else "this server's public IP"
        return f"add {address} to {self.where}"


class ContactsUntrustedIp(_UntrustedIp):
    """48009: the contacts-sync secret was used from an IP outside its trusted list (since 2022-08-15)."""

    remedy = "the contacts-sync secret works only from trusted IPs"
    where = (
        "管理工具 → 通讯录同步 → 企业可信IP (the contacts-sync secret works only from trusted IPs; from an"
        " address trusted after 2022-08-15 it writes members but may not read them, and the service then"
        " reads with the app's secret)"
    )


class AppUntrustedIp(_UntrustedIp):
    """60020 on a call with the app's secret: used from an IP outside the app's 企业可信IP."""

    remedy = "the app's secret works only from the app's trusted IPs"
    where = "应用管理 → the app → 企业可信IP"


class ContactsUntrustedAddress(_UntrustedIp):
    """60020 on a call with the contacts-sync secret: used from an IP outside the assistant's own
    企业可信IP, a list apart from the app's (document/path/90313, 60020: "若调用者是企业自建应用或
    通讯录同步助手，请确认该IP是本企业服务器IP，并已经配置到应用详情的'企业可信IP'项目中")."""

    remedy = "the contacts-sync secret works only from the assistant's trusted IPs"
    where = "管理工具 → 通讯录同步 → 企业可信IP (the contacts-sync assistant's own list, not the app's)"


class OutsideVisibleRange(ConfigurationError):
    """60011: the member or department is outside the secret's visible range (可见范围)."""

    remedy = (
        "the member is outside this secret's visible range: widen the app's 可见范围 (应用管理 → the app) "
        "to the students' departments, or use the contacts-sync secret"
    )
    whole_secret = False


class WrongAgent(ConfigurationError):
    """301002: this secret may not act for the app named by the AgentId."""

    remedy = (
        "the AgentId does not belong to this secret: WECOM_BIND_AGENT_ID and WECOM_BIND_APP_SECRET must "
        "come from the same app (应用管理 → the app)"
    )


_ERRORS: Final[Mapping[int, type[WeComError]]] = {
    40001: InvalidSecret,
    40013: InvalidCorpId,
    48002: ApiForbidden,
    48009: ContactsUntrustedIp,
    60020: AppUntrustedIp,
    60011: OutsideVisibleRange,
    301002: WrongAgent,
    45009: RateLimited,
    60104: MobileExists,
    60102: UserIdExists,
    60111: UserNotFound,
    46004: MobileNotFound,
    60103: MobileInvalid,
    40029: InvalidCode,
    41054: NoOpenid,
}


def error_for(errcode: int, errmsg: str, *, contacts: bool = False) -> WeComError:
    """The typed error for an errcode WeCom answered (an unknown one is a plain WeComRefusal);
    contacts: the call was made with the contacts-sync secret (60020 then names its own list)."""
    if errcode == 60020 and contacts:
        return ContactsUntrustedAddress(errcode, errmsg)
    return _ERRORS.get(errcode, WeComRefusal)(errcode, errmsg)
