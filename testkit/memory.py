"""The store in memory: the whole Store contract in dictionaries, for the use cases' tests.

Not a production backend (nothing survives the process): it runs the same contract suite as SQLite
and Redis (tests/store/test_contract.py), and its rule-keeping methods read, decide and apply the
decisions of handlers.core.rules through the backends' own RulesRunner, so that it cannot keep a
rule of its own. Every call is a suspension point, as a real store's round trip is: coroutines
interleave around it as they would around SQLite or Redis.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from callback_service.store.common import (
    DEFAULT_DEDUP_TTL,
    find_problems,
    kv_changes,
    limit_arg,
    new_token,
    newest_seen,
    positive,
)
from callback_service.store.rules_runner import MAX_READS, RulesRunner
from handlers.core.binding import (
    Actor,
    AuditAction,
    AuditRecord,
    Binding,
    DirectoryEntry,
    InboxItem,
    InboxStats,
)
from handlers.core.member import MemberSeen
from handlers.core.rules import Decision, Draft, Key, KeyKind, Row, Unread, Value, decide
from handlers.usecases.contracts import Clock, StoreUnavailable

T = TypeVar("T")


@dataclass(slots=True)
class _Event:
    item: InboxItem
    state: str  # "ready", "leased" or "dead"
    available_at: float
    member_id: str | None = None
    create_time: int = 0
    dead_at: float | None = None

    @property
    def order(self) -> tuple[int, int]:
        return (self.create_time, self.item.id)


class MemoryStore(RulesRunner):
    """Directory, bindings (the rules of handlers.core.rules), audit, inbox, kv, locks and WeCom's
    word on members, held in this process; `await MemoryStore.open()` or `MemoryStore()`."""

    def __init__(self, *, clock: Clock = time.time, dedup_ttl: float = DEFAULT_DEDUP_TTL) -> None:
        self._clock = clock
        self._dedup_ttl = positive("dedup_ttl", dedup_ttl)
        self._closed = False
        self._directory: dict[str, DirectoryEntry] = {}
        self._bindings: dict[str, Row] = {}
        self._phones: dict[str, str] = {}
        self._audit: list[AuditRecord] = []
        self._kv: dict[str, tuple[str, float]] = {}
        self._locks: dict[str, tuple[str, float]] = {}
        self._inbox: dict[int, _Event] = {}
        self._dedup: dict[str, float] = {}
        self._seen: dict[str, MemberSeen] = {}
        self._next_id = 1

    @classmethod
    async def open(cls, *, clock: Clock = time.time) -> MemoryStore:
        """A new, empty store."""
        return cls(clock=clock)

    async def _turn(self) -> float:
        """Yield to the loop as a real store's call does, then check the store is open; the time."""
        await asyncio.sleep(0)
        if self._closed:
            raise StoreUnavailable("memory: store is closed")
        return self._clock()

    # lifecycle

    async def ping(self) -> None:
        """Answer while open."""
        await self._turn()

    async def close(self) -> None:
        """Close: every later call raises StoreUnavailable."""
        self._closed = True

    # the rules

    def _read_key(self, key: Key) -> Value:
        if key.kind is KeyKind.BINDING:
            return self._bindings.get(key.name)
        if key.kind is KeyKind.PHONE:
            return self._phones.get(key.name)
        return next((r.member_id for r in self._bindings.values() if r.openid == key.name), None)

    def _decided(self, now: float, first: Sequence[Key], rule: Callable[[Draft], T]) -> Decision[T]:
        records: dict[Key, Value] = {key: self._read_key(key) for key in first}
        for _ in range(MAX_READS):
            try:
                return decide(records, now, rule)
            except Unread as unread:
                records[unread.key] = self._read_key(unread.key)
        raise StoreUnavailable(f"memory: a rule asked for more than {MAX_READS} records")

    async def _decide(
        self, first: Sequence[Key], rule: Callable[[Draft], T], actor: Actor | None, *, guess: bool = False
    ) -> T:
        # No await between the reads and the writes: the decision is applied atomically.
        now = await self._turn()
        decision = self._decided(now, first, rule)
        if decision.audits and actor is None:
            raise ValueError("a change that writes audit records needs an actor")
        for key, value in decision.writes.items():
            if key.kind is KeyKind.BINDING and value is None:
                self._bindings.pop(key.name, None)
        for key, value in decision.writes.items():
            if key.kind is KeyKind.BINDING and isinstance(value, Row):
                self._bindings[key.name] = value
            elif key.kind is KeyKind.PHONE:
                if value is None:
                    self._phones.pop(key.name, None)
                else:
                    self._phones[key.name] = str(value)
            # the openid index is the bindings' openid, written above
        for entry in decision.audits:
            assert actor is not None
            self._audit.append(
                AuditRecord(
                    id=len(self._audit) + 1,
                    at=now,
                    who=actor.who,
                    source=actor.source,
                    action=entry.action,
                    member_id=entry.member_id,
                    phone_masked=entry.phone_masked,
                    detail=entry.detail,
                )
            )
        return decision.result()

    async def _look(self, first: Sequence[Key], rule: Callable[[Draft], T]) -> T:
        now = await self._turn()
        decision = self._decided(now, first, rule)
        if decision.writes or decision.audits:
            raise ValueError("a lookup decided to write")
        return decision.result()

    async def get_binding(self, member_id: str) -> Binding | None:
        """Return the member's binding as stored, or None."""
        await self._turn()
        row = self._bindings.get(member_id)
        return None if row is None else row.binding()

    async def list_bindings(self) -> list[Binding]:
        """Return every binding by member id."""
        await self._turn()
        return [self._bindings[m].binding() for m in sorted(self._bindings)]

    async def integrity_problems(self) -> list[str]:
        """Check the invariants across bindings, the phone index and the audit log."""
        await self._turn()
        rows = list(self._bindings.values())
        openids = {row.openid: row.member_id for row in rows if row.openid is not None}
        return find_problems(rows, dict(self._phones), openids, {r.member_id for r in self._audit})

    # audit log

    async def audit_list(self, *, member_id: str | None = None, limit: int = 100) -> list[AuditRecord]:
        """Return audit records, newest first."""
        limit = limit_arg(limit)
        await self._turn()
        found = [r for r in reversed(self._audit) if member_id is None or r.member_id == member_id]
        return found[:limit]

    async def audit_since(self, since: float, *, actions: Collection[AuditAction]) -> list[AuditRecord]:
        """Return the audit records of the given actions written at or after since, oldest first."""
        wanted = {AuditAction(action) for action in actions}
        await self._turn()
        return [r for r in self._audit if r.at >= since and r.action in wanted]

    async def audit_prune(self, before: float, *, member_id: str | None = None) -> int:
        """Delete the audit records written before the time given."""
        await self._turn()
        kept = [r for r in self._audit if not (r.at < before and member_id in (None, r.member_id))]
        pruned = len(self._audit) - len(kept)
        self._audit = kept
        return pruned

    async def audit_redact(self, member_id: str | None, text: str, replacement: str) -> int:
        """Replace text in the member's audit details (every member's with None)."""
        if not text:
            raise ValueError("audit_redact: nothing to replace")
        await self._turn()
        changed = 0
        for index, record in enumerate(self._audit):
            if member_id in (None, record.member_id) and text in record.detail:
                self._audit[index] = replace(record, detail=record.detail.replace(text, replacement))
                changed += 1
        return changed

    # school directory

    async def directory_upsert(self, entries: Sequence[DirectoryEntry]) -> int:
        """Insert or replace directory entries."""
        await self._turn()
        for entry in entries:
            self._directory[entry.member_id] = entry
        return len(entries)

    async def directory_get(self, member_id: str) -> DirectoryEntry | None:
        """Return a student's directory entry."""
        await self._turn()
        return self._directory.get(member_id)

    async def directory_count(self) -> int:
        """Return the number of directory entries."""
        await self._turn()
        return len(self._directory)

    async def directory_list(self) -> list[DirectoryEntry]:
        """Return every directory entry by student id."""
        await self._turn()
        return [self._directory[m] for m in sorted(self._directory)]

    async def directory_delete(self, member_id: str) -> bool:
        """Remove a student's directory entry."""
        await self._turn()
        return self._directory.pop(member_id, None) is not None

    # WeCom's word on each member

    async def record_members(self, seen: Sequence[MemberSeen]) -> int:
        """Upsert the newest record of each member; return the statuses changed."""
        await self._turn()
        changed = 0
        for record in newest_seen(seen).values():
            stored = self._seen.get(record.member_id)
            if stored is not None and record.seen_at < stored.seen_at:
                continue
            if stored is None or stored.status != record.status:
                changed += 1
            self._seen[record.member_id] = record
        return changed

    async def member_seen(self, member_id: str) -> MemberSeen | None:
        """Return the member's record."""
        await self._turn()
        return self._seen.get(member_id)

    async def list_members_seen(self) -> list[MemberSeen]:
        """Return every record by member id."""
        await self._turn()
        return [self._seen[m] for m in sorted(self._seen)]

    async def forget_member_seen(self, member_id: str) -> bool:
        """Remove the member's record."""
        await self._turn()
        return self._seen.pop(member_id, None) is not None

    async def scrub(self) -> str:
        """Nothing to push out: the store keeps no file."""
        await self._turn()
        return "memory: nothing on disk"

    # key-value entries and locks

    def _live(self, key: str, now: float) -> tuple[str, float] | None:
        entry = self._kv.get(key)
        return entry if entry is not None and entry[1] > now else None

    async def kv_get(self, key: str) -> str | None:
        """Return the value unless absent or expired."""
        now = await self._turn()
        entry = self._live(key, now)
        return None if entry is None else entry[0]

    async def kv_set(self, key: str, value: str, *, ttl: float) -> None:
        """Set the value with a ttl."""
        ttl = positive("ttl", ttl)
        now = await self._turn()
        self._kv[key] = (value, now + ttl)

    async def kv_set_if_absent(self, key: str, value: str, *, ttl: float) -> bool:
        """Set the value only when absent or expired."""
        ttl = positive("ttl", ttl)
        now = await self._turn()
        if self._live(key, now) is not None:
            return False
        self._kv[key] = (value, now + ttl)
        return True

    async def kv_get_many(self, keys: Sequence[str]) -> list[str | None]:
        """Return each key's value unless absent or expired."""
        now = await self._turn()
        return [None if (entry := self._live(key, now)) is None else entry[0] for key in keys]

    async def kv_apply(
        self,
        sets: Mapping[str, tuple[str, float]],
        *,
        deletes: Collection[str] = (),
        if_absent: Collection[str] = (),
    ) -> bool:
        """Set and delete entries at once, when every key of if_absent is absent or expired."""
        entries, gone, absent = kv_changes(sets, deletes, if_absent)
        if not (entries or gone or absent):
            return True
        now = await self._turn()
        if any(self._live(key, now) is not None for key in absent):
            return False
        for key, (value, ttl) in entries.items():
            self._kv[key] = (value, now + ttl)
        for key in gone:
            self._kv.pop(key, None)
        return True

    async def kv_pop(self, key: str) -> str | None:
        """Read and delete at once."""
        now = await self._turn()
        entry = self._kv.pop(key, None)
        return entry[0] if entry is not None and entry[1] > now else None

    async def kv_delete(self, key: str) -> None:
        """Delete the entry."""
        await self._turn()
        self._kv.pop(key, None)

    async def kv_delete_prefix(self, prefix: str) -> int:
        """Delete the entries whose key starts with prefix."""
        if not prefix:
            raise ValueError("kv_delete_prefix: an empty prefix would delete every entry")
        await self._turn()
        doomed = [key for key in self._kv if key.startswith(prefix)]
        for key in doomed:
            del self._kv[key]
        return len(doomed)

    async def kv_incr(self, key: str, *, ttl: float) -> int:
        """Increment a counter that expires ttl seconds after it was created."""
        ttl = positive("ttl", ttl)
        now = await self._turn()
        entry = self._live(key, now)
        count, expires_at = (1, now + ttl) if entry is None else (int(entry[0]) + 1, entry[1])
        self._kv[key] = (str(count), expires_at)
        return count

    async def kv_incr_under(self, limits: Mapping[str, int], *, ttl: float) -> str | None:
        """Increment every counter at once, unless one has reached its limit."""
        ttl = positive("ttl", ttl)
        now = await self._turn()
        counts: dict[str, tuple[int, float]] = {}
        for key, limit in limits.items():
            entry = self._live(key, now)
            count = 0 if entry is None else int(entry[0])
            if count >= limit:
                return key
            counts[key] = (count + 1, now + ttl if entry is None else entry[1])
        for key, (count, expires_at) in counts.items():
            self._kv[key] = (str(count), expires_at)
        return None

    async def lock_acquire(self, name: str, *, lease: float) -> str | None:
        """Take the named lock for lease seconds."""
        lease = positive("lease", lease)
        now = await self._turn()
        held = self._locks.get(name)
        if held is not None and held[1] > now:
            return None
        token = new_token()
        self._locks[name] = (token, now + lease)
        return token

    async def lock_release(self, name: str, token: str) -> bool:
        """Release the lock if the token still owns it."""
        now = await self._turn()
        held = self._locks.get(name)
        if held is None or held[0] != token:
            return False
        del self._locks[name]
        return held[1] > now

    # durable event inbox (durable as long as the process lives)

    async def inbox_append(
        self, dedup_key: str, event_type: str, payload: str, *, member_id: str | None = None,
        create_time: int = 0,
    ) -> bool:
        """Append an event unless its dedup key is remembered; a member's events are taken in order."""
        now = await self._turn()
        if self._dedup.get(dedup_key, 0.0) > now:
            return False
        self._dedup[dedup_key] = now + self._dedup_ttl
        item = InboxItem(
            id=self._next_id,
            dedup_key=dedup_key,
            event_type=event_type,
            payload=payload,
            attempts=0,
            created_at=now,
            last_error=None,
        )
        self._inbox[item.id] = _Event(item, "ready", now, member_id or None, create_time)
        self._next_id += 1
        return True

    async def inbox_take(self, limit: int, *, lease: float) -> list[InboxItem]:
        """Lease due events, the longest due first."""
        limit = limit_arg(limit)
        lease = positive("lease", lease)
        now = await self._turn()
        live = [e for e in self._inbox.values() if e.state != "dead"]

        def takeable(event: _Event) -> bool:
            # As the backends: the first of its member's live events, with none of them leased.
            return event.available_at <= now and (
                event.member_id is None
                or not any(
                    other.member_id == event.member_id
                    and other is not event
                    and (other.order < event.order or (other.state == "leased" and other.available_at > now))
                    for other in live
                )
            )

        due = sorted(filter(takeable, live), key=lambda e: (e.available_at, e.item.id))[:limit]
        for event in due:
            event.state, event.available_at = "leased", now + lease
        return [event.item for event in due]

    async def inbox_done(self, item_id: int) -> None:
        """Remove a handled event."""
        await self._turn()
        self._inbox.pop(item_id, None)

    async def inbox_retry(self, item_id: int, error: str, *, delay: float) -> int:
        """Count a failure and schedule the event again."""
        now = await self._turn()
        event = self._inbox.get(item_id)
        if event is None or event.state == "dead":
            return 0
        event.item = replace(event.item, attempts=event.item.attempts + 1, last_error=error)
        event.state, event.available_at = "ready", now + max(0.0, delay)
        return event.item.attempts

    async def inbox_dead(self, item_id: int, error: str) -> None:
        """Move an event to the dead letters."""
        now = await self._turn()
        event = self._inbox.get(item_id)
        if event is None or event.state == "dead":
            return
        event.item = replace(event.item, attempts=event.item.attempts + 1, last_error=error)
        event.state, event.dead_at = "dead", now

    async def inbox_list_dead(self, *, limit: int = 100) -> list[InboxItem]:
        """Return dead letters, most recent first."""
        limit = limit_arg(limit)
        await self._turn()
        dead = [e for e in self._inbox.values() if e.state == "dead"]
        dead.sort(key=lambda e: (e.dead_at or 0.0, e.item.id), reverse=True)
        return [e.item for e in dead[:limit]]

    async def inbox_requeue_dead(self, item_ids: Sequence[int] | None = None) -> int:
        """Put dead letters back as due."""
        now = await self._turn()
        wanted = None if item_ids is None else set(item_ids)
        count = 0
        for event in self._inbox.values():
            if event.state == "dead" and (wanted is None or event.item.id in wanted):
                event.item = replace(event.item, attempts=0)
                event.state, event.available_at, event.dead_at = "ready", now, None
                count += 1
        return count

    async def inbox_drop_dead(self, item_ids: Sequence[int]) -> int:
        """Remove the given dead letters for good."""
        await self._turn()
        dropped = 0
        for item_id in set(item_ids):
            event = self._inbox.get(item_id)
            if event is not None and event.state == "dead":
                del self._inbox[item_id]
                dropped += 1
        return dropped

    async def inbox_stats(self) -> InboxStats:
        """Return the inbox counts."""
        now = await self._turn()
        events = list(self._inbox.values())
        leased = sum(e.state == "leased" and e.available_at > now for e in events)
        dead = sum(e.state == "dead" for e in events)
        return InboxStats(pending=len(events) - leased - dead, leased=leased, dead=dead)

    async def inbox_oldest_pending(self) -> float | None:
        """Return when the oldest event not yet handled was stored."""
        await self._turn()
        live = [e.item for e in self._inbox.values() if e.state != "dead"]
        return min((item.created_at for item in live), default=None)
