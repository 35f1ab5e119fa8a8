"""WeCom's own notions, as the emulator plays them: a valid mobile and the follow's refusals.

The emulator plays the other side of the service, so it keeps these apart from the service's rules
(handlers/): when ours are wrong, the two can disagree and a test shows it.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Final

# WeCom's contacts hold mainland mobiles as 11 ASCII digits; a "+86" prefix is accepted and dropped,
# and so are the spaces and dashes a person types on its verification screen.
_MOBILE: Final = re.compile(r"(?:\+86)?(1[3-9][0-9]{9})", re.ASCII)
_TYPED_SEPARATORS: Final = re.compile(r"[ -]+")


class InvalidMobile(ValueError):
    """The text is not a mobile that WeCom's contacts accept."""


def wecom_mobile(text: str) -> str:
    """The 11 digits of a mobile as WeCom stores it (raises InvalidMobile)."""
    match = _MOBILE.fullmatch(_TYPED_SEPARATORS.sub("", text.strip()))
    if match is None:
        raise InvalidMobile("mobile invalid")
    return match.group(1)


def masked(mobile: str) -> str:
    """A mobile as WeCom's own screens show it: 138****1234."""
    return f"{mobile[:3]}****{mobile[-4:]}"


class FollowError(enum.StrEnum):
    """The refusals of the follow verification (the guide's 2.3 and 2.4), by the codes the pages use."""

    PHONE_NOT_IN_CONTACTS = "PHONE_NOT_IN_CONTACTS"
    PHONE_VERIFIED_BY_OTHER = "PHONE_VERIFIED_BY_OTHER"


@dataclass(frozen=True, slots=True)
class FollowErrorScreen:
    """What WeCom's verification screen says for a refusal."""

    title: str
    message: str


FOLLOW_ERROR_SCREENS: Final = {
    FollowError.PHONE_NOT_IN_CONTACTS: FollowErrorScreen(
        title="手机号不存在于企业通讯录中",
        message="请确认输入的是企业通讯录中预留的手机号。",
    ),
    FollowError.PHONE_VERIFIED_BY_OTHER: FollowErrorScreen(
        title="手机号已被其他成员验证",
        message="该手机号已被其他成员用于关注身份验证。",
    ),
}
