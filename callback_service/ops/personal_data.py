"""Personal data (PIPL): a student's data request (export), erasure, and the audit log's retention.

Both the export and the erasure are audited. The erasure removes the binding (freeing its phone
and openid), the directory entry, WeCom's word on the member (MemberSeen), the open sessions, the
dead letters of the student's events, what the SMS proof keeps (its counters, the phones' tags,
pending codes), and every kv entry keyed by the student (page results, rate counters, the memory of
a welcome, an invitation, a member the flow created); of the audit log it keeps only the student's
records within the retention period, which hold masked phones only, and in which it masks the
openids too. It ends by scrubbing the store's files (Store.scrub: SQLite's WAL checkpointed and
truncated, Redis's append-only file rewritten), so that no copy of what it deleted stays on disk.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import asdict, dataclass
from typing import Any

from callback_service.admin.views import UPLOAD_PREFIX
from callback_service.callbacks.inbox import open_envelope
from callback_service.callbacks.xml import MalformedXml, parse_event
from callback_service.store.sessions import end_sessions_of, sessions_of
from handlers.core.binding import Actor, AuditAction, InboxItem
from handlers.usecases.binding_flow import created_key, invite_key, results_prefix, submits_key
from handlers.usecases.callbacks import welcome_key
from handlers.usecases.contracts import Store
from handlers.usecases.sms_proof import forget_sms_of, sms_records_of

DAY = 24 * 3600.0
_OPENID_IN_DETAIL = re.compile(r"(?:openid|joining as) ([A-Za-z0-9_-]{8,})")
"""An openid as the rules' audit details name it (follow, unfollow, a conflict of I4; an admission
refused before this wording named the joining WeChat without the word openid)."""
DEAD_LETTERS_READ = 100_000
"""How many dead letters a data request reads: all of them, at any inbox this service keeps."""


class RetentionError(ValueError):
    """A prune would delete audit records that the retention period keeps."""


class UnknownStudent(LookupError):
    """The store holds nothing at all about the id: no directory entry, binding, session, dead letter
    or audit record (a mistyped id, most likely); nothing is exported, erased or audited."""


def _remembered(member_id: str) -> dict[str, str]:
    """The kv entries keyed by the student alone, by what each remembers."""
    return {
        "created_by_flow": created_key(member_id),
        "invited": invite_key(member_id),
        "welcomed": welcome_key(member_id),
        "submits_counted": submits_key(member_id),
    }


def mask_openid(openid: str) -> str:
    """An openid as the audit log keeps it after an erasure: its first four characters."""
    return openid[:4] + "****"


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


async def _held(store: Store, member_id: str) -> dict[str, Any]:
    """What the store holds about the student, by kind: the export's sections, each empty or None
    when the store holds nothing of that kind."""
    entry = await store.directory_get(member_id)
    binding = await store.get_binding(member_id)
    seen = await store.member_seen(member_id)
    names = _remembered(member_id)
    values = await store.kv_get_many(list(names.values()))
    return {
        "directory": None if entry is None else asdict(entry),
        "binding": None if binding is None else {
            "phone": binding.phone,
            "state": binding.state.value,
            "openid": binding.openid,
            "previous_phone": binding.previous_phone,
            "lease_expires_at": _iso(binding.lease_expires_at),
            "updated_at": _iso(binding.updated_at),
        },
        "wecom_status": None if seen is None else {
            "status": None if seen.status is None else seen.status.name.lower(),
            "seen_at": _iso(seen.seen_at),
            "source": seen.source,
        },
        "sessions": [
            {"name": session.name, "cas_mobile": session.cas_mobile}
            for session in await sessions_of(store, member_id)
        ],
        "sms": await sms_records_of(store, member_id),
        "remembered": {what: value for what, value in zip(names, values, strict=True) if value is not None},
        "dead_letters": [
            {"id": item.id, "event": item.event_type, "stored_at": _iso(item.created_at),
             "error": item.last_error}
            for item in await dead_letters_of(store, member_id)
        ],
        "audit": [
            {
                "at": _iso(record.at), "action": record.action.value, "who": record.who,
                "source": record.source, "phone": record.phone_masked, "detail": record.detail,
            }
            for record in await store.audit_list(member_id=member_id, limit=10_000)
        ],
    }


async def export_student(store: Store, member_id: str, *, now: float, actor: Actor) -> dict[str, Any]:
    """Everything the store holds about the student, for a data request (audited as an export)."""
    held = await _held(store, member_id)
    if not any(held.values()):
        raise UnknownStudent(member_id)
    await store.audit_note(member_id, AuditAction.EXPORT, "data request: export", actor=actor)
    return {"member_id": member_id, "exported_at": _iso(now), **held}


@dataclass(frozen=True, slots=True)
class Erasure:
    """What an erasure removed."""

    binding: bool
    directory: bool
    sessions: int
    dead_letters: int
    audit_records: int
    member_seen: bool = False
    sms_phones: int = 0
    """The phones whose SMS counters went (sent a code by the student within the day)."""
    kv_entries: int = 0
    """The other kv entries keyed by the student that were removed (page results, memories)."""
    openids: int = 0
    """The student's openids masked in the audit records kept."""
    scrubbed: str = ""
    """What the store did to push the deleted data out of its files (Store.scrub)."""


