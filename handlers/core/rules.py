"""The guide's binding rules (I1 to I4), written once: pure decisions over the records a change reads.

A rule is a function over a Draft: it reads records (a member's binding, a phone's holder, an
openid's member) and the time, and either refuses (PhoneTaken, AccountFollowed, ClaimInProgress,
OpenidConflict, ClaimLost, BindingChanged) or records its writes and audit entries and returns its
outcome. `decide` turns that into a Decision. No rule does I/O: when a rule needs a record it was
not given, it raises Unread, and the backend reads that record and decides again. A backend then
applies the decision atomically, provided that nothing it read has changed meanwhile (SQLite: in
the same transaction; Redis: a compare-and-apply of every key read), and otherwise reads again.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from operator import attrgetter
from typing import Final, Generic, TypeVar, cast

from handlers.core.binding import (
    AccountFollowed,
    Actor,
    AuditAction,
    Binding,
    BindingChanged,
    BindingError,
    BindingState,
    Claim,
    ClaimInProgress,
    ClaimLost,
    OpenidConflict,
    PhoneTaken,
    lease_ran_out,
)
from handlers.core.phone import Phone, mask_phone
from handlers.core.reconcile import Fix

T = TypeVar("T")


class KeyKind(enum.StrEnum):
    """What a record is: a member's binding, a phone's holder, or an openid's member."""

    BINDING = "b"
    PHONE = "p"
    OPENID = "o"


@dataclass(frozen=True, slots=True)
class Key:
    """The address of one record a rule reads or writes."""

    kind: KeyKind
    name: str


def binding_key(member_id: str) -> Key:
    """The key of a member's binding record."""
    return Key(KeyKind.BINDING, member_id)


def phone_key(phone: Phone) -> Key:
    """The key of a phone's holder (a member id)."""
    return Key(KeyKind.PHONE, phone)


def openid_key(openid: str) -> Key:
    """The key of an openid's member (a member id)."""
    return Key(KeyKind.OPENID, openid)


@dataclass(frozen=True, slots=True)
class Row(Binding):
    """A binding record as stored: the Binding with the claim token, which callers never see."""

    token: str | None

    def binding(self) -> Binding:
        """The binding as callers see it."""
        return Binding(*_binding_values(self))


_binding_values: Final = attrgetter(*(field.name for field in fields(Binding)))
"""What a Row shows to callers: every field of Binding, in its order, so that one added there is shown too."""


Value = Row | str | None
"""A record: a Row under a binding key, a member id under a phone or openid key, None when absent."""


class Unread(Exception):
    """The rule needs a record it was not given: read it and decide again."""

    def __init__(self, key: Key) -> None:
        super().__init__(f"unread {key.kind.name.lower()} record")
        self.key = key


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """An audit record a decision writes; the backend adds its id, the time and the actor."""

    action: AuditAction
    member_id: str
    phone_masked: str | None
    detail: str


@dataclass(frozen=True, slots=True)
class Decision(Generic[T]):
    """What a rule decided: the final value of each record it writes, its audit entries and its
    outcome, or the refusal to raise once the backend has checked that the records read still hold."""

    outcome: T | None
    writes: Mapping[Key, Value]
    audits: tuple[AuditEntry, ...]
    refusal: BindingError | None = None

    def result(self) -> T:
        """The outcome, or the refusal raised."""
        if self.refusal is not None:
            raise self.refusal
        return cast(T, self.outcome)  # not a refusal: the rule's own outcome, None included


def decide(records: Mapping[Key, Value], now: float, rule: Callable[[Draft], T]) -> Decision[T]:
    """Run a rule over the records read and the time; Unread when it needs one more record."""
    draft = Draft(records, now)
    try:
        outcome = rule(draft)
    except BindingError as refusal:
        return Decision(None, {}, (), refusal)
    return Decision(outcome, dict(draft.writes), tuple(draft.audits))


def masked(phone: Phone | None) -> str:
    """Mask a phone for an audit detail; '-' when there is none."""
    return mask_phone(phone) if phone else "-"


