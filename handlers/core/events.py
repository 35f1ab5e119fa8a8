"""The typed events WeCom's callbacks carry, after verification and decryption."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class EventKind(enum.StrEnum):
    """What an event is, as the dispatch table, the inbox and the metrics name it."""

    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"
    ENTER_AGENT = "enter_agent"
    CREATE_USER = "change_contact:create_user"
    UPDATE_USER = "change_contact:update_user"
    DELETE_USER = "change_contact:delete_user"
    UNKNOWN = "unknown"


class ChangeType(enum.StrEnum):
    """The changes of a member in a change_contact event that have rules (its ChangeType)."""

    CREATE_USER = "create_user"
    UPDATE_USER = "update_user"
    DELETE_USER = "delete_user"

    @property
    def kind(self) -> EventKind:
        """The event kind of a change_contact event of this change."""
        return _CHANGE_KINDS[self]


_CHANGE_KINDS: dict[ChangeType, EventKind] = {
    ChangeType.CREATE_USER: EventKind.CREATE_USER,
    ChangeType.UPDATE_USER: EventKind.UPDATE_USER,
    ChangeType.DELETE_USER: EventKind.DELETE_USER,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """What every callback message carries; `raw` is the decrypted XML, kept for the inbox and audits."""

    corp_id: str
    member_id: str
    create_time: int
    agent_id: str | None
    raw: str

    @property
    def kind(self) -> EventKind:
        """The dispatch key: the event name, or `change_contact:<change type>`."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscribe(Event):
    """A WeChat followed the organisation as this member (step 5 of the guide)."""

    @property
    def kind(self) -> EventKind:
        return EventKind.SUBSCRIBE


@dataclass(frozen=True, slots=True, kw_only=True)
class Unsubscribe(Event):
    """The member's WeChat unfollowed: the member may bind another phone (the remedy of 2.2)."""

    @property
    def kind(self) -> EventKind:
        return EventKind.UNSUBSCRIBE


@dataclass(frozen=True, slots=True, kw_only=True)
class EnterAgent(Event):
    """The member opened the app."""

    event_key: str | None = None

    @property
    def kind(self) -> EventKind:
        return EventKind.ENTER_AGENT


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactChange(Event):
    """A member was created, updated or deleted in the WeCom contacts.

    `member_id` is the member the change is about (the XML's UserID), not the sender. Fields absent
    from the message are None: WeCom sends only what changed.
    """

    change_type: ChangeType
    new_user_id: str | None = None
    name: str | None = None
    mobile: str | None = None
    department: tuple[int, ...] | None = None
    main_department: int | None = None
    position: str | None = None
    gender: int | None = None
    email: str | None = None
    status: int | None = None
    alias: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> EventKind:
        return self.change_type.kind


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownEvent(Event):
    """A message no handler knows yet: stored and acknowledged, never refused."""

    msg_type: str
    event: str | None = None
    change_type: str | None = None

    @property
    def kind(self) -> EventKind:
        return EventKind.UNKNOWN


CONTACT_CHANGE_TYPES = frozenset(ChangeType)
