"""A WeCom member's status, as user/get and user/list answer it."""

from __future__ import annotations

import enum


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


_LABELS = {
    MemberStatus.ACTIVATED: "已激活",
    MemberStatus.DISABLED: "已禁用",
    MemberStatus.NOT_ACTIVATED: "未激活",
    MemberStatus.QUIT: "退出企业",
}
