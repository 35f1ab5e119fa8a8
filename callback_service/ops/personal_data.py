"""Personal data (PIPL): a student's data request (export), erasure, and the audit log's retention.

Both the export and the erasure are audited. The erasure removes the binding (freeing its phone
and openid), the directory entry, the open sessions and the dead letters of the student's events;
of the audit log it keeps only the student's records within the retention period, which hold
masked phones only. Rate counters and page results keyed by the student expire within minutes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

from callback_service.callbacks.inbox import open_envelope
from callback_service.callbacks.xml import MalformedXml, parse_event
from callback_service.web.pages.session import end_sessions_of, sessions_of
from handlers.core.binding import Actor, AuditAction, InboxItem
from handlers.usecases.contracts import Store

DAY = 24 * 3600.0
DEAD_LETTERS_READ = 100_000
"""How many dead letters a data request reads: all of them, at any inbox this service keeps."""


class RetentionError(ValueError):
    """A prune would delete audit records that the retention period keeps."""


class UnknownStudent(LookupError):
    """The store holds nothing at all about the id: no directory entry, binding, session, dead letter
    or audit record (a mistyped id, most likely); nothing is exported, erased or audited."""


def _iso(at: float | None) -> str | None:
    return None if at is None else dt.datetime.fromtimestamp(at, tz=dt.UTC).isoformat(timespec="seconds")


def retention_start(now: float, retention_days: int) -> float:
    """The oldest time the retention period keeps: records before it may go."""
    return now - retention_days * DAY


def day_start(date: dt.date) -> float:
    """Midnight UTC at the start of the date, as seconds since the epoch."""
    return dt.datetime.combine(date, dt.time(), tzinfo=dt.UTC).timestamp()


async def prune_audit(store: Store, before: dt.date, *, now: float, retention_days: int) -> int:
    """Delete the audit records written before the date (UTC); RetentionError inside the retention."""
    cutoff = day_start(before)
    if cutoff > retention_start(now, retention_days):
        keep_from = dt.datetime.fromtimestamp(retention_start(now, retention_days), tz=dt.UTC).date()
        raise RetentionError(
            f"{before.isoformat()} is inside the retention period of {retention_days} days:"
            f" name {keep_from.isoformat()} or earlier"
        )
    return await store.audit_prune(cutoff)


async def dead_letters_of(store: Store, member_id: str) -> list[InboxItem]:
    """The dead letters (events that kept failing) about the student."""
    found = []
    for item in await store.inbox_list_dead(limit=DEAD_LETTERS_READ):
        try:
            event = parse_event(open_envelope(item.payload)[1].encode("utf-8"))
        except MalformedXml:
            continue
        if event.member_id == member_id:
            found.append(item)
    return found


async def export_student(store: Store, member_id: str, *, now: float, actor: Actor) -> dict[str, Any]:
    """Everything the store holds about the student, for a data request (audited as an export)."""
    entry = await store.directory_get(member_id)
    binding = await store.get_binding(member_id)
    audit = await store.audit_list(member_id=member_id, limit=10_000)
    sessions = await sessions_of(store, member_id)
    dead = await dead_letters_of(store, member_id)
    if entry is None and binding is None and not audit and not sessions and not dead:
        raise UnknownStudent(member_id)
    data: dict[str, Any] = {
        "member_id": member_id,
        "exported_at": _iso(now),
        "directory": None if entry is None else asdict(entry),
        "binding": None if binding is None else {
            "phone": binding.phone,
            "state": binding.state.value,
            "openid": binding.openid,
            "previous_phone": binding.previous_phone,
            "lease_expires_at": _iso(binding.lease_expires_at),
            "updated_at": _iso(binding.updated_at),
        },
        "sessions": [{"name": s.name, "cas_mobile": s.cas_mobile} for s in sessions],
        "dead_letters": [
            {"id": item.id, "event": item.event_type, "stored_at": _iso(item.created_at),
             "error": item.last_error}
            for item in dead
        ],
        "audit": [
            {
                "at": _iso(record.at), "action": record.action.value, "who": record.who,
                "source": record.source, "phone": record.phone_masked, "detail": record.detail,
            }
            for record in audit
        ],
    }
    await store.audit_note(member_id, AuditAction.EXPORT, "data request: export", actor=actor)
    return data


async def _known(store: Store, member_id: str) -> bool:
    """Whether the store holds anything about the student (the cheap reads first)."""
    return (
        await store.directory_get(member_id) is not None
        or await store.get_binding(member_id) is not None
        or bool(await store.audit_list(member_id=member_id, limit=1))
        or bool(await sessions_of(store, member_id))
        or bool(await dead_letters_of(store, member_id))
    )


@dataclass(frozen=True, slots=True)
class Erasure:
    """What an erasure removed."""

    binding: bool
    directory: bool
    sessions: int
    dead_letters: int
    audit_records: int


async def erase_student(
    store: Store, member_id: str, *, now: float, retention_days: int, actor: Actor
) -> Erasure:
    """Remove the student's data, keeping only their masked audit records within the retention."""
    if not await _known(store, member_id):
        raise UnknownStudent(member_id)
    # The binding goes through the rules' own removal: its phone and openid are freed, audited.
    binding = await store.delete_member(member_id, actor=actor)
    directory = await store.directory_delete(member_id)
    sessions = await end_sessions_of(store, member_id)
    dead_letters = await store.inbox_drop_dead([item.id for item in await dead_letters_of(store, member_id)])
    pruned = await store.audit_prune(retention_start(now, retention_days), member_id=member_id)
    erasure = Erasure(binding=binding, directory=directory, sessions=sessions, dead_letters=dead_letters,
                      audit_records=pruned)
    await store.audit_note(
        member_id, AuditAction.ERASE,
        f"data request: erased binding={binding} directory={directory} sessions={sessions}"
        f" dead letters={dead_letters} old audit records={pruned}",
        actor=actor,
    )
    return erasure