class Draft:
    """The records read, overlaid with the writes decided so far; the steps the rules share."""

    def __init__(self, records: Mapping[Key, Value], now: float) -> None:
        self._records = records
        self.now = now
        self.writes: dict[Key, Value] = {}
        self.audits: list[AuditEntry] = []

    def _get(self, key: Key) -> Value:
        if key in self.writes:
            return self.writes[key]
        if key in self._records:
            return self._records[key]
        raise Unread(key)

    def load(self, member_id: str) -> Row | None:
        """The member's binding record, or None."""
        value = self._get(binding_key(member_id))
        return value if isinstance(value, Row) else None

    def holder(self, phone: Phone) -> str | None:
        """The member the phone index gives the phone to, or None."""
        value = self._get(phone_key(phone))
        return value if isinstance(value, str) else None

    def owner(self, openid: str) -> str | None:
        """The member the openid index gives the openid to, or None."""
        value = self._get(openid_key(openid))
        return value if isinstance(value, str) else None

    def save(self, row: Row) -> Row:
        """Write the binding record, stamped with the time."""
        if row.updated_at != self.now:
            row = replace(row, updated_at=self.now)
        self.writes[binding_key(row.member_id)] = row
        return row

    def remove(self, member_id: str) -> None:
        """Delete the member's binding record."""
        self.writes[binding_key(member_id)] = None

    def index(self, phone: Phone, member_id: str) -> None:
        """Give the phone to the member in the phone index."""
        self.writes[phone_key(phone)] = member_id

    def unindex(self, phone: Phone | None, member_id: str) -> None:
        """Free the phone in the index, if the member is the one holding it there."""
        if phone is not None and self.holder(phone) == member_id:
            self.writes[phone_key(phone)] = None

    def index_openid(self, openid: str, member_id: str) -> None:
        """Give the openid to the member in the openid index."""
        self.writes[openid_key(openid)] = member_id

    def unindex_openid(self, openid: str | None, member_id: str) -> None:
        """Free the openid in the index, if the member is the one holding it there."""
        if openid is not None and self.owner(openid) == member_id:
            self.writes[openid_key(openid)] = None

    def audit(self, action: AuditAction, member_id: str, phone: Phone | None, detail: str) -> None:
        """Add an audit record, the phone masked."""
        self.audits.append(AuditEntry(action, member_id, mask_phone(phone) if phone else None, detail))

    def expired(self, row: Row) -> bool:
        """True for a pending claim whose lease has run out (binding.lease_ran_out)."""
        return lease_ran_out(row.state, row.lease_expires_at, self.now)

    def holds(self, row: Row | None, phone: Phone) -> bool:
        """True when the row really holds the phone (not a stale claim that ran out)."""
        if row is None:
            return False
        if row.phone == phone:
            return not self.expired(row)
        return row.previous_phone == phone

    def revert(self, row: Row, action: AuditAction) -> Row | None:
        """Undo a pending claim: free its phone, back to the previous bound phone or to nothing."""
        self.unindex(row.phone, row.member_id)
        previous = row.previous_phone
        result: Row | None = None
        if previous is not None:
            result = self.save(_bound(row.member_id, previous))
        else:
            self.remove(row.member_id)
        detail = f"back to {masked(previous)}" if previous else "back to unbound"
        self.audit(action, row.member_id, row.phone, detail)
        return result

    def strip(self, row: Row, phone: Phone, taker: str, *, why: str | None = None) -> None:
        """Take the phone away from another member because WeCom's truth gives it to taker (or, with
        why, because WeCom gives it to nobody that the store names: why is the audit's reason)."""
        if row.state is BindingState.PENDING and row.phone == phone:
            self.revert(row, AuditAction.CLAIM_DROPPED)
            return
        self.unindex(phone, row.member_id)
        if row.state is BindingState.PENDING:
            self.save(replace(row, previous_phone=None))
        elif row.state is BindingState.FOLLOWED:
            self.save(replace(row, phone=None))
        else:
            self.remove(row.member_id)
        self.audit(AuditAction.PHONE_LOST, row.member_id, phone, why or f"taken by {taker}")


