"""What the use cases need from outside, as typing Protocols: the store, in small pieces.

Each use case depends on a narrow Protocol of its own (BindingFlowStore, CallbackStore,
AdmissionStore, ReconcileStore, ReleaseStore, SyncStore, ProofStore; the admin console's
ConsoleStore, the students' pages' PagesStore and the health endpoints' HealthStore too), composed of
the pieces below; Store is all of them, which every backend (SQLite, Redis, and the tests' in-memory
store) fulfils structurally. The composition root (callback_service.compose) hands the use cases a
backend; they import only these contracts.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Protocol

from handlers.core.binding import (
    Actor,
    AuditAction,
    AuditRecord,
    Binding,
    Claim,
    DirectoryEntry,
    InboxItem,
    InboxStats,
)
from handlers.core.member import MemberSeen
from handlers.core.phone import Phone
from handlers.core.reconcile import Fix

Clock = Callable[[], float]
"""Seconds since the epoch; injected into stores so that lease and TTL tests need not sleep."""


class StoreUnavailable(Exception):
    """The store cannot be reached or failed mid-operation; nothing was written. The web layer answers 503."""


class StoreNotDurable(StoreUnavailable):
    """The store answers but would lose what it acknowledged on a restart (a Redis without persistence)."""


class Remembers(Protocol):
    """The simplest of the key-value entries: read and write one with expiry."""

    async def kv_get(self, key: str) -> str | None:
        """Return the value, or None when absent or expired."""
        ...

    async def kv_set(self, key: str, value: str, *, ttl: float) -> None:
        """Set the value, expiring after ttl seconds."""
        ...


class Locks(Protocol):
    """Leased locks: one holder at a time, for a lease."""

    async def lock_acquire(self, name: str, *, lease: float) -> str | None:
        """Take the named lock for lease seconds; return an owner token, or None when held by another."""
        ...

    async def lock_release(self, name: str, token: str) -> bool:
        """Release the lock if the token still owns it; True when released."""
        ...


class RemembersMany(Protocol):
    """Many key-value entries read at once."""

    async def kv_get_many(self, keys: Sequence[str]) -> list[str | None]:
        """Return the value of each key in order (None when absent or expired), read at once."""
        ...


class Counters(Protocol):
    """Counters with expiry (rate limits, daily budgets)."""

    async def kv_incr(self, key: str, *, ttl: float) -> int:
        """Increment a counter, creating it at 1 with the ttl when absent; return the new count."""
        ...


class Forgets(Protocol):
    """A key-value entry deleted before it expires."""

    async def kv_delete(self, key: str) -> None:
        """Delete the entry if present."""
        ...


class SingleUse(Protocol):
    """The single-use read of a ticket, code or state."""

    async def kv_pop(self, key: str) -> str | None:
        """Atomically read and delete: the single-use read of a ticket, code or state."""
        ...


class AtomicEntries(Protocol):
    """Several key-value entries set and deleted in one atomic step."""

    async def kv_apply(
        self,
        sets: Mapping[str, tuple[str, float]],
        *,
        deletes: Collection[str] = (),
        if_absent: Collection[str] = (),
    ) -> bool:
        """Set entries (key: (value, ttl)) and delete others in one atomic step, only when every key
        of if_absent is absent or expired; True when applied, False when nothing changed."""
        ...


class LimitedCounters(Protocol):
    """Counters counted together, each under its limit (a send's budgets)."""

    async def kv_incr_under(self, limits: Mapping[str, int], *, ttl: float) -> str | None:
        """Increment every counter as kv_incr does, in one atomic step, unless one has already
        reached its limit: then return that counter's key, and nothing was counted."""
        ...


class SetsOnce(Protocol):
    """A key-value entry set only by the first of its writers (a form's outcome, a code used once)."""

    async def kv_set_if_absent(self, key: str, value: str, *, ttl: float) -> bool:
        """Set the value only if absent or expired; True when this call set it."""
        ...


class KeyValueStore(
    Remembers,
    RemembersMany,
    Counters,
    LimitedCounters,
    Locks,
    Forgets,
    SingleUse,
    AtomicEntries,
    SetsOnce,
    Protocol,
):
    """Key-value entries with expiry (token cache, CAS/OAuth state, rate limits) and leased locks."""


class SessionsStore(Remembers, RemembersMany, Forgets, SingleUse, AtomicEntries, Protocol):
    """The sessions' kv (web.pages.session.SessionStore's, the pages' and the console's): a session
    kept and rotated in one step with its member's index, ended, and a login's state used once."""


class MemberRecords(Protocol):
    """What WeCom last said about each member (MemberSeen): its status, when, and where it was heard."""

    async def record_members(self, seen: Sequence[MemberSeen]) -> int:
        """Upsert the records in one atomic step and return how many members' status is new or changed.

        Idempotent: recording the same word again changes nothing. A record older than the stored one
        (an earlier seen_at) is ignored, so that a late event never undoes a later read; an equal or
        newer one replaces it (its time and source too). Within one call a member's newest record counts
        (the later one on a tie).
        """
        ...

    async def member_seen(self, member_id: str) -> MemberSeen | None:
        """Return WeCom's last word on the member, or None when the service never heard one."""
        ...

    async def list_members_seen(self) -> list[MemberSeen]:
        """Return every record, ordered by member id."""
        ...


class Pings(Protocol):
    """Whether the store answers and keeps what it acknowledges."""

    async def ping(self) -> None:
        """Check that the store answers and keeps what it acknowledges: StoreUnavailable when it does
        not answer, StoreNotDurable when it would lose acknowledged writes on a restart."""
        ...


class Lifecycle(Pings, Protocol):
    """Opening aside: whether the store answers, and closing it."""

    async def close(self) -> None:
        """Release the connections; the store is unusable afterwards."""
        ...


class DirectoryLookup(Protocol):
    """A student's entry of the school directory."""

    async def directory_get(self, member_id: str) -> DirectoryEntry | None:
        """Return a student's directory entry, or None."""
        ...


class DirectorySize(Protocol):
    """How many students the school directory holds."""

    async def directory_count(self) -> int:
        """Return the number of students in the directory."""
        ...


class DirectoryListing(Protocol):
    """The whole school directory."""

    async def directory_list(self) -> list[DirectoryEntry]:
        """Return every directory entry, ordered by student id (for sync's comparison with WeCom)."""
        ...


class Directory(DirectoryLookup, DirectorySize, DirectoryListing, Protocol):
    """The school directory: import and erasure besides the reads."""

    async def directory_upsert(self, entries: Sequence[DirectoryEntry]) -> int:
        """Insert or replace directory entries, all or nothing; return how many were written."""
        ...

    async def directory_delete(self, member_id: str) -> bool:
        """Remove a student's directory entry (a data erasure); False when there was none."""
        ...


class BindingLookup(Protocol):
    """The bindings as stored, by member, phone or openid."""

    async def get_binding(self, member_id: str) -> Binding | None:
        """Return the member's binding as stored (a pending one may have an expired lease), or None."""
        ...

    async def get_binding_by_phone(self, phone: Phone) -> Binding | None:
        """Return the binding that holds the phone (bound, followed, a live claim, or the previous
        phone of a pending member), or None when the phone is free."""
        ...

    async def get_binding_by_openid(self, openid: str) -> Binding | None:
        """Return the binding of the member that this openid follows as, or None."""
        ...

    async def list_bindings(self) -> list[Binding]:
        """Return every binding, ordered by member id (for reconciliation)."""
        ...


class Claims(Protocol):
    """A phone claimed before WeCom is written, then committed or released (rules.claim, I1 to I3)."""

    async def claim_phone(self, member_id: str, phone: Phone, *, lease: float, actor: Actor) -> Claim:
        """Hold the phone for the member as pending for lease seconds, before writing to WeCom (rules.claim).

        Claiming the member's own bound phone returns a Claim with already_bound and changes
        nothing. Raises AccountFollowed (I3), PhoneTaken (I1), or ClaimInProgress when the member
        holds another live claim. An expired claim of anyone no longer holds its phone.
        """
        ...

    async def commit_claim(self, claim: Claim) -> Binding:
        """Make the claimed phone the member's bound phone and free the previous one (I2).

        Allowed after the lease ran out as long as nobody replaced the claim; raises ClaimLost
        when the claim's token no longer holds the member.
        """
        ...

    async def release_claim(self, claim: Claim) -> bool:
        """Give the claim up, back to the member's previous state; False when it was no longer held."""
        ...


class StalePhones(Protocol):
    """A phone the store gives to a member that WeCom does not (rules.stale_phone)."""

    async def release_stale_phone(
        self, phone: Phone, *, claimant: str, wecom_holder: str | None, actor: Actor
    ) -> bool:
        """Before 2.1 is refused on the store's word alone: WeCom gives the phone to wecom_holder (None:
        to nobody). Strip it, audited, from a store holder that WeCom contradicts (not from a live claim);
        True when the phone is free for the claimant now (rules.stale_phone)."""
        ...


class MemberRemoval(Protocol):
    """A member's binding removed: WeCom's delete_user, or an administrator's release."""

    async def delete_member(self, member_id: str, *, actor: Actor) -> bool:
        """Remove the member's binding, freeing its phones and openid; False when it had none."""
        ...


class MemberChanges(MemberRemoval, Protocol):
    """What WeCom's callbacks change about a member: follow (I4), unfollow, phone, removal, new id."""

    async def follow(self, member_id: str, openid: str, *, actor: Actor) -> Binding:
        """Record that the member follows as openid (I4); idempotent for the same pair.

        Raises OpenidConflict when the member follows as another openid or the openid as another
        member. A pending claim of the member is dropped (WeCom's follow is the truth).
        """
        ...

    async def unfollow(self, member_id: str, *, actor: Actor) -> Binding | None:
        """Record that the member unfollowed: back to bound (free to bind another phone); idempotent."""
        ...

    async def set_member_phone(
        self, member_id: str, phone: Phone | None, *, take: bool, actor: Actor, spare_live_claim: bool = False
    ) -> Binding | None:
        """Set the member's phone to WeCom's truth (None: no phone); drops a pending claim.

        When another member holds the phone: PhoneTaken unless take, which strips it from them.
        A followed member stays followed. spare_live_claim: a live claim of the member (its lease
        running) is left alone, and nothing changes, decided in the same atomic step as the write.
        """
        ...

    async def rename_member(self, old_id: str, new_id: str, *, actor: Actor) -> Binding | None:
        """Move a binding to WeCom's new user id, replacing any stale binding of new_id; None when
        old_id had no binding."""
        ...


class DriftFixes(Protocol):
    """Reconcile's fix of one drift, applied only while the binding is as it was seen."""

    async def fix_drift(
        self, member_id: str, fix: Fix, phone: Phone | None, *, seen: Binding | None, actor: Actor
    ) -> Binding | None:
        """Reconcile's fix in one atomic step, only while the member's binding is still `seen`
        (BindingChanged otherwise): delete it, end its follow, or set its phone (taking it, as
        set_member_phone with take does); Fix.NONE changes nothing."""
        ...


class Integrity(Protocol):
    """The check of every invariant, for a quiet store."""

    async def integrity_problems(self) -> list[str]:
        """Describe every broken invariant (index without binding, binding without audit...);
        empty when consistent. Meant for a quiet store: checks, reconcile, tests."""
        ...


class ConflictAudit(Protocol):
    """The audit record of a change that a rule refused."""

    async def audit_conflict(self, member_id: str, phone: Phone | None, detail: str, *, actor: Actor) -> None:
        """Record a change that a rule refused (a conflict), with the phone masked; nothing else changes."""
        ...


class AuditNotes(Protocol):
    """The audit record of something done about a member that changes no binding."""

    async def audit_note(self, member_id: str, action: AuditAction, detail: str, *, actor: Actor) -> None:
        """Append an audit record of something done about the member that changes no binding
        (a data request's export or erasure)."""
        ...


class AuditListing(Protocol):
    """The audit log as read back, newest first."""

    async def audit_list(self, *, member_id: str | None = None, limit: int = 100) -> list[AuditRecord]:
        """Return audit records, newest first, optionally of one member only."""
        ...


class AuditByAction(Protocol):
    """The audit records of some actions, from a time on."""

    async def audit_since(self, since: float, *, actions: Collection[AuditAction]) -> list[AuditRecord]:
        """Return the audit records of the given actions written at or after since, oldest first."""
        ...


class Audit(ConflictAudit, AuditNotes, AuditListing, AuditByAction, Protocol):
    """The audit log (I5): listing, notes and pruning besides conflicts."""

    async def audit_prune(self, before: float, *, member_id: str | None = None) -> int:
        """Delete the audit records written before the time given (all, or one member's) and
        return how many; the retention period is the caller's to respect."""
        ...


class InboxQueue(Protocol):
    """The durable event inbox as its workers use it."""

    async def inbox_append(
        self, dedup_key: str, event_type: str, payload: str, *, member_id: str | None = None,
        create_time: int = 0,
    ) -> bool:
        """Store an event durably; False when its dedup key was seen already (a no-op).

        The events of one member_id are handled one at a time, in create_time order, then in the
        order they were appended (see inbox_take); an event without a member_id is not ordered.
        """
        ...

    async def inbox_take(self, limit: int, *, lease: float) -> list[InboxItem]:
        """Lease up to limit due events to the caller; an expired lease makes them takeable again.

        A member's event is taken only when it is the first of that member's events not yet handled
        nor dead, and while no other event of that member is leased: one member's events run one
        at a time and in order, across workers and processes, while different members' run at once.
        """
        ...

    async def inbox_done(self, item_id: int) -> None:
        """Remove a handled event (its dedup key stays remembered)."""
        ...

    async def inbox_retry(self, item_id: int, error: str, *, delay: float) -> int:
        """Count a failed attempt and make the event due again after delay; return the attempts so
        far, or 0 when the event is no longer in the inbox."""
        ...

    async def inbox_dead(self, item_id: int, error: str) -> None:
        """Move a failing event to the dead letters."""
        ...


class InboxCounts(Protocol):
    """How many of the inbox's events wait, are leased or are dead, and how long the oldest has waited."""

    async def inbox_stats(self) -> InboxStats:
        """Return the pending, leased and dead counts."""
        ...

    async def inbox_oldest_pending(self) -> float | None:
        """Return when the oldest event not yet handled (ready, retrying or leased; not dead) was
        stored, or None when there is none."""
        ...


class DeadLetters(InboxCounts, Protocol):
    """The inbox's dead letters and counts, for operators and monitoring."""

    async def inbox_list_dead(self, *, limit: int = 100) -> list[InboxItem]:
        """Return dead letters, most recently dead first."""
        ...

    async def inbox_requeue_dead(self, item_ids: Sequence[int] | None = None) -> int:
        """Put dead letters (all, or the given ones) back as due with attempts reset; return how many."""
        ...

    async def inbox_drop_dead(self, item_ids: Sequence[int]) -> int:
        """Remove the given dead letters for good (a data erasure); return how many were dead."""
        ...


class Erasure(Protocol):
    """What a data erasure removes beyond the pieces above, and how it makes the removal stick on disk."""

    async def forget_member_seen(self, member_id: str) -> bool:
        """Remove WeCom's word on the member (MemberSeen); False when there was none."""
        ...

    async def audit_redact(self, member_id: str | None, text: str, replacement: str) -> int:
        """Replace text in the details of the member's audit records, or of every member's with None
        (an erasure masks the openids that the records it keeps name, and the student's own WeChat
        wherever another member's conflict names it); return how many records changed."""
        ...

    async def kv_delete_prefix(self, prefix: str) -> int:
        """Delete every kv entry whose key starts with prefix (a student's entries keyed by a form or
        a login, which no index names); return how many. A scan: for erasure, not for a request."""
        ...

    async def scrub(self) -> str:
        """Push what was deleted out of the files the store keeps (SQLite: a checkpoint that truncates
        the WAL; Redis: a rewrite of the append-only file); return what was done, for the operator."""
        ...


class Store(
    KeyValueStore,
    MemberRecords,
    Lifecycle,
    Directory,
    BindingLookup,
    Claims,
    StalePhones,
    MemberChanges,
    DriftFixes,
    Integrity,
    Audit,
    InboxQueue,
    DeadLetters,
    Erasure,
    Protocol,
):
    """The whole store: directory, bindings with the rules I1 to I5 held atomically, audit, inbox, kv.

    The rules themselves are the pure decisions of handlers.core.rules; a rule-keeping method reads the
    records its rule asks for, decides, and applies the decision (writes and audit records) in one
    atomic step, provided that nothing it read has changed meanwhile, else it reads again. Every
    method may raise StoreUnavailable, and then wrote nothing. Rule-keeping methods take an Actor and
    write their audit record in the same atomic operation as the change. Phones are
    handlers.core.phone.Phone values, parsed where they entered (a plain str is a TypeError).
    """


# What each use case needs of the store: the backends fulfil every one of them, structurally.


class BindingFlowStore(
    Remembers,
    Counters,
    DirectoryLookup,
    DirectorySize,
    MemberRecords,
    BindingLookup,
    Claims,
    StalePhones,
    ConflictAudit,
    AuditNotes,
    Protocol,
):
    """The binding flow's store: a student's directory entry and binding, WeCom's word on the member,
    claims, a stale holder's phone, refused changes and notes, and what it remembers and counts (an
    invitation, a member it created, a day's user/getuserid misses)."""


class CallbackStore(
    Remembers, BindingLookup, MemberChanges, MemberRecords, ConflictAudit, AuditListing, Protocol
):
    """The callback handlers' store: bindings, what WeCom's events change, WeCom's word on the member
    (a subscribe's join, an unsubscribe's status, a delete), refused changes, a member's audit record
    (whether the flow bound it, for the welcome), and short memories."""


class AdmissionStore(BindingLookup, MemberRecords, ConflictAudit, Protocol):
    """The admission gate's store: the bindings, WeCom's word on the member, and the record of an
    admission the rules refused."""


class ReconcileStore(DirectoryLookup, BindingLookup, DriftFixes, RemembersMany, Protocol):
    """Reconcile's store: the directory and bindings to compare, each drift's fix, and which members
    the flow created (kv)."""


class ReleaseStore(BindingLookup, MemberRemoval, Remembers, Protocol):
    """An administrator's release: the member's binding, its removal, and whether the flow created
    the member in WeCom (kv)."""


class SyncStore(MemberRecords, DirectoryListing, Remembers, Forgets, Protocol):
    """Sync's store: the members' records, the directory, and its checkpoint (kv)."""


class ProofStore(Remembers, Counters, LimitedCounters, AtomicEntries, SingleUse, Protocol):
    """The SMS proof's store, all kv: a challenge kept and popped once, the send counters under their
    limits, the attempts counted, and the student's index."""


class ConsoleStore(
    Directory,
    ReleaseStore,
    MemberRecords,
    AuditListing,
    AuditByAction,
    AuditNotes,
    DeadLetters,
    KeyValueStore,
    Protocol,
):
    """The administrators' console's store: the directory it reads and imports, the bindings it reads
    and releases, WeCom's word on members, the audit log it reads and writes to, the inbox's dead
    letters, and kv (its sessions and login nonces, an upload's preview, an invitation remembered)."""


class PagesStore(BindingFlowStore, SessionsStore, RemembersMany, LimitedCounters, SetsOnce, Protocol):
    """The students' pages' store: their binding flow's (which holds the admission gate's), their
    sessions', the SMS proof's kv, and their own (a CAS ticket spent, a form's outcome, the limits)."""


class HealthStore(Pings, InboxCounts, Protocol):
    """/ready's and /metrics' store: whether it answers and keeps its writes, and the inbox's counts."""