async def erase_student(
    store: Store, member_id: str, *, now: float, retention_days: int, actor: Actor
) -> Erasure:
    """Remove the student's data, keeping only their masked audit records within the retention."""
    if not any((await _held(store, member_id)).values()):
        raise UnknownStudent(member_id)
    before = await store.get_binding(member_id)
    # The binding goes through the rules' own removal: its phone and openid are freed, audited.
    binding = await store.delete_member(member_id, actor=actor)
    directory = await store.directory_delete(member_id)
    sessions = await end_sessions_of(store, member_id)
    dead_letters = await store.inbox_drop_dead([item.id for item in await dead_letters_of(store, member_id)])
    member_seen = await store.forget_member_seen(member_id)
    sms_phones = await forget_sms_of(store, member_id)
    remembered = list(_remembered(member_id).values())
    kv_entries = sum(value is not None for value in await store.kv_get_many(remembered))
    await store.kv_apply({}, deletes=remembered)
    kv_entries += await store.kv_delete_prefix(results_prefix(member_id))
    # A directory upload awaiting 确认导入 (30 minutes at most) holds the whole file, this student's
    # phone too: dropped, whoever's it is (its administrator is told to upload again).
    kv_entries += await store.kv_delete_prefix(UPLOAD_PREFIX)
    pruned = await store.audit_prune(retention_start(now, retention_days), member_id=member_id)
    # The records kept name the student's WeChat by its openid (a follow, an unfollow, a conflict):
    # masked like their phones. The student's own WeChats (the binding's, and those its follows and
    # unfollows name) are masked in every member's records too: another member's refused follow names
    # the WeChat that held the place ("openid … follows as member …"). An openid that only a conflict
    # of the student's names may be somebody else's WeChat: masked in the student's records only.
    kept = await store.audit_list(member_id=member_id, limit=100_000)
    openids = {found for record in kept for found in _OPENID_IN_DETAIL.findall(record.detail)}
    own = {
        found for record in kept if record.action in (AuditAction.FOLLOW, AuditAction.UNFOLLOW)
        for found in _OPENID_IN_DETAIL.findall(record.detail)
    }
    if before is not None and before.openid:
        own.add(before.openid)
    openids |= own
    for openid in sorted(openids, key=len, reverse=True):  # a longer one first: one may hold another
        await store.audit_redact(None if openid in own else member_id, openid, mask_openid(openid))
    await store.audit_note(
        member_id, AuditAction.ERASE,
        f"data request: erased binding={binding} directory={directory} sessions={sessions}"
        f" dead letters={dead_letters} old audit records={pruned} wecom status={member_seen}"
        f" sms phones={sms_phones} kv entries={kv_entries} openids masked={len(openids)}",
        actor=actor,
    )
    # Last, after every delete (the audit note's too): the files are scrubbed of all of them.
    scrubbed = await store.scrub()
    return Erasure(binding=binding, directory=directory, sessions=sessions, dead_letters=dead_letters,
                   audit_records=pruned, member_seen=member_seen, sms_phones=sms_phones,
                   kv_entries=kv_entries, openids=len(openids), scrubbed=scrubbed)