def _bound(member_id: str, phone: Phone | None, *, openid: str | None = None) -> Row:
    """A binding record past its claim: followed when it has an openid, else bound."""
    state = BindingState.BOUND if openid is None else BindingState.FOLLOWED
    return Row(member_id, phone, state, openid, None, None, 0.0, token=None)


def _binding(row: Row | None) -> Binding | None:
    return None if row is None else row.binding()


# reads


def phone_holder(d: Draft, phone: Phone) -> Binding | None:
    """The binding that holds the phone (I1), or None when it is free."""
    holder = d.holder(phone)
    row = None if holder is None else d.load(holder)
    return row.binding() if row is not None and d.holds(row, phone) else None


def openid_member(d: Draft, openid: str) -> Binding | None:
    """The binding that the openid follows as (I4), or None."""
    owner = d.owner(openid)
    row = None if owner is None else d.load(owner)
    return row.binding() if row is not None and row.openid == openid else None


# the rules


class OneWeChat(enum.Enum):
    """How a follow would break I4, one member one WeChat."""

    MEMBER_FOLLOWS_AS_ANOTHER = "member"
    """The member already follows with another WeChat (or one that cannot be told apart from it)."""
    WECHAT_FOLLOWS_AS_ANOTHER = "wechat"
    """The WeChat already follows as another member."""


def one_wechat(
    member_id: str, binding: Binding | None, openid: str | None, openid_holder: Callable[[], str | None]
) -> OneWeChat | None:
    """I4 for a follow of the member (binding: theirs) as openid: None when it holds.

    openid_holder gives the member the openid follows as, and is asked only once the member's own
    side holds. An unknown openid (None) cannot be shown to be a followed member's own.
    """
    if binding is not None and binding.state is BindingState.FOLLOWED and binding.openid != openid:
        return OneWeChat.MEMBER_FOLLOWS_AS_ANOTHER
    holder = openid_holder()
    if holder is not None and holder != member_id:
        return OneWeChat.WECHAT_FOLLOWS_AS_ANOTHER
    return None


def claim(d: Draft, member_id: str, phone: Phone, *, lease: float, token: str, actor: Actor) -> Claim:
    """Hold the phone for the member under a lease: I3 (AccountFollowed), I1 (PhoneTaken), one
    claim per member (ClaimInProgress); an expired claim, the member's or another's, is undone."""
    own = d.load(member_id)
    stale_own = own is not None and d.expired(own)
    if own is not None and own.state is BindingState.PENDING and not stale_own:
        raise ClaimInProgress(member_id, own.phone)
    # What the member holds once its own stale claim (if any) is undone.
    current = own.previous_phone if stale_own and own else (own.phone if own else None)
    if own is not None and own.state is BindingState.FOLLOWED and own.phone != phone:
        raise AccountFollowed(member_id, phone)
    holder_id = d.holder(phone)
    holder = None
    if holder_id is not None and holder_id != member_id:
        holder = d.load(holder_id)
        if d.holds(holder, phone):
            raise PhoneTaken(member_id, phone)
    # Checks are done: from here on, only writes.
    if stale_own and own is not None:
        d.revert(own, AuditAction.CLAIM_EXPIRED)
    if current == phone:
        return Claim(member_id, phone, "", None, None, actor, already_bound=True)
    if holder is not None and d.expired(holder) and holder.phone == phone:
        d.revert(holder, AuditAction.CLAIM_EXPIRED)
    lease_until = d.now + lease
    d.save(Row(member_id, phone, BindingState.PENDING, None, lease_until, current, d.now, token=token))
    d.index(phone, member_id)
    d.audit(AuditAction.CLAIM, member_id, phone, f"previous {masked(current)}" if current else "")
    return Claim(member_id, phone, token, lease_until, current, actor)


