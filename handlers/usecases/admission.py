"""The admission gate of WeCom's second verification (二次验证): who may join, by the binding rules.

With second verification on, WeCom sends a joining member to the admission page with an OAuth
code; the page resolves it to the member's userid (and the WeChat's openid when WeCom tells it),
and these rules decide: the member must have completed binding (the guide's steps 2 and 3), or be
recorded as joined by WeCom's own word (a member activated before the service existed, recorded by
`wecom-bind sync` or a later event), and one member, one WeChat (I4) must hold. Only then is
user/authsucc called, after which WeCom pushes `subscribe`, whose handler records the follow (and
checks I4 again, atomically, in the store).
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Final, Protocol

from handlers.core.binding import Actor, Binding, BindingState
from handlers.core.guide import ErrorCode
from handlers.core.member import MemberSeen, MemberStatus
from handlers.core.phone import mask_phone
from handlers.core.rules import OneWeChat, one_wechat
from handlers.usecases.conflicts import Counters, record_conflict
from handlers.usecases.contracts import AdmissionStore

log: Final = logging.getLogger(__name__)


class AdmissionWeCom(Protocol):
    """What the gate needs from WeCom's API (with the contacts-sync secret, as second verification's
    calls are made)."""

    async def auth_succ(self, userid: str) -> None:
        """user/authsucc: let the member join; WeCom then pushes subscribe."""
        ...


class AdmissionRefusal(enum.StrEnum):
    """Why a joining member is not admitted."""

    NOT_BOUND = "not_bound"
    """Not a member, no binding, or only a claim pending, and not recorded as joined: binding (steps
    2 and 3) comes first."""
    MEMBER_FOLLOWED_BY_OTHER = "member_followed_by_other"
    """I4: the member already follows with another WeChat (or one we cannot tell apart from it)."""
    WECHAT_FOLLOWS_OTHER = "wechat_follows_other"
    """I4: this WeChat already follows as another member."""

    @property
    def code(self) -> ErrorCode:
        """The guide's error whose cause and remedy the page shows."""
        # 2.3's second cause is "not yet a member of the contacts", its remedy steps 2 and 3;
        # 2.4 is the guide's own word for a follow that another identity holds.
        if self is AdmissionRefusal.NOT_BOUND:
            return ErrorCode.PHONE_NOT_IN_CONTACTS
        return ErrorCode.PHONE_VERIFIED_BY_OTHER

    @property
    def is_conflict(self) -> bool:
        """True for a refusal by rule I4, which goes to the audit log as a conflict."""
        return self is not AdmissionRefusal.NOT_BOUND


@dataclass(frozen=True, slots=True)
class Admitted:
    """user/authsucc was called: WeCom lets the member join and will push subscribe."""

    member_id: str
    phone_masked: str | None
    already_followed: bool


@dataclass(frozen=True, slots=True)
class AdmissionRefused:
    """The member may not join; nothing was called at WeCom."""

    member_id: str | None
    reason: AdmissionRefusal


AdmissionResult = Admitted | AdmissionRefused


def judge(
    member_id: str | None,
    openid: str | None,
    binding: Binding | None,
    openid_holder: Binding | None,
    seen: MemberSeen | None = None,
) -> AdmissionRefusal | None:
    """The rules of admission, pure: None admits, else the first rule that refuses.

    binding is the member's, openid_holder the binding that the joining WeChat's openid follows
    as (None when the openid is unknown or follows as nobody), seen WeCom's last word on the member
    as the store recorded it: a member WeCom said has joined (已激活) passes as a bound one does.
    """
    joined = seen is not None and seen.member_id == member_id and seen.status is MemberStatus.ACTIVATED
    unbound = binding is None or binding.state is BindingState.PENDING
    if member_id is None or (unbound and not joined):
        return AdmissionRefusal.NOT_BOUND
    # I4 as the rules state it. When WeCom does not tell the joining WeChat's openid, a member
    # followed in the store cannot be shown to rejoin with the same WeChat: the gate stays closed.
    holder = None if openid_holder is None else openid_holder.member_id
    broken = one_wechat(member_id, binding, openid, lambda: holder)
    if broken is OneWeChat.MEMBER_FOLLOWS_AS_ANOTHER:
        return AdmissionRefusal.MEMBER_FOLLOWED_BY_OTHER
    if broken is OneWeChat.WECHAT_FOLLOWS_AS_ANOTHER:
        return AdmissionRefusal.WECHAT_FOLLOWS_OTHER
    return None


class AdmissionGate:
    """Admits a joining member by the rules, over the store (bindings and the members recorded as
    joined) and WeCom's user/authsucc."""

    def __init__(
        self, *, store: AdmissionStore, wecom: AdmissionWeCom, counters: Counters | None = None
    ) -> None:
        self._store = store
        self._wecom = wecom
        self._counters = counters

    async def admit(self, member_id: str | None, openid: str | None, *, actor: Actor) -> AdmissionResult:
        """Check the rules, then call user/authsucc; store and WeCom outages propagate."""
        binding = await self._store.get_binding(member_id) if member_id is not None else None
        holder = await self._store.get_binding_by_openid(openid) if openid is not None else None
        seen = None
        if member_id is not None and (binding is None or binding.state is BindingState.PENDING):
            seen = await self._store.member_seen(member_id)
        refusal = judge(member_id, openid, binding, holder, seen)
        if refusal is not None:
            await self._refused(member_id, openid, binding, holder, refusal, actor=actor)
            return AdmissionRefused(member_id, refusal)
        if member_id is None:
            raise RuntimeError("admission: judge admitted a member without an id")
        await self._wecom.auth_succ(member_id)
        if binding is None or binding.state is BindingState.PENDING:
            log.info("admission: member %s admitted (user/authsucc): recorded as joined by WeCom (%s)",
                     member_id, seen.source if seen is not None else "-")
        else:
            log.info("admission: member %s admitted (user/authsucc)", member_id)
        shown = binding.phone if binding is not None and binding.state is not BindingState.PENDING else None
        return Admitted(
            member_id=member_id,
            phone_masked=mask_phone(shown) if shown else None,
            already_followed=binding is not None and binding.state is BindingState.FOLLOWED,
        )

    async def _refused(
        self,
        member_id: str | None,
        openid: str | None,
        binding: Binding | None,
        holder: Binding | None,
        refusal: AdmissionRefusal,
        *,
        actor: Actor,
    ) -> None:
        if not refusal.is_conflict:
            state = binding.state.value if binding is not None else "none"
            log.info("admission: member %s refused: %s (binding %s)", member_id or "-", refusal, state)
            return
        if member_id is None:
            raise RuntimeError(f"admission: conflict {refusal} without a member id")
        if refusal is AdmissionRefusal.MEMBER_FOLLOWED_BY_OTHER and binding is not None:
            joining = f"openid {openid}" if openid else "an unknown openid"
            detail = f"member followed as openid {binding.openid}, joining as {joining}"
        elif refusal is not AdmissionRefusal.MEMBER_FOLLOWED_BY_OTHER and holder is not None:
            detail = f"openid {openid} follows as member {holder.member_id}"
        else:
            raise RuntimeError(f"admission: conflict {refusal} without the binding it names")
        await record_conflict(
            self._store,
            self._counters,
            rule="I4",
            member_id=member_id,
            phone=binding.phone if binding is not None else None,
            detail=f"admission refused: {detail}",
            actor=actor,
        )
