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