def commit(d: Draft, held: Claim) -> Binding:
    """Make the claimed phone the member's bound phone and free the previous one (I2); ClaimLost
    when the claim's token no longer holds the member."""
    row = d.load(held.member_id)
    if held.already_bound:
        if row is None or row.state is BindingState.PENDING or row.phone != held.phone:
            raise ClaimLost(held.member_id, held.phone)
        return row.binding()
    if row is None or row.state is not BindingState.PENDING or row.token != held.token:
        raise ClaimLost(held.member_id, held.phone)
    previous = row.previous_phone
    d.unindex(previous, row.member_id)
    saved = d.save(_bound(row.member_id, row.phone))
    d.audit(AuditAction.BIND, row.member_id, row.phone, f"replaces {masked(previous)}" if previous else "")
    return saved.binding()


def release(d: Draft, held: Claim) -> bool:
    """Give the claim up, back to the member's previous state; False when it was no longer held."""
    if held.already_bound:
        return True
    row = d.load(held.member_id)
    if row is None or row.state is not BindingState.PENDING or row.token != held.token:
        return False
    d.revert(row, AuditAction.RELEASE)
    return True


def follow(d: Draft, member_id: str, openid: str) -> Binding:
    """Record that the member follows as openid (I4): OpenidConflict when the member follows as
    another openid or the openid as another member; a pending claim is dropped."""
    row = d.load(member_id)
    if row is not None and row.state is BindingState.FOLLOWED and row.openid == openid:
        return row.binding()

    def holder() -> str | None:
        other = openid_member(d, openid)
        return None if other is None else other.member_id

    if one_wechat(member_id, _binding(row), openid, holder) is not None:
        raise OpenidConflict(member_id, openid)
    if row is not None and row.state is BindingState.PENDING:
        row = d.revert(row, AuditAction.CLAIM_DROPPED)
    saved = d.save(_bound(member_id, row.phone if row else None, openid=openid))
    d.index_openid(openid, member_id)
    d.audit(AuditAction.FOLLOW, member_id, saved.phone, f"openid {openid}")
    return saved.binding()


def unfollow(d: Draft, member_id: str) -> Binding | None:
    """Record that the member unfollowed: back to bound, free to bind another phone (I3)."""
    row = d.load(member_id)
    if row is None or row.state is not BindingState.FOLLOWED:
        return _binding(row)
    d.unindex_openid(row.openid, member_id)
    result: Binding | None = None
    if row.phone is not None:
        result = d.save(_bound(member_id, row.phone)).binding()
    else:
        d.remove(member_id)
    d.audit(AuditAction.UNFOLLOW, member_id, row.phone, f"openid {row.openid}")
    return result


def set_phone(
    d: Draft, member_id: str, wanted: Phone | None, *, take: bool, spare_live_claim: bool = False
) -> Binding | None:
    """Set the member's phone to WeCom's truth (None: no phone), dropping a pending claim;
    PhoneTaken when another member holds it, unless take, which strips it from them.

    spare_live_claim: a live claim of the member is left alone and nothing changes: the binding
    flow is writing the member's mobile at WeCom, a newer truth than the one being set.
    """
    row = d.load(member_id)
    if spare_live_claim and row is not None and row.state is BindingState.PENDING and not d.expired(row):
        return row.binding()
    holder: Row | None = None
    if wanted is not None:
        holder_id = d.holder(wanted)
        if holder_id is not None and holder_id != member_id:
            holder = d.load(holder_id)
            if d.holds(holder, wanted) and not take:
                raise PhoneTaken(member_id, wanted)
    if row is not None and row.state is BindingState.PENDING:
        row = d.revert(row, AuditAction.CLAIM_DROPPED)
    if wanted is None:
        if row is None or row.phone is None:
            return _binding(row)
        d.unindex(row.phone, member_id)
        result: Binding | None = None
        if row.state is BindingState.FOLLOWED:
            result = d.save(replace(row, phone=None)).binding()
        else:
            d.remove(member_id)
        d.audit(AuditAction.SET_PHONE, member_id, row.phone, "phone removed")
        return result
    if row is not None and row.phone == wanted:
        return row.binding()
    if holder is not None:
        if d.holds(holder, wanted):
            d.strip(holder, wanted, member_id)
        elif d.expired(holder) and holder.phone == wanted:
            d.revert(holder, AuditAction.CLAIM_EXPIRED)
    old = row.phone if row else None
    d.unindex(old, member_id)
    saved = d.save(_bound(member_id, wanted, openid=row.openid if row else None))
    d.index(wanted, member_id)
    d.audit(AuditAction.SET_PHONE, member_id, wanted, f"replaces {masked(old)}" if old else "")
    return saved.binding()


