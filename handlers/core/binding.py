"""The domain types of bindings, the directory, the audit log and the inbox, and the rules' errors.

These are what the store contract (handlers.usecases.contracts.Store) speaks in; the rules and the web
layer use them without knowing which backend holds them. Phones here are the 11 digits that
a handlers.core.phone.Phone holds; anything meant for a log or a page carries them masked.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar

from handlers.core.guide import ErrorCode
from handlers.core.phone import Phone, mask_phone


class BindingState(enum.StrEnum):
    """Where a member stands: a phone claimed under a lease, a bound phone, or followed."""

    PENDING = "pending"
    BOUND = "bound"
    FOLLOWED = "followed"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who made a change and from where (a student's session and IP, a callback, reconcile, an admin)."""

    who: str
    source: str


@dataclass(frozen=True, slots=True)
class DirectoryEntry:
    """A student in the school directory; phone is the directory's mobile, or None."""

    member_id: str
    name: str
    department: str
    phone: Phone | None


@dataclass(frozen=True, slots=True)
class Binding:
    """A member's binding: its phone, state and openid.

    When pending, phone is the claimed phone, previous_phone the phone bound before the claim
    (still the member's until the claim commits) and lease_expires_at when the claim runs out.
    A followed member may have no phone when WeCom's truth says so.
    """

    member_id: str
    phone: Phone | None
    state: BindingState
    openid: str | None
    lease_expires_at: float | None
    previous_phone: Phone | None
    updated_at: float

    def lease_expired(self, now: float) -> bool:
        """True for a pending claim whose lease has run out (its phone is free for others)."""
        return lease_ran_out(self.state, self.lease_expires_at, now)


def lease_ran_out(state: BindingState, lease_expires_at: float | None, now: float) -> bool:
    """True for a pending claim whose lease has run out, so that its phone is free for others: the
    one statement of a lease's expiry, for bindings and the rules' records alike."""
    return state is BindingState.PENDING and lease_expires_at is not None and lease_expires_at <= now


@dataclass(frozen=True, slots=True)
class Claim:
    """A phone held for a member under a lease, to commit or release once WeCom has answered.

    actor is who claimed: commit and release are audited under it. already_bound: the phone was
    already the member's bound phone; nothing was held, and commit and release change nothing.
    """

    member_id: str
    phone: Phone
    token: str
    lease_expires_at: float | None
    previous_phone: Phone | None
    actor: Actor
    already_bound: bool = False


class AuditAction(enum.StrEnum):
    """What a binding change did, as the audit log records it; the last four are things done about a
    member that change no binding (a data request's export or erasure, an administrator's reveal of a
    full phone or another action of the admin console)."""

    CLAIM = "claim"
    BIND = "bind"
    RELEASE = "release"
    CLAIM_EXPIRED = "claim_expired"
    CLAIM_DROPPED = "claim_dropped"
    FOLLOW = "follow"
    UNFOLLOW = "unfollow"
    SET_PHONE = "settle"
    """The phone set to WeCom's truth (change_contact, reconcile's fix): stored as "settle", its
    word before the rename, so that the records written before and after read alike."""
    PHONE_LOST = "phone_lost"
    DELETE = "delete"
    RENAME = "rename"
    CONFLICT = "conflict"
    EXPORT = "export"
    ERASE = "erase"
    JOINED = "joined"
    INVITE = "invite"
    REVEAL = "reveal"
    CONSOLE = "console"


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One append-only audit entry (I5): when, who, from where, what, on which member; phone masked."""

    id: int
    at: float
    who: str
    source: str
    action: AuditAction
    member_id: str
    phone_masked: str | None
    detail: str


@dataclass(frozen=True, slots=True)
class InboxItem:
    """A decrypted callback event waiting in the durable inbox for a worker."""

    id: int
    dedup_key: str
    event_type: str
    payload: str
    attempts: int
    created_at: float
    last_error: str | None


@dataclass(frozen=True, slots=True)
class InboxStats:
    """Inbox counts: pending (ready or waiting to retry), leased to a worker, dead letters."""

    pending: int
    leased: int
    dead: int


class BindingError(Exception):
    """A binding rule refused the change; nothing was written."""

    code: ClassVar[ErrorCode | None] = None

    def __init__(self, member_id: str, phone: Phone | None = None) -> None:
        self.member_id = member_id
        self.phone_masked = mask_phone(phone) if phone else None
        detail = f" phone {self.phone_masked}" if self.phone_masked else ""
        super().__init__(f"{type(self).__name__}: member {member_id}{detail}")


class PhoneTaken(BindingError):
    """I1: the phone is bound, or claimed under a live lease, by another member (guide 2.1)."""

    code = ErrorCode.PHONE_TAKEN


class AccountFollowed(BindingError):
    """I3: the member has followed with another phone; it must unfollow first (guide 2.2)."""

    code = ErrorCode.ACCOUNT_FOLLOWED


class ClaimInProgress(BindingError):
    """The member already holds an unexpired claim; one claim per member at a time."""


class ClaimLost(BindingError):
    """The claim is no longer held (released, replaced, or its phone taken after the lease ran out)."""


class OpenidConflict(BindingError):
    """I4: the member is followed by another openid, or the openid follows as another member."""

    def __init__(self, member_id: str, openid: str) -> None:
        super().__init__(member_id)
        self.openid = openid


class BindingChanged(BindingError):
    """The member's binding is no longer the one the caller read (reconcile's fix); nothing changed."""
