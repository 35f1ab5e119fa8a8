"""The callback handlers: where the rules are kept after the binding page.

Each is idempotent, since the inbox may run an event more than once (a retry after a failure, or
after a crash between the handling and the inbox's bookkeeping).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Final, Protocol

from handlers.core.binding import Actor, AuditAction, Binding, BindingState, OpenidConflict, PhoneTaken
from handlers.core.events import ContactChange, Event, EventKind, Subscribe, Unsubscribe
from handlers.core.member import MemberSeen, MemberStatus
from handlers.core.phone import InvalidPhone, Phone
from handlers.core.wecom_errors import NoOpenid, OutsideVisibleRange, UserNotFound
from handlers.usecases.conflicts import Counters, record_conflict
from handlers.usecases.contacts import ContactMember
from handlers.usecases.contracts import CallbackStore
from handlers.usecases.dispatch import Dispatcher, Handler, typed

log: Final = logging.getLogger(__name__)

WELCOME_TTL: Final = 5 * 365 * 24 * 3600.0
"""How long a member's welcome is remembered: longer than a student's years at the school."""
_FLOW_ACTIONS: Final = frozenset({AuditAction.CLAIM, AuditAction.BIND})
"""The audit actions only the binding flow writes: a member with one bound through the flow."""
CALLBACK_ACTOR: Final = Actor(who="wecom", source="callback")


def welcome_key(member_id: str) -> str:
    """The store's kv key that remembers the member's welcome (sent once, kept WELCOME_TTL)."""
    return f"welcomed:{member_id}"


class WeComFollowers(Protocol):
    """What the handlers need from WeCom's API (the app's secret)."""

    async def convert_to_openid(self, member_id: str) -> str:
        """The openid of the WeChat that follows as this member."""
        ...

    async def send_text(
        self, touser: Sequence[str], content: str, *, agent_id: int, duplicate_check: bool = False
    ) -> object:
        """Send a text message from the app to members; duplicate_check: WeCom drops a repeat."""
        ...


class WeComMembers(Protocol):
    """What the contacts-sync events need: user/get, with the secret that may read the mobile."""

    async def user_get(self, userid: str) -> ContactMember:
        """user/get: a member, or UserNotFound."""
        ...




_STATUSES: Final = frozenset(int(status) for status in MemberStatus)


DEFAULT_WELCOME: Final = (
    "关注成功！欢迎使用企业号。如需更换绑定的手机号，请先取消关注，再重新进行手机号绑定。"
)


class CallbackHandlers:
    """The handlers of subscribe, unsubscribe and change_contact, over the store and WeCom."""

    def __init__(
        self,
        *,
        store: CallbackStore,
        wecom: WeComFollowers,
        counters: Counters,
        agent_id: int,
        members: WeComMembers | None = None,
        welcome: str = DEFAULT_WELCOME,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._agent_id = agent_id
        self._members = members
        self._clock = clock
        self._store = store
        self._wecom = wecom
        self._counters = counters
        self._welcome = welcome

    def dispatcher(self) -> Dispatcher:
        """The dispatch table of these handlers; other kinds are logged (the inbox stored them)."""
        table: dict[EventKind, Handler] = {
            EventKind.SUBSCRIBE: typed(Subscribe, self.subscribe),
            EventKind.UNSUBSCRIBE: typed(Unsubscribe, self.unsubscribe),
            EventKind.CREATE_USER: typed(ContactChange, self.contact_changed),
            EventKind.UPDATE_USER: typed(ContactChange, self.contact_changed),
            EventKind.DELETE_USER: typed(ContactChange, self.contact_deleted),
        }
        return Dispatcher(table, fallback=self.acknowledged)

    async def subscribe(self, event: Subscribe) -> None:
        """Record the member as joined, mark it followed by its WeChat (I4), and welcome it once if it
        bound through the flow.

        A subscribe is not a follow through us: WeCom pushes one for every activated member that enters
        the app's visible range (document/path/90376: "成员已经加入企业，管理员添加成员到应用可见范围"),
        for a member who joined through the WeCom app only (no WeChat to convert: 41054), and for
        a re-enabled member. Only a member whose binding the flow made, and who was never welcomed,
        gets the welcome.
        """
        member = event.member_id
        await self._seen(member, MemberStatus.ACTIVATED, "subscribe")
        before = await self._store.get_binding(member)
        try:
            openid = await self._wecom.convert_to_openid(member)
        except NoOpenid:
            log.info("member %s joined through the WeCom app (no WeChat follows): recorded as joined", member)
            return
        try:
            await self._store.follow(member, openid, actor=CALLBACK_ACTOR)
        except OpenidConflict:
            detail = f"openid {openid}: a second WeChat for a member, or a second member for a WeChat"
            await self._conflict("I4", member, None, detail)
            return
        if not await self._bound_through_the_flow(member, before):
            return
        # The welcome is remembered once sent, so a retried or a second subscribe does not send it again.
        key = welcome_key(member)
        if await self._store.kv_get(key) is None:
            # A send retried after a timeout may have reached WeCom: its duplicate check greets once
            # (developer.work.weixin.qq.com/document/path/90236, enable_duplicate_check).
            await self._wecom.send_text(
                [member], self._welcome, agent_id=self._agent_id, duplicate_check=True
            )
            await self._store.kv_set(key, "sent", ttl=WELCOME_TTL)

    async def _bound_through_the_flow(self, member: str, before: Binding | None) -> bool:
        """Whether the member's binding, as it was before this follow, is one the binding flow made:
        bound or claimed there (a phone set to WeCom's mobile, or a follow alone, is not)."""
        if before is None or before.state is BindingState.FOLLOWED or before.phone is None:
            return False
        records = await self._store.audit_list(member_id=member, limit=50)
        return any(record.action in _FLOW_ACTIONS for record in records)

    async def _seen(self, member: str, status: MemberStatus | None, source: str) -> None:
        await self._store.record_members([MemberSeen(member, status, self._clock(), source)])

    async def unsubscribe(self, event: Unsubscribe) -> None:
        """Mark the member unfollowed: it may now bind another phone (the remedy of 2.2); a member
        WeCom disabled is recorded as disabled and keeps its binding as it was.

        WeCom pushes unsubscribe for an unfollow, but also for a member disabled, gone, or moved out
        of the visible range (document/path/90376): the status, read with the app's secret (never
        hidden), tells them apart.
        """
        member = event.member_id
        if self._members is not None:
            status: MemberStatus | None = None
            try:
                found = await self._members.user_get(member)
            except UserNotFound:
                await self._seen(member, None, "unsubscribe")  # gone: its delete_user removes the binding
            except OutsideVisibleRange:
                pass  # moved out of the app's range: the app may no longer read it, status unknown
            else:
                if found.status in _STATUSES:
                    status = MemberStatus(found.status)
                    await self._seen(member, status, "unsubscribe")
            if status is MemberStatus.DISABLED:
                log.info("member %s was disabled in WeCom: recorded, its binding kept", member)
                return
        await self._store.unfollow(member, actor=CALLBACK_ACTOR)

    async def contact_changed(self, event: ContactChange) -> None:
        """Follow a member's new user id and mobile in WeCom, keeping I1: a clash is a conflict.

        Today's update_user carries the UserID and departments, not the mobile
        (developer.work.weixin.qq.com/document/path/90970): the mobile is then asked of WeCom, and
        one that WeCom does not show is unknown, never empty.
        """
        member = event.member_id
        if event.new_user_id and event.new_user_id != member:
            await self._store.rename_member(member, event.new_user_id, actor=CALLBACK_ACTOR)
            member = event.new_user_id
        mobile = event.mobile
        if mobile is None:
            mobile = await self._fetch_mobile(member)
            if mobile is None:
                return
        phone: Phone | None = None
        if mobile:
            try:
                phone = Phone.parse(mobile)
            except InvalidPhone:
                await self._conflict("phone", member, None, "WeCom's mobile is not a mainland number")
                return
        try:
            # A claim made while WeCom was asked is the binding flow's newer write: the rule spares it.
            await self._store.set_member_phone(
                member, phone, take=False, actor=CALLBACK_ACTOR, spare_live_claim=True
            )
        except PhoneTaken:
            await self._conflict("I1", member, phone, "WeCom's new mobile is another member's here")

    async def _fetch_mobile(self, member: str) -> str | None:
        """WeCom's mobile of the member ("" when it holds none), or None when unknown."""
        if self._members is None:
            return None
        binding = await self._store.get_binding(member)
        if binding is not None and binding.state is BindingState.PENDING and not binding.lease_expired(
            self._clock()
        ):
            # The binding flow is writing this member's mobile right now: its write is the newer
            # truth, and setting the phone from an older read would undo its claim.
            log.info("change_contact for member %s left to the binding in flight", member)
            return None
        try:
            found = await self._members.user_get(member)
        except UserNotFound:
            return None  # gone meanwhile: its delete_user removes the binding
        if not found.mobile_shown:
            return None
        return found.mobile or ""

    async def contact_deleted(self, event: ContactChange) -> None:
        """A member left the contacts: free its phone and its binding."""
        await self._seen(event.member_id, None, "change_contact")
        await self._store.delete_member(event.member_id, actor=CALLBACK_ACTOR)

    async def acknowledged(self, event: Event) -> None:
        """Events without rules of their own: kept in the inbox's record, nothing else to do."""
        log.info("event %s for member %s acknowledged", event.kind, event.member_id)

    async def _conflict(self, rule: str, member: str, phone: Phone | None, detail: str) -> None:
        await record_conflict(
            self._store, self._counters, rule=rule, member_id=member, phone=phone, detail=detail,
            actor=CALLBACK_ACTOR,
        )
