"""Reconciliation, the use case: read the store and WeCom's members, report the drift, fix it from
WeCom's truth.

The rules (what counts as drift, the order of the fixes) are handlers.core.reconcile's; this module
reads and writes through narrow ports (ReconcileStore, ContactsReader). The store is read before
WeCom, and a fix is applied only while the member's binding is still the one that was read; a binding
that changed meanwhile (a student binding right now) is left for the next run. The command around it
(`wecom-bind reconcile`: clients, exit statuses) is callback_service.ops.reconcile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final, Protocol

from handlers.core.binding import Actor, BindingChanged
from handlers.core.reconcile import Drift, DriftKind, Fix, WeComView, compare, order_fixes
from handlers.core.wecom_errors import ConfigurationError, UserNotFound
from handlers.usecases.binding_flow import created_key
from handlers.usecases.contacts import ContactMember, ContactsThenApp
from handlers.usecases.contracts import ReconcileStore
from handlers.usecases.sync import ListedMember

log: Final = logging.getLogger(__name__)

READ_CONCURRENCY: Final = 8
"""How many user/get calls are in flight at once: well under WeCom's concurrency limit (45033)."""
PAGE_SIZE: Final = 10000
"""user/list_id's page size: WeCom's maximum."""

Print = Callable[[str], None]


class ContactsReader(Protocol):
    """The reads of the WeCom contacts that reconciliation makes (WeComClient, contacts secret)."""

    def user_list_id(self, *, limit: int = PAGE_SIZE) -> AsyncIterator[ListedMember]:
        """user/list_id: every (member, department), page by page."""
        ...

    async def user_get(self, userid: str) -> ContactMember:
        """user/get: a member; UserNotFound when WeCom has none by that userid."""
        ...


class ListThenRead:
    """The members listed with the contacts-sync secret, and read through ContactsThenApp: with that
    secret while WeCom lets it read, then with the app's (status and departments; mobiles unknown)."""

    def __init__(self, contacts: ContactsReader, app: ContactsReader) -> None:
        self._contacts = contacts
        self._read = ContactsThenApp(contacts, app)

    def user_list_id(self, *, limit: int = PAGE_SIZE) -> AsyncIterator[ListedMember]:
        """user/list_id with the contacts-sync secret."""
        return self._contacts.user_list_id(limit=limit)

    async def user_get(self, userid: str) -> ContactMember:
        """user/get through ContactsThenApp."""
        return await self._read.user_get(userid)


_REFUSED_NOTE: Final = "refused: "


class NamedSecret:
    """A ContactsReader that names its secret in WeCom's refusals (a note on the error, re-raised as
    it is, so ContactsThenApp still falls back on 48009), and remembers the members it listed."""

    def __init__(self, inner: ContactsReader, name: str) -> None:
        self._inner = inner
        self._name = name
        self.listed: dict[str, None] = {}

    async def user_list_id(self, *, limit: int = PAGE_SIZE) -> AsyncIterator[ListedMember]:
        """user/list_id, each member remembered."""
        try:
            async for row in self._inner.user_list_id(limit=limit):
                self.listed.setdefault(row.userid, None)
                yield row
        except ConfigurationError as exc:
            raise self._named(exc) from None

    async def user_get(self, userid: str) -> ContactMember:
        """user/get."""
        try:
            return await self._inner.user_get(userid)
        except ConfigurationError as exc:
            raise self._named(exc) from None

    def _named(self, exc: ConfigurationError) -> ConfigurationError:
        noted = any(note.startswith(_REFUSED_NOTE) for note in getattr(exc, "__notes__", ()))
        if self._name and not noted:
            exc.add_note(_REFUSED_NOTE + self._name)
        return exc


def refused_secret(exc: ConfigurationError, default: str) -> str:
    """The secret WeCom refused, as NamedSecret noted it (default when none did)."""
    for note in getattr(exc, "__notes__", ()):
        if isinstance(note, str) and note.startswith(_REFUSED_NOTE):
            return note.removeprefix(_REFUSED_NOTE)
    return default


class DriftChanged(Exception):
    """The member's binding changed since the drift was found; nothing was written."""

    def __init__(self, member_id: str) -> None:
        super().__init__(f"member {member_id}: binding changed since it was read; run reconcile again")
        self.member_id = member_id


@dataclass(frozen=True, slots=True)
class FixReport:
    """What fix_all did: the drifts fixed, those left because they changed meanwhile, and
    those only reported (nothing the store can take from WeCom)."""

    fixed: tuple[Drift, ...]
    changed: tuple[Drift, ...]
    reported: tuple[Drift, ...] = ()


# finding


async def find_drift(
    store: ReconcileStore,
    contacts: ContactsReader,
    *,
    now: float,
    concurrency: int = READ_CONCURRENCY,
    page_size: int = PAGE_SIZE,
    departments: Mapping[str, int] | None = None,
) -> list[Drift]:
    """Compare every binding with WeCom's members; one drift per member that disagrees, by member id.

    departments (WECOM_BIND_DEPARTMENTS: 院系 -> WeCom department id) lets a bound member's WeCom
    departments be checked against the 院系 of its directory entry.

    Raises WeComUnavailable (or another WeComError) when WeCom cannot be read: nothing is guessed.
    """
    # The store first: whatever changes after this read shows as a changed binding when fixing.
    bindings = {binding.member_id: binding for binding in await store.list_bindings()}
    userids: dict[str, None] = {}  # a member is listed once per department; keep the first
    async for row in contacts.user_list_id(limit=page_size):
        userids.setdefault(row.userid, None)
    wecom = await _read_members(contacts, list(userids), concurrency)
    expected: dict[str, int] = {}
    if departments:
        for member_id in bindings:
            entry = await store.directory_get(member_id)
            if entry is not None and entry.department in departments:
                expected[member_id] = departments[entry.department]
    return compare(bindings, wecom, now=now, departments=expected)


