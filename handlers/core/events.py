"""The typed events WeCom's callbacks carry, after verification and decryption."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """What every callback message carries; `raw` is the decrypted XML, kept for the inbox and audits."""

    corp_id: str
    member_id: str
    create_time: int
    agent_id: str | None
    raw: str

    @property
    def kind(self) -> str:
        """The dispatch key: the event name, or `change_contact:<change type>`."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscribe(Event):
    """A WeChat followed the organisation as this member (step 5 of the guide)."""

    @property
    def kind(self) -> str:
        return "subscribe"


@dataclass(frozen=True, slots=True, kw_only=True)
class Unsubscribe(Event):
    """The member's WeChat unfollowed: the member may bind another phone (the remedy of 2.2)."""

    @property
    def kind(self) -> str:
        return "unsubscribe"


@dataclass(frozen=True, slots=True, kw_only=True)
class EnterAgent(Event):
    """The member opened the app."""

    event_key: str | None = None

    @property
    def kind(self) -> str:
        return "enter_agent"


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactChange(Event):
    """A member was created, updated or deleted in the WeCom contacts.

    `member_id` is the member the change is about (the XML's UserID), not the sender. Fields absent
    from the message are None: WeCom sends only what changed.
    """

    change_type: str
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
    def kind(self) -> str:
        return f"change_contact:{self.change_type}"


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownEvent(Event):
    """A message no handler knows yet: stored and acknowledged, never refused."""

    msg_type: str
    event: str | None = None
    change_type: str | None = None

    @property
    def kind(self) -> str:
        return "unknown"


CONTACT_CHANGE_TYPES = frozenset({"create_user", "update_user", "delete_user"})
