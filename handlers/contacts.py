"""What the binding rules need from the WeCom contacts (企业号通讯录), as a typing Protocol.

callback_service.clients.wecom.WeComClient (with the contacts-sync secret) fulfils it structurally.
Its failures are exceptions that carry WeCom's integer `errcode`; the rules read it through
`errcode_of`, so they never import the client.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Protocol

MOBILE_INVALID: Final = 60103
"""WeCom refuses the mobile number."""
USERID_EXISTS: Final = 60102
"""user/create: the userid is taken (someone created the member meanwhile)."""
MOBILE_EXISTS: Final = 60104
"""Another member already has this mobile: rule I1, as WeCom enforces it."""
USER_NOT_FOUND: Final = 60111
"""No member has this userid."""


class ContactMember(Protocol):
    """A member of the WeCom contacts, as user/get answers."""

    @property
    def userid(self) -> str:
        """The member's userid (our student id)."""
        ...

    @property
    def mobile(self) -> str | None:
        """The member's mobile, or None when WeCom holds none."""
        ...

    @property
    def status(self) -> int:
        """1 followed (已激活), 2 disabled, 4 not followed (未激活), 5 left."""
        ...


class InviteOutcome(Protocol):
    """What batch/invite could not do."""

    @property
    def invalid_users(self) -> Sequence[str]:
        """The members that could not be invited."""
        ...


class WeComContacts(Protocol):
    """The WeCom contacts API calls that binding a phone makes."""

    async def user_get(self, userid: str) -> ContactMember:
        """user/get: a member, or an error with errcode USER_NOT_FOUND."""
        ...

    async def user_update(self, userid: str, *, mobile: str | None = None) -> None:
        """user/update: set the member's mobile; errcodes MOBILE_EXISTS, USER_NOT_FOUND, MOBILE_INVALID."""
        ...

    async def user_create(
        self, *, userid: str, name: str, department: Sequence[int], mobile: str | None = None
    ) -> None:
        """user/create: a new member; errcodes MOBILE_EXISTS, USERID_EXISTS, MOBILE_INVALID."""
        ...

    async def batch_invite(self, *, users: Sequence[str] = ()) -> InviteOutcome:
        """batch/invite: invite members to follow the organisation."""
        ...


def errcode_of(exc: BaseException) -> int | None:
    """WeCom's errcode carried by a contacts failure, or None for any other exception."""
    errcode = getattr(exc, "errcode", None)
    return errcode if isinstance(errcode, int) and not isinstance(errcode, bool) else None
