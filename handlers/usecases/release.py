"""An administrator's release of a binding, in the store and, where WeCom allows it, in WeCom.

The store frees the phone and the binding (audited). WeCom still holds the mobile, and its 60104
would refuse the next student who types it (2.1): so the release clears it there too where that is
right and allowed. Only a member the flow created (user/create) and that never activated has its
mobile cleared; an activated member's mobile is the member's own to change (user/update ignores it,
document/path/90197); WeCom refuses to leave a member with neither mobile nor email (60129), and then
the administrator clears it in the console.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Final, Protocol

from handlers.core.binding import Actor
from handlers.core.member import MemberStatus
from handlers.core.phone import mask_phone
from handlers.core.wecom_errors import UserNotFound, WeComError, WeComRefusal
from handlers.usecases.binding_flow import created_key
from handlers.usecases.contacts import MemberReader
from handlers.usecases.contracts import ReleaseStore

log: Final = logging.getLogger(__name__)

NO_MOBILE_NOR_EMAIL: Final = 60129
"""WeCom's refusal of a member left with neither mobile nor email (90313: "成员手机和邮箱都为空")."""


class MobileWriter(Protocol):
    """user/update of the mobile (the contacts-sync secret)."""

    async def user_update(self, userid: str, *, mobile: str | None = None) -> None:
        """user/update: mobile="" clears the member's mobile."""
        ...


class InWeCom(enum.StrEnum):
    """What became of the released phone in WeCom."""

    CLEARED = "cleared"
    """The member's mobile was cleared: the phone is free in WeCom too."""
    KEPT_ACTIVATED = "kept_activated"
    """The member has activated: WeCom keeps the mobile until the member changes it."""
    KEPT_NO_EMAIL = "kept_no_email"
    """WeCom refused an empty mobile (60129): the administrator clears it in the console."""
    KEPT_NOT_CREATED = "kept_not_created"
    """The member existed before the flow: its mobile is the administrator's to change."""
    NO_MEMBER = "no_member"
    """WeCom has no such member: nothing holds the phone there."""
    NOTHING = "nothing"
    """There was no binding, or it held no phone."""


@dataclass(frozen=True, slots=True)
class Released:
    """What a release did: in the store (released), and in WeCom (in_wecom), the phone masked."""

    member_id: str
    released: bool
    phone_masked: str | None
    in_wecom: InWeCom


async def release(
    store: ReleaseStore, writer: MobileWriter, reader: MemberReader, member_id: str, *, actor: Actor
) -> Released:
    """Free the member's binding in the store, then the phone in WeCom where WeCom allows it;
    WeCom's outages and refusals other than 60129 propagate, after the store's release."""
    binding = await store.get_binding(member_id)
    phone = binding.phone if binding is not None else None
    released = await store.delete_member(member_id, actor=actor)
    masked = mask_phone(phone) if phone else None
    if not released or phone is None:
        return Released(member_id, released, masked, InWeCom.NOTHING)
    try:
        member = await reader.user_get(member_id)
    except UserNotFound:
        return Released(member_id, released, masked, InWeCom.NO_MEMBER)
    if member.status == MemberStatus.ACTIVATED:
        return Released(member_id, released, masked, InWeCom.KEPT_ACTIVATED)
    if await store.kv_get(created_key(member_id)) is None:
        return Released(member_id, released, masked, InWeCom.KEPT_NOT_CREATED)
    try:
        await writer.user_update(member_id, mobile="")
    except WeComRefusal as exc:
        if exc.errcode != NO_MOBILE_NOR_EMAIL:
            raise
        return Released(member_id, released, masked, InWeCom.KEPT_NO_EMAIL)
    except WeComError:
        log.warning("release: member %s's mobile could not be cleared in WeCom", member_id)
        raise
    log.info("release: member %s's mobile %s cleared in WeCom", member_id, masked)
    return Released(member_id, released, masked, InWeCom.CLEARED)


_IN_WECOM: dict[InWeCom, str] = {
    InWeCom.CLEARED: (
        "its mobile {phone} was cleared in WeCom too: the phone is free for another student"
    ),
    InWeCom.KEPT_ACTIVATED: (
        "WeCom keeps the mobile {phone}: the member has activated (已激活), and WeCom lets only the member "
        "change it (企业微信 → 我 → 个人信息 → 手机; user/update ignores it, document/path/90197). "
        "Until then WeCom refuses {phone} to any other member (60104, 2.1)"
    ),
    InWeCom.KEPT_NO_EMAIL: (
        "WeCom keeps the mobile {phone}: it refuses a member with neither mobile nor email (60129). In the "
        "admin console, 通讯录 → the member → 编辑: give an email and clear the mobile, or delete the member "
        "(this service created it and it never activated)"
    ),
    InWeCom.KEPT_NOT_CREATED: (
        "WeCom keeps the mobile {phone}: the member existed before this service wrote it, so the service "
        "leaves it; clear it in the admin console (通讯录 → the member → 编辑) if another student needs it"
    ),
    InWeCom.NO_MEMBER: "WeCom has no such member: nothing holds {phone} there",
    InWeCom.NOTHING: "",
}


def describe_release(done: Released) -> str:
    """What a release did, in one or two lines; the phone masked."""
    if not done.released:
        return f"member {done.member_id}: no binding to release"
    line = f"member {done.member_id}: binding released"
    wecom = _IN_WECOM[done.in_wecom].format(phone=done.phone_masked or "-")
    return line if not wecom else f"{line}\n  {wecom}"
