"""What the binding rules need from the WeCom contacts (企业号通讯录), as a typing Protocol.

callback_service.clients.wecom.WeComClient (with the contacts-sync secret) fulfils it structurally.
Its failures are the typed family of handlers.core.wecom_errors, which the rules catch by type.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Final, Protocol

from handlers.core.phone import Phone
from handlers.core.wecom_errors import ContactsUntrustedIp

log: Final = logging.getLogger(__name__)



class ContactMember(Protocol):
    """A member of the WeCom contacts, as user/get answers."""

    @property
    def userid(self) -> str:
        """The member's userid: our member id (the 学号)."""
        ...

    @property
    def mobile(self) -> str | None:
        """The member's mobile; None when WeCom holds none or did not show it (see mobile_shown)."""
        ...

    @property
    def mobile_shown(self) -> bool:
        """Whether the answer showed the mobile: an app created after 2022-06-20 gets none from
        user/get (developer.work.weixin.qq.com/document/path/90196), whether WeCom leaves the key out
        or answers "", and a hidden mobile is unknown, never empty."""
        ...

    @property
    def status(self) -> int:
        """1 activated (已激活), 2 disabled, 4 not activated (未激活), 5 quit."""
        ...

    @property
    def department(self) -> tuple[int, ...]:
        """The ids of the departments the member is in (not a sensitive field: always shown)."""
        ...


class InviteOutcome(Protocol):
    """What batch/invite could not do."""

    @property
    def invalid_users(self) -> Sequence[str]:
        """The members that could not be invited."""
        ...


class MemberReader(Protocol):
    """What reads a member from WeCom (user/get): the app's client, or the contacts-sync one."""

    async def user_get(self, userid: str) -> ContactMember:
        """user/get: the member; UserNotFound when WeCom has none by that userid."""
        ...


class PhoneHolders(Protocol):
    """Who WeCom gives a mobile to (user/getuserid, with the app's secret)."""

    async def user_getuserid(self, mobile: Phone) -> str:
        """The member holding the mobile; MobileNotFound (46004) when none does (or none visible)."""
        ...


class ContactsThenApp:
    """Reads members with the contacts-sync secret, and from WeCom's first 48009 with the app's.

    An address trusted by the contacts-sync assistant after 2022-08-15 may write members but not
    read them (developer.work.weixin.qq.com/document/path/90196); the app's view then stands in,
    with the status and departments and, from an app created after 2022-06-20, no mobile (unknown).
    """

    def __init__(self, contacts: MemberReader, app: MemberReader) -> None:
        self._contacts = contacts
        self._app = app
        self._app_reads = False

    @property
    def app_reads(self) -> bool:
        """Whether reads go through the app's secret now (the contacts-sync secret answered 48009)."""
        return self._app_reads

    def contacts_may_not_read(self) -> None:
        """The contacts-sync secret answered 48009 to a read made elsewhere: read with the app's now."""
        self._app_reads = True

    async def user_get(self, userid: str) -> ContactMember:
        """user/get with the contacts-sync secret while WeCom lets it read, then with the app's."""
        if not self._app_reads:
            try:
                return await self._contacts.user_get(userid)
            except ContactsUntrustedIp:
                log.warning("the contacts-sync secret may not read members from here (48009): "
                            "reading with the app's secret, which hides the mobile")
                self._app_reads = True
        return await self._app.user_get(userid)


class WeComContacts(Protocol):
    """The WeCom contacts API calls that binding a phone makes."""

    async def user_get(self, userid: str) -> ContactMember:
        """user/get: a member, or UserNotFound."""
        ...

    async def user_update(self, userid: str, *, mobile: str | None = None) -> None:
        """user/update: set the member's mobile; MobileExists, UserNotFound, MobileInvalid when refused."""
        ...

    async def user_create(
        self, *, userid: str, name: str, department: Sequence[int], mobile: Phone | None = None
    ) -> None:
        """user/create: a new member, invited by WeCom (to_invite); MobileExists, UserIdExists..."""
        ...

    async def batch_invite(self, *, users: Sequence[str] = ()) -> InviteOutcome:
        """batch/invite: invite members to follow the organisation."""
        ...

