"""A WeCom member's status, as user/get and user/list answer it, and the store's record of WeCom's word
on a member (MemberSeen)."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Final


class MemberStatus(enum.IntEnum):
    """user/get's status (developer.work.weixin.qq.com/document/path/90196: "激活状态: 1=已激活，
    2=已禁用，4=未激活，5=退出企业"). The app's secret reads it even where it hides the mobile.

    已激活 means following the WeChat plugin or logged in to the WeCom app; WeCom then ignores a
    mobile written by user/update and answers errcode 0 all the same (document/path/90197:
    "若成员已激活企业微信，则需成员自行修改（此情况下该参数被忽略，但不会报错）").
    """

    ACTIVATED = 1
    DISABLED = 2
    NOT_ACTIVATED = 4
    QUIT = 5

    @property
    def label(self) -> str:
        """WeCom's own word for the status, as the admin console shows it."""
        return _LABELS[self]


USERID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-@.]{0,63}\Z")
"""A WeCom userid (student id) as user/create allows it (developer.work.weixin.qq.com/document/path/90195:
"长度为1~64个字节。只能由数字、字母和“_-@.”四种字符组成，且第一个字符必须是数字或字母")."""


_LABELS = {
    MemberStatus.ACTIVATED: "已激活",
    MemberStatus.DISABLED: "已禁用",
    MemberStatus.NOT_ACTIVATED: "未激活",
    MemberStatus.QUIT: "退出企业",
}


SEEN_SOURCES: Final = frozenset({"sync", "login", "subscribe", "unsubscribe", "change_contact", "admin"})
"""Where the service heard WeCom's word on a member: `wecom-bind sync`, a student's login (user/get),
a callback event, or an administrator."""


@dataclass(frozen=True, slots=True)
class MemberSeen:
    """What WeCom last said about a member: its status (None: WeCom has no such member), when, and where
    the service heard it (one of SEEN_SOURCES)."""

    member_id: str
    status: MemberStatus | None
    seen_at: float
    source: str

    def __post_init__(self) -> None:
        if not self.member_id:
            raise ValueError("a member seen needs a member id")
        if self.source not in SEEN_SOURCES:
            raise ValueError(f"unknown source of a member seen: {self.source!r}")
        if self.status is not None and not isinstance(self.status, MemberStatus):
            raise TypeError("a member seen's status is a MemberStatus or None")