def stale_phone(d: Draft, phone: Phone, claimant: str, wecom_holder: str | None) -> bool:
    """The store gives the phone to another member than the claimant; WeCom (user/getuserid) gives it
    to wecom_holder (None: to nobody). True when the phone is free for the claimant now: the store's
    holder lost it to WeCom's truth (audited with the reason), or it was free already. False when 2.1
    stands: WeCom gives it to another member; a store that named someone else no longer does."""
    holder_id = d.holder(phone)
    if holder_id is None or holder_id == claimant:
        return True
    row = d.load(holder_id)
    if row is None or not d.holds(row, phone):
        return True
    if wecom_holder == holder_id:
        return False
    if row.state is BindingState.PENDING and row.phone == phone:
        # A live claim of another student: its own write to WeCom is under way, not stale.
        return False
    held_by = "nobody" if wecom_holder is None else wecom_holder
    d.strip(row, phone, claimant, why=f"stale: WeCom gives the phone to {held_by} (user/getuserid)")
    return wecom_holder is None or wecom_holder == claimant


def delete(d: Draft, member_id: str) -> bool:
    """Remove the member's binding, freeing its phones and openid; False when it had none."""
    row = d.load(member_id)
    if row is None:
        return False
    _drop(d, row)
    d.audit(AuditAction.DELETE, member_id, row.phone, "")
    return True


def _drop(d: Draft, row: Row) -> None:
    d.unindex(row.phone, row.member_id)
    d.unindex(row.previous_phone, row.member_id)
    d.unindex_openid(row.openid, row.member_id)
    d.remove(row.member_id)


def rename(d: Draft, old_id: str, new_id: str) -> Binding | None:
    """Move a binding to WeCom's new user id, replacing any stale binding of new_id."""
    row = d.load(old_id)
    if row is None or old_id == new_id:
        return _binding(row)
    stale = d.load(new_id)
    if stale is not None:
        _drop(d, stale)
        d.audit(AuditAction.DELETE, new_id, stale.phone, f"replaced by rename of {old_id}")
    _drop(d, row)
    moved = d.save(replace(row, member_id=new_id))
    for phone in (row.phone, row.previous_phone):
        if phone is not None:
            d.index(phone, new_id)
    if row.openid is not None:
        d.index_openid(row.openid, new_id)
    d.audit(AuditAction.RENAME, old_id, row.phone, f"to {new_id}")
    d.audit(AuditAction.RENAME, new_id, row.phone, f"from {old_id}")
    return moved.binding()


def fix_drift(
    d: Draft, member_id: str, fix: Fix, wanted: Phone | None, *, seen: Binding | None
) -> Binding | None:
    """Reconcile's fix from WeCom's truth, only while the member's binding is still `seen`
    (BindingChanged otherwise): remove the binding, end its follow, or set its phone to wanted,
    taking it from a holder (WeCom gave it to this member, so a holder here is out of date)."""
    row = d.load(member_id)
    if _binding(row) != seen:
        raise BindingChanged(member_id)
    if fix is Fix.DELETE:
        delete(d, member_id)
        return None
    if fix is Fix.UNFOLLOW:
        return unfollow(d, member_id)
    if fix is Fix.SET_PHONE:
        return set_phone(d, member_id, wanted, take=True)
    return _binding(row)


def note(d: Draft, member_id: str, action: AuditAction, detail: str) -> None:
    """Record something done about the member that changes no binding (a data request)."""
    d.audit(action, member_id, None, detail)


def conflict(d: Draft, member_id: str, phone: Phone | None, detail: str) -> None:
    """Record a change that a rule refused; nothing else changes."""
    d.audit(AuditAction.CONFLICT, member_id, phone, detail)
