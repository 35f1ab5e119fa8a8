"""`wecom-bind sync`: WeCom's word on every member of an existing organisation, recorded in the store.

The whole organisation is listed with the contacts-sync secret (user/list_id, paged by cursor,
developer.work.weixin.qq.com/document/path/96067: the ids and departments only, which an address
trusted after 2022-08-15 may still read), and each member's status is read with the app's secret
(user/get: status is never among the fields an app no longer sees, document/path/90196). Each
status is recorded as a MemberSeen (source "sync"); the directory is compared with the members.

A run can be interrupted (WeCom unavailable, a signal) and run again: its start time stays in the
store's kv as a checkpoint until it finishes, and the next run skips the members this run already
recorded (their records carry a later time). Running it again after a finished run reads everyone
again and changes only what WeCom changed meanwhile. A dry run reads and reports and writes nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from handlers.core.member import MemberSeen, MemberStatus
from handlers.core.wecom_errors import OutsideVisibleRange, UserNotFound
from handlers.usecases.contacts import ContactMember
from handlers.usecases.contracts import SyncStore

log: Final = logging.getLogger(__name__)

CHECKPOINT_KEY: Final = "sync:run"
CHECKPOINT_TTL: Final = 7 * 24 * 3600.0
"""How long an interrupted run may be resumed; after that a run starts afresh."""
SOURCE: Final = "sync"
PAGE_SIZE: Final = 10000
"""user/list_id's largest page (document/path/96067's limit, 1 to 10,000)."""
MAX_PAGES: Final = 1000
"""A bound on the listing's loop: ten million rows, far more than any organisation."""
BATCH: Final = 100
"""Statuses read, then recorded in one write: an interruption loses at most one batch's reads."""
READ_CONCURRENCY: Final = 8
"""user/get calls in flight at once: well under WeCom's concurrency limit (45033); the per-API budget
of the WeCom client paces them."""


class ListedMember(Protocol):
    """One row of user/list_id: a member in one department."""

    @property
    def userid(self) -> str:
        """The member's userid."""
        ...

    @property
    def department(self) -> int:
        """One WeCom department the member is in."""
        ...


class OrganisationLister(Protocol):
    """user/list_id with the contacts-sync secret, one page at a time."""

    async def user_list_page(
        self, cursor: str, *, limit: int = PAGE_SIZE
    ) -> tuple[Sequence[ListedMember], str]:
        """One page from the cursor ("" first), and the next cursor ("" after the last page)."""
        ...


class StatusReader(Protocol):
    """user/get with the app's secret: the status (UserNotFound, OutsideVisibleRange when refused)."""

    async def user_get(self, userid: str) -> ContactMember:
        """A member as user/get answers."""
        ...


Progress = Callable[[int, int], None]
"""Told (statuses read so far, members in all) as the run goes."""


@dataclass
class SyncReport:
    """What a run found: statuses overall and by 院系, and the directory against WeCom."""

    members: int = 0
    by_department: dict[str, Counter[MemberStatus]] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)
    """Members the app's secret may not read (outside its visible range, 60011): status unknown."""
    gone: list[str] = field(default_factory=list)
    """Members recorded before whom WeCom no longer lists (or who left while the run read them)."""
    without_member: list[str] = field(default_factory=list)
    """Directory students WeCom has no member for."""
    outside_directory: list[str] = field(default_factory=list)
    """WeCom members in no directory entry (staff, or students the directory lacks)."""
    changed: int = 0
    """Members whose recorded status is new or changed (0 in a dry run)."""
    skipped: int = 0
    """Members the interrupted run had already recorded, not read again."""
    resumed_from: float | None = None
    dry_run: bool = False

    @property
    def totals(self) -> Counter[MemberStatus]:
        """The statuses of the whole organisation."""
        total: Counter[MemberStatus] = Counter()
        for counts in self.by_department.values():
            total.update(counts)
        return total


