"""What both store backends share: argument checks, tokens, the integrity check and batched appends."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from handlers.core.binding import BindingState
from handlers.core.member import MemberSeen
from handlers.core.phone import InvalidPhone, Phone, mask_phone
from handlers.core.rules import Row
from handlers.usecases.contracts import StoreUnavailable

log: Final = logging.getLogger(__name__)

MAX_CREATE_TIME: Final = 10**12 - 1
"""The largest create time an inbox orders by: a larger one sorts with it (WeCom's are 10 digits)."""

DEFAULT_DEDUP_TTL: Final = 7 * 24 * 3600.0
"""How long the inbox remembers a dedup key after the event was appended (WeCom retries within ~15 s)."""


def new_token() -> str:
    """Return an unguessable owner token for a claim or a lock."""
    return secrets.token_hex(16)


def positive(name: str, seconds: float) -> float:
    """Return seconds when positive, else refuse: a zero or negative ttl/lease is a caller's bug."""
    if not seconds > 0:
        raise ValueError(f"{name} must be positive, got {seconds!r}")
    return float(seconds)


def kv_changes(
    sets: Mapping[str, tuple[str, float]], deletes: Collection[str], if_absent: Collection[str]
) -> tuple[dict[str, tuple[str, float]], list[str], list[str]]:
    """kv_apply's arguments checked: every ttl positive, no key both set and deleted."""
    entries = {key: (value, positive("ttl", ttl)) for key, (value, ttl) in sets.items()}
    gone = list(dict.fromkeys(deletes))
    both = set(entries) & set(gone)
    if both:
        raise ValueError(f"keys both set and deleted: {sorted(both)}")
    return entries, gone, list(dict.fromkeys(if_absent))


def stored_phone(text: object, *, member_id: str, record: str) -> Phone | None:
    """A phone read back from the store (record: where, for the log), parsed as where it enters.

    The store writes Phones, but older data may hold text that was never parsed (a directory
    imported as given) or was changed by hand: text that is no mainland mobile is read as no phone,
    with a warning that names the member and never the text, so that a page shows the member
    without that phone instead of failing.
    """
    if text is None or text == "":
        return None
    try:
        return Phone(str(text))  # what the store writes: the 11 digits
    except InvalidPhone:
        phone = Phone.parse_or_none(str(text))
    if phone is None:
        log.warning(
            "store: the %s phone of member %s is not a mainland mobile: read as none",
            record,
            member_id,
        )
    return phone


def limit_arg(limit: int) -> int:
    """Refuse a non-positive limit."""
    if limit <= 0:
        raise ValueError(f"limit must be positive, got {limit!r}")
    return limit


def newest_seen(seen: Sequence[MemberSeen]) -> dict[str, MemberSeen]:
    """record_members' argument reduced to each member's newest record (the later one on a tie)."""
    newest: dict[str, MemberSeen] = {}
    for record in seen:
        if not isinstance(record, MemberSeen):
            raise TypeError("record_members takes MemberSeen records")
        kept = newest.get(record.member_id)
        if kept is None or record.seen_at >= kept.seen_at:
            newest[record.member_id] = record
    return newest


def find_problems(
    rows: Sequence[Row],
    phone_index: Mapping[str, str],
    openid_index: Mapping[str, str],
    audited: set[str],
) -> list[str]:
    """Describe every broken invariant between binding records, their indexes and the audit log:
    the shapes the rules of handlers.core.rules write (pending with a lease and a token, bound with a
    phone, followed with an openid), I1 and I4 in the indexes, and I5 (an audit record each)."""
    problems: list[str] = []
    by_member = {row.member_id: row for row in rows}
    for row in rows:
        m = row.member_id
        if row.state is BindingState.PENDING and (
            row.phone is None or row.lease_expires_at is None or not row.token or row.openid is not None
        ):
            problems.append(f"{m}: pending without phone, lease or token, or with an openid")
        claimed = row.token is not None or row.lease_expires_at is not None
        if row.state is not BindingState.PENDING and claimed:
            problems.append(f"{m}: a claim's token or lease outside a claim")
        if row.state is BindingState.BOUND and (row.phone is None or row.openid is not None):
            problems.append(f"{m}: bound without phone, or with an openid")
        if row.state is BindingState.FOLLOWED and row.openid is None:
            problems.append(f"{m}: followed without openid")
        if row.state is not BindingState.PENDING and row.previous_phone is not None:
            problems.append(f"{m}: previous phone outside a claim")
        for phone in (row.phone, row.previous_phone):
            if phone is not None and phone_index.get(phone) != m:
                problems.append(f"{m}: phone {mask_phone(phone)} not indexed to it")
        if row.openid is not None and openid_index.get(row.openid) != m:
            problems.append(f"{m}: openid not indexed to it")
        if m not in audited:
            problems.append(f"{m}: binding without audit record")
    for indexed, member in phone_index.items():
        held = by_member.get(member)
        if held is None or indexed not in (held.phone, held.previous_phone):
            problems.append(f"phone {mask_phone(indexed)}: index entry without binding ({member})")
    for openid, member in openid_index.items():
        held = by_member.get(member)
        if held is None or held.openid != openid:
            problems.append(f"openid of {member}: index entry without binding")
    return problems


@dataclass(frozen=True, slots=True)
class PendingAppend:
    """An inbox append waiting for the next group write."""

    dedup_key: str
    event_type: str
    payload: str
    member_id: str | None = None
    create_time: int = 0

    @property
    def ordered_time(self) -> int:
        """The create time within what both stores can hold and sort (0 to 12 digits)."""
        return min(max(self.create_time, 0), MAX_CREATE_TIME)


class AppendBatcher:
    """Concurrent inbox appends share one durable write (a group commit).

    Each caller returns once the write holding its event has succeeded, with its own answer
    (appended, or a retry); a failed write fails every caller in it. A caller that goes away only
    drops its own answer: the write goes ahead.
    """

    def __init__(
        self,
        write: Callable[[list[PendingAppend]], Awaitable[list[bool]]],
        *,
        limit: int | None = None,
        name: str,
    ) -> None:
        self._write = write
        self._limit = limit
        self._name = name
        self._waiting: list[tuple[PendingAppend, asyncio.Future[bool]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def append(self, item: PendingAppend) -> bool:
        """Queue the event for the next write and wait for that write's answer about it."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name=self._name)
        return await future

    async def _flush(self) -> None:
        while self._waiting:
            cut = len(self._waiting) if self._limit is None else self._limit
            batch, self._waiting = self._waiting[:cut], self._waiting[cut:]
            try:
                results = await self._write([item for item, _ in batch])
                if len(results) != len(batch):
                    raise StoreUnavailable(f"{len(results)} answers for {len(batch)} appends")
            except Exception as exc:  # every caller of the batch learns of the failure
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), appended in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(appended)