async def _read_members(
    contacts: ContactsReader, userids: Sequence[str], concurrency: int
) -> dict[str, WeComView]:
    """user/get each member, a bounded number at once; a member deleted since the listing is left out."""
    gate = asyncio.Semaphore(max(1, concurrency))
    members: dict[str, WeComView] = {}

    async def read(userid: str) -> None:
        async with gate:
            try:
                member = await contacts.user_get(userid)
            except UserNotFound:
                return
        shown = member.mobile or "" if member.mobile_shown else None
        members[userid] = WeComView(
            member_id=userid, mobile=shown, status=member.status, department=tuple(member.department)
        )

    try:
        async with asyncio.TaskGroup() as group:
            for userid in userids:
                group.create_task(read(userid))
    except ExceptionGroup as failures:
        # The first failure cancelled the other reads; it is the one worth reporting.
        raise failures.exceptions[0] from None
    return members


# fixing


async def fix_drift(store: ReconcileStore, drift: Drift, *, actor: Actor) -> None:
    """Fix one member from WeCom's truth, audited under actor; DriftChanged when its binding moved."""
    if drift.fix is Fix.NONE:
        return
    # One compare-and-apply: a student's claim landing after the drift was read is never overwritten.
    try:
        await store.fix_drift(drift.member_id, drift.fix, drift.wecom_phone, seen=drift.seen, actor=actor)
    except BindingChanged:
        raise DriftChanged(drift.member_id) from None


async def fix_all(store: ReconcileStore, drifts: Iterable[Drift], *, actor: Actor) -> FixReport:
    """Fix every drift, phones freed before they are taken, so that a take strips a member only
    in a cycle (two members that swapped phones)."""
    reported = tuple(drift for drift in drifts if drift.fix is Fix.NONE)
    remaining = {drift.member_id: drift for drift in drifts if drift.fix is not Fix.NONE}
    fixed: list[Drift] = []
    changed: list[Drift] = []
    for member_id in order_fixes(list(remaining.values())):
        drift = remaining.pop(member_id)
        holder = None
        if drift.takes_phone and drift.wecom_phone is not None:
            holder = await store.get_binding_by_phone(drift.wecom_phone)
        try:
            await fix_drift(store, drift, actor=actor)
        except DriftChanged:
            log.warning("reconcile: member %s changed since it was read; left for the next run", member_id)
            changed.append(drift)
            continue
        fixed.append(drift)
        if holder is not None and holder.member_id in remaining:
            # This fix took the phone from a member still to be fixed: it now starts from here.
            stripped = remaining[holder.member_id]
            remaining[holder.member_id] = replace(stripped, seen=await store.get_binding(holder.member_id))
    return FixReport(fixed=tuple(fixed), changed=tuple(changed), reported=reported)


async def created_without_binding(
    store: ReconcileStore, userids: Sequence[str], *, chunk: int = 500
) -> list[str]:
    """The members WeCom lists that the flow created (user/create) and that hold no binding now."""
    bound = {binding.member_id for binding in await store.list_bindings()}
    unbound = [userid for userid in userids if userid not in bound]
    orphans: list[str] = []
    for start in range(0, len(unbound), chunk):
        part = unbound[start : start + chunk]
        marks = await store.kv_get_many([created_key(userid) for userid in part])
        orphans.extend(userid for userid, mark in zip(part, marks, strict=True) if mark is not None)
    return sorted(orphans)


# the run


async def reconcile(
    store: ReconcileStore,
    contacts: ContactsReader,
    *,
    fix: bool,
    out: Print,
    now: float,
    actor: Actor,
    departments: Mapping[str, int] | None = None,
) -> int:
    """Print every drift and a summary, fixing them with fix; the command's exit status."""
    listing = contacts if isinstance(contacts, NamedSecret) else NamedSecret(contacts, "")
    drifts = await find_drift(store, listing, now=now, departments=departments)
    for drift in drifts:
        out(drift.describe())
    counts = ", ".join(f"{sum(d.kind is kind for d in drifts)} {kind}" for kind in DriftKind)
    out(f"{len(drifts)} drift(s) found: {counts}")
    orphans = await created_without_binding(store, list(listing.listed))
    for member_id in orphans:
        out(f"member {member_id}: created in WeCom by this service (user/create), holds no binding any"
            " more: WeCom still holds its mobile unless it was cleared (wecom-bind binding release, or"
            " the admin console)")
    if orphans:
        out(f"{len(orphans)} member(s) created here hold no binding")
    if all(d.fix is Fix.NONE for d in drifts):
        return 0  # nothing the store can take from WeCom; the lines above say why
    if not fix:
        out("run with --fix to fix them from WeCom's truth")
        return 1
    fixable = [d for d in drifts if d.fix is not Fix.NONE]
    if all(d.deletes for d in fixable) and len(fixable) == len(await store.list_bindings()):
        # More likely a secret that sees no one (its 可见范围) than an organisation that left.
        out("WeCom has none of the store's members: refusing to remove every binding;"
            " check the contacts-sync secret's visible range, or release them one by one")
        return 1
    report = await fix_all(store, drifts, actor=actor)
    for drift in report.changed:
        out(f"left {drift.member_id}: its binding changed since it was read; run reconcile again")
    out(f"{len(report.fixed)} fixed, {len(report.changed)} left")
    return 0 if not report.changed else 1
