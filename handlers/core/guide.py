"""The errors of chapter 2 of the students' guide: stable codes with the guide's own cause and remedy."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final


class ErrorCode(enum.StrEnum):
    """The stable code of each error a student can meet, as DESIGN.md names them."""

    PHONE_TAKEN = "PHONE_TAKEN"
    ACCOUNT_FOLLOWED = "ACCOUNT_FOLLOWED"
    PHONE_NOT_IN_CONTACTS = "PHONE_NOT_IN_CONTACTS"
    PHONE_VERIFIED_BY_OTHER = "PHONE_VERIFIED_BY_OTHER"


@dataclass(frozen=True, slots=True)
class GuideEntry:
    """One error of the guide: its section number, title, causes and remedies, in the guide's words."""

    code: ErrorCode
    section: str
    title: str
    causes: tuple[str, ...]
    remedies: tuple[str, ...]


# The wording is the guide's (seeds/000_5c1885cd88d7328c.txt, chapter 2). The broken cross
# references of the original ("错误!未找到引用源。") are replaced by the steps they pointed to.
GUIDE: Final[dict[ErrorCode, GuideEntry]] = {
    ErrorCode.PHONE_TAKEN: GuideEntry(
        code=ErrorCode.PHONE_TAKEN,
        section="2.1",
        title="手机号已绑定其他账号",
        causes=("当前手机号已被其他成员绑定，用于关注身份验证。",),
        remedies=(
            "“企业号通讯录”中所有成员绑定的手机号必须唯一，您只能更换其他手机号进行绑定，"
            "或者请使用该手机号的人员更换绑定其他手机号。",
        ),
    ),
    ErrorCode.ACCOUNT_FOLLOWED: GuideEntry(
        code=ErrorCode.ACCOUNT_FOLLOWED,
        section="2.2",
        title="账号已被其他手机号绑定",
        causes=("当前成员已设置绑定了其他手机号，且成功关注了企业号。",),
        remedies=(
            "若您需要重新绑定新的手机号，请先使用已关注的个人微信进行取消关注，"
            "然后才可重新进行手机号绑定。",
            # WeCom ignores a new mobile for any activated member, also one who logged in to the
            # WeCom app, who changes it there (developer.work.weixin.qq.com/document/path/90197).
            "若您已登录过企业微信App，也可以在企业微信中自行修改手机号：企业微信 → 我 → 个人信息 → 手机。",
        ),
    ),
    ErrorCode.PHONE_NOT_IN_CONTACTS: GuideEntry(
        code=ErrorCode.PHONE_NOT_IN_CONTACTS,
        section="2.3",
        title="手机号不存在于企业通讯录中",
        causes=(
            "原因一：您输入的手机号非“企业号通讯录”中已保存的手机号，即您先前绑定的手机号。",
            "原因二：您尚未成为“企业号通讯录”成员，通讯录中无您的个人信息。",
        ),
        remedies=(
            "1、手机号输入错误时，请重新输入正确的身份验证手机号码进行验证。",
            "2、尚未成为“企业号通讯录”成员，请参考“1.3 关注企业号的具体步骤”中的步骤2和步骤3，"
            "先登录统一身份认证并绑定手机号，再关注企业号。",
        ),
    ),
    ErrorCode.PHONE_VERIFIED_BY_OTHER: GuideEntry(
        code=ErrorCode.PHONE_VERIFIED_BY_OTHER,
        section="2.4",
        title="手机号已被其他成员验证",
        causes=("您手机号已被其他人员用以关注身份验证，且成功关注。",),
        remedies=(
            "参考“1.3 关注企业号的具体步骤”中的步骤3绑定新验证的手机号后，重新进行关注验证。",
        ),
    ),
}


@dataclass(frozen=True, slots=True)
class GuideStep:
    """One step of the guide's 1.3 (关注企业号的具体步骤): its number, what to do, and its notes."""

    number: int
    title: str
    details: tuple[str, ...] = ()


# The guide's 1.2 and 1.3, in its words, without its figures; "{school}" is the school's name.
RULES: Final[tuple[str, ...]] = (
    "以上操作都在个人微信号中执行，即您用来关注企业号的个人微信号。",
    "一个“企业号通讯录”成员只能绑定一个“关注身份验证”用的手机号，且所有成员的手机号必须唯一。",
    "企业号关注过程中，“企业号通讯录”成员与个人微信号为一对一关系，即一个通讯录成员不允许同时使用多个微信号关注企业号，"
    "一个微信号也不能同时被多个成员用于关注企业号。",
)
"""1.2 注意事项."""

STEPS: Final[tuple[GuideStep, ...]] = (
    GuideStep(1, "获取{school}企业号的关注二维码。"),
    GuideStep(
        2,
        "打开微信，使用发现——“扫一扫”功能扫描二维码，进入统一身份认证登录界面，使用学号及统一身份认证密码登录。",
    ),
    GuideStep(
        3,
        "进行认证绑定。",
        (
            "用户登录成功后，进入手机号绑定页面。页面展示的手机号为您“学校通讯录系统”中填入的手机号信息，"
            "若您“学校通讯录系统”个人信息中未填入手机号，页面手机号显示为空。",
            "请核实页面展示的手机号是否为您需要绑定的手机号。是：继续单击“绑定”；否：手机号为空或您需要绑定其他手机号，"
            "您可输入新的手机号。",
            "注：此处输入的手机号，系统会将其写入“企业号通讯录”中，作为后续您进行“关注身份验证”的唯一凭证。"
            "请填写您正常使用的手机号，否则无法接收验证码进行验证。",
            "单击“绑定”，进行手机号绑定。绑定成功：完成手机号绑定后，继续执行步骤4进行关注企业号；"
            "绑定失败：参照“常见问题及解答”所罗列的异常情况，解决问题后重新开始认证绑定操作。",
        ),
    ),
    GuideStep(
        4,
        "关注企业号。",
        (
            "免验证，直接关注成功：若您个人微信号所绑定的手机号与先前输入的绑定手机号一致，则无需验证，"
            "系统直接关注成功进入企业号应用列表，则本次操作完成。",
            "关注身份验证：若不一致，在验证身份页面输入您进行身份验证的手机号，单击“下一步”获取手机验证码；"
            "再将您手机接收的验证码填入“验证码”输入框，单击“验证”即可进行关注身份验证。",
            "注：您所输入的验证手机号必须为“企业号通讯录”中预留的手机号，即先前您输入绑定的手机号，"
            "否则系统会给您提示“该手机号不存在企业通讯录中”，无法进行验证。",
        ),
    ),
    GuideStep(
        5,
        "身份验证成功后，您使用的个人微信号即成功关注“{school}”企业号。",
        ("关注成功后，系统会给您“关注成功”的提示，您能查看到有权限的应用列表，则本次操作完成。",),
    ),
)
"""1.3 关注企业号的具体步骤."""

UNFOLLOW: Final = (
    "取消关注在已关注企业号的个人微信中进行：打开“{school}”企业号（企业微信插件），进入其主页，选择“取消关注”。"
    "取消关注后，“我的绑定”显示“已绑定，未关注”，即可重新绑定手机号。"
)
"""Where 取消关注 is, for 2.2's remedy (the guide says only that it is needed)."""
