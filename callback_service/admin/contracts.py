"""What the console needs from the store, as one narrow Protocol: the reads of its counts and lists,
the audit log it writes to, the inbox's dead letters, and WeCom's word on members."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol

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
from handlers.core.phone import Phone


class ConsoleStore(Protocol):
    """The store as the admin console reads and writes it (every method may raise StoreUnavailable)."""

    async def directory_list(self) -> list[DirectoryEntry]:
        """Every directory entry, by student id."""
        ...

    async def directory_count(self) -> int:
        """How many students the directory holds."""
        ...

    async def directory_get(self, member_id: str) -> DirectoryEntry | None:
        """A student's directory entry."""
        ...

    async def list_bindings(self) -> list[Binding]:
        """Every binding, by member id."""
        ...

    async def get_binding(self, member_id: str) -> Binding | None:
        """A member's binding."""
        ...

    async def get_binding_by_phone(self, phone: Phone) -> Binding | None:
        """The binding that holds a phone."""
        ...

    async def list_members_seen(self) -> list[MemberSeen]:
        """WeCom's last word on every member."""
        ...

    async def member_seen(self, member_id: str) -> MemberSeen | None:
        """WeCom's last word on a member."""
        ...

    async def record_members(self, seen: Sequence[MemberSeen]) -> int:
        """Record WeCom's word on members."""
        ...

    async def audit_list(self, *, member_id: str | None = None, limit: int = 100) -> list[AuditRecord]:
        """Audit records, newest first."""
        ...

    async def audit_since(self, since: float, *, actions: Collection[AuditAction]) -> list[AuditRecord]:
        """Audit records of some actions since a time, oldest first."""
        ...

    async def audit_note(self, member_id: str, action: AuditAction, detail: str, *, actor: Actor) -> None:
        """Audit something done about a member that changes no binding."""
        ...

    async def inbox_stats(self) -> InboxStats:
        """The inbox's counts."""
        ...

    async def inbox_list_dead(self, *, limit: int = 100) -> list[InboxItem]:
        """Dead letters, most recently dead first."""
        ...

    async def inbox_requeue_dead(self, item_ids: Sequence[int] | None = None) -> int:
        """Put dead letters back in the inbox."""
        ...

    async def inbox_drop_dead(self, item_ids: Sequence[int]) -> int:
        """Remove dead letters for good."""
        ...