async def sync_organisation(
    *,
    lister: OrganisationLister,
    reader: StatusReader,
    store: SyncStore,
    clock: Callable[[], float],
    departments: Mapping[int, str] = {},
    dry_run: bool = False,
    progress: Progress | None = None,
) -> SyncReport:
    """Read the organisation, record each member's status (unless dry_run) and compare the directory.

    departments names WeCom's department ids (院系 of members in no directory entry). WeCom's
    failures other than a member it no longer has or may not show propagate, and the checkpoint
    stays, so that the next run resumes.
    """
    report = SyncReport(dry_run=dry_run)
    started_at = clock()
    if not dry_run:
        started_at, report.resumed_from = await _checkpoint(store, started_at)
    listed = await _list_organisation(lister)
    report.members = len(listed)
    directory = {entry.member_id: entry for entry in await store.directory_list()}
    seen = {record.member_id: record for record in await store.list_members_seen()}
    statuses: dict[str, MemberStatus] = {}
    to_read: list[str] = []
    for member in listed:
        earlier = seen.get(member)
        if (report.resumed_from is not None and earlier is not None and earlier.source == SOURCE
                and earlier.seen_at >= started_at and earlier.status is not None):
            statuses[member] = earlier.status
            report.skipped += 1
        else:
            to_read.append(member)
    limit = asyncio.Semaphore(READ_CONCURRENCY)
    done = report.skipped
    for start in range(0, len(to_read), BATCH):
        batch = to_read[start : start + BATCH]
        answers = await asyncio.gather(*(_read(reader, limit, m) for m in batch), return_exceptions=True)
        records: list[MemberSeen] = []
        failure: BaseException | None = None
        for member, answer in zip(batch, answers, strict=True):
            if isinstance(answer, OutsideVisibleRange):
                report.unreadable.append(member)
            elif isinstance(answer, UserNotFound):
                report.gone.append(member)
                records.append(MemberSeen(member, None, clock(), SOURCE))
            elif isinstance(answer, BaseException):
                failure = failure or answer
            elif answer is None:
                report.unreadable.append(member)
            else:
                statuses[member] = answer
                records.append(MemberSeen(member, answer, clock(), SOURCE))
        if records and not dry_run:
            # What was read is kept even when the batch failed part-way: a resumed run skips it.
            report.changed += await store.record_members(records)
        if failure is not None:
            raise failure
        done += len(batch)
        if progress is not None:
            progress(done, len(listed))
    # Members recorded before whom WeCom no longer lists: WeCom has no such member now.
    vanished = [m for m, record in seen.items() if m not in listed and record.status is not None]
    report.gone.extend(vanished)
    if vanished and not dry_run:
        report.changed += await store.record_members([MemberSeen(m, None, clock(), SOURCE) for m in vanished])
    for member, status in statuses.items():
        entry = directory.get(member)
        name = entry.department if entry is not None else _department_name(listed[member], departments)
        report.by_department.setdefault(name, Counter())[status] += 1
    report.without_member = sorted(m for m in directory if m not in listed)
    report.outside_directory = sorted(m for m in listed if m not in directory)
    if not dry_run:
        await store.kv_delete(CHECKPOINT_KEY)
    return report


async def _checkpoint(store: SyncStore, now: float) -> tuple[float, float | None]:
    """The run's start: an interrupted run's, to resume it, or now (recorded as the checkpoint)."""
    raw = await store.kv_get(CHECKPOINT_KEY)
    if raw is not None:
        try:
            started_at = float(json.loads(raw)["started_at"])
        except (ValueError, KeyError, TypeError):
            log.warning("sync: an unreadable checkpoint was ignored; starting afresh")
        else:
            log.info("sync: resuming the run started at %.0f", started_at)
            return started_at, started_at
    await store.kv_set(CHECKPOINT_KEY, json.dumps({"started_at": now}), ttl=CHECKPOINT_TTL)
    return now, None


async def _list_organisation(lister: OrganisationLister) -> dict[str, list[int]]:
    """Every member's departments, in WeCom's order, through user/list_id's cursor."""
    members: dict[str, list[int]] = {}
    cursor = ""
    for _ in range(MAX_PAGES):
        rows, next_cursor = await lister.user_list_page(cursor, limit=PAGE_SIZE)
        for row in rows:
            members.setdefault(row.userid, []).append(row.department)
        if not next_cursor or next_cursor == cursor:
            return members
        cursor = next_cursor
    raise RuntimeError(f"sync: user/list_id gave more than {MAX_PAGES} pages")


async def _read(reader: StatusReader, limit: asyncio.Semaphore, member: str) -> MemberStatus | None:
    """The member's status (None when WeCom answers one this code does not know)."""
    async with limit:
        found = await reader.user_get(member)
    try:
        return MemberStatus(found.status)
    except ValueError:
        log.warning("sync: member %s has status %r, which WeCom does not document", member, found.status)
        return None


def _department_name(departments: Sequence[int], names: Mapping[int, str]) -> str:
    for department in departments:
        if department in names:
            return names[department]
    return f"部门 {departments[0]}" if departments else "?"
