"""`wecom-bind reconcile`: compare WeCom's members with the store, and settle the drift from WeCom.

WeCom enforces mobile uniqueness (I1, errcode 60104), so its members are a consistent truth: the
store is corrected towards it, never the other way. The store is read before WeCom, and a fix is
applied only while the member's binding is still the one that was read; a binding that changed
meanwhile (a student binding right now) is left for the next run.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Final, Protocol

import aiohttp

from callback_service.clients.wecom import DeptUser, UserNotFound, WeComClient, WeComError, WeComUnavailable
from callback_service.ops.admin import admin_actor
from config import Settings
from handlers.binding import Actor, Binding, BindingState
from handlers.contracts import Store
from handlers.phone import InvalidPhone, Phone, mask_phone

log: Final = logging.getLogger(__name__)

READ_CONCURRENCY: Final = 8
"""How many user/get calls are in flight at once: well under WeCom's concurrency limit (45033)."""
PAGE_SIZE: Final = 10000
"""user/list_id's page size: WeCom's maximum."""
EXIT_WECOM: Final = 4
"""The exit status when WeCom cannot be read (the store's is 3, in the CLI)."""

Print = Callable[[str], None]


class DriftKind(enum.StrEnum):
    """How the store and WeCom disagree about a member."""

    PHONE_DIFFERS = "PHONE_DIFFERS"
    MISSING_IN_STORE = "MISSING_IN_STORE"
    MISSING_IN_WECOM = "MISSING_IN_WECOM"
    EXPIRED_CLAIM = "EXPIRED_CLAIM"


class ContactsReader(Protocol):
    """The reads of the WeCom contacts that reconciliation makes (WeComClient, contacts secret)."""

    def user_list_id(self, *, limit: int = PAGE_SIZE) -> AsyncIterator[DeptUser]:
        """user/list_id: every (member, department), page by page."""
        ...

    async def user_get(self, userid: str) -> _Member:
        """user/get: a member; UserNotFound when WeCom has none by that userid."""
        ...


class _Member(Protocol):
    @property
    def mobile(self) -> str | None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Drift:
    """One member on which the store and WeCom disagree, with phones masked for printing.

    wecom_phone is WeCom's mobile (the truth to settle to) and seen the binding as it was read;
    neither shows in a repr.
    """

    kind: DriftKind
    member_id: str
    store_phone_masked: str
    wecom_phone_masked: str
    detail: str
    in_wecom: bool
    wecom_phone: Phone | None = field(repr=False)
    seen: Binding | None = field(repr=False)

    def describe(self) -> str:
        """One printable line; phones masked."""
        return (
            f"{self.kind:<16} member {self.member_id}  store {self.store_phone_masked}"
            f"  wecom {self.wecom_phone_masked}  {self.detail}"
        )

    @property
    def deletes(self) -> bool:
        """Whether settling removes the binding (WeCom has no such member)."""
        return not self.in_wecom


class DriftChanged(Exception):
    """The member's binding changed since the drift was found; nothing was written."""

    def __init__(self, member_id: str) -> None:
        super().__init__(f"member {member_id}: binding changed since it was read; run reconcile again")
        self.member_id = member_id


@dataclass(frozen=True, slots=True)
class SettleReport:
    """What settle_all did: the drifts settled and those left because they changed meanwhile."""

    settled: tuple[Drift, ...]
    changed: tuple[Drift, ...]


# finding


async def find_drift(
    store: Store,
    contacts: ContactsReader,
    *,
    now: float,
    concurrency: int = READ_CONCURRENCY,
    page_size: int = PAGE_SIZE,
) -> list[Drift]:
    """Compare every binding with WeCom's members; one drift per member that disagrees, by member id.

    Raises WeComUnavailable (or another WeComError) when WeCom cannot be read: nothing is guessed.
    """
    # The store first: whatever changes after this read shows as a changed binding when settling.
    bindings = {binding.member_id: binding for binding in await store.list_bindings()}
    userids: dict[str, None] = {}  # a member is listed once per department; keep the first
    async for row in contacts.user_list_id(limit=page_size):
        userids.setdefault(row.userid, None)
    wecom = await _read_mobiles(contacts, list(userids), concurrency)

    drifts: list[Drift] = []
    for member_id in sorted(bindings.keys() | wecom.keys()):
        binding = bindings.get(member_id)
        in_wecom = member_id in wecom
        drift = _compare(member_id, binding, in_wecom, wecom.get(member_id), now)
        if drift is not None:
            drifts.append(drift)
    return drifts


async def _read_mobiles(
    contacts: ContactsReader, userids: Sequence[str], concurrency: int
) -> dict[str, str | None]:
    """user/get each member, a bounded number at once; a member deleted since the listing is left out."""
    gate = asyncio.Semaphore(max(1, concurrency))
    mobiles: dict[str, str | None] = {}

    async def read(userid: str) -> None:
        async with gate:
            try:
                member = await contacts.user_get(userid)
            except UserNotFound:
                return
        mobiles[userid] = member.mobile

    try:
        async with asyncio.TaskGroup() as group:
            for userid in userids:
                group.create_task(read(userid))
    except ExceptionGroup as failures:
        # The first failure cancelled the other reads; it is the one worth reporting.
        raise failures.exceptions[0] from None
    return mobiles


def _compare(
    member_id: str, binding: Binding | None, in_wecom: bool, raw_mobile: str | None, now: float
) -> Drift | None:
    mobile, foreign = _mainland(raw_mobile)
    if binding is not None and binding.state is BindingState.PENDING:
        if not binding.lease_expired(now):
            return None  # a write to WeCom is in flight; its own commit or release settles it
        previous = f"previous {mask_phone(binding.previous_phone)}; " if binding.previous_phone else ""
        if not in_wecom:
            detail = "not a WeCom member: the claim is dropped"
        elif mobile == binding.phone:
            detail = "the write reached WeCom: settles to the claimed phone"
        else:
            detail = "the write did not reach WeCom: settles to WeCom's mobile"
        return _drift(DriftKind.EXPIRED_CLAIM, member_id, binding, in_wecom, mobile, previous + detail)
    if binding is None:
        if mobile is None:
            return None
        detail = "no binding: binds WeCom's mobile"
        return _drift(DriftKind.MISSING_IN_STORE, member_id, None, True, mobile, detail)
    if not in_wecom:
        detail = "not a WeCom member: the binding is removed"
        return _drift(DriftKind.MISSING_IN_WECOM, member_id, binding, False, None, detail)
    if mobile != binding.phone:
        if foreign:
            detail = "WeCom's mobile is not a mainland mobile: the phone is removed"
        elif mobile is None:
            detail = "WeCom holds no mobile: the phone is removed"
        else:
            detail = f"{binding.state}: settles to WeCom's mobile"
        return _drift(DriftKind.PHONE_DIFFERS, member_id, binding, True, mobile, detail)
    return None


def _mainland(raw: str | None) -> tuple[Phone | None, bool]:
    """WeCom's mobile as the store's 11 digits, and whether it was a number the store cannot hold."""
    if raw is None:
        return None, False
    try:
        return Phone.parse(raw), False
    except InvalidPhone:
        return None, True


def _drift(
    kind: DriftKind,
    member_id: str,
    seen: Binding | None,
    in_wecom: bool,
    wecom_phone: Phone | None,
    detail: str,
) -> Drift:
    store_phone = seen.phone if seen is not None else None
    return Drift(
        kind=kind,
        member_id=member_id,
        store_phone_masked=mask_phone(store_phone) if store_phone else "-",
        wecom_phone_masked=mask_phone(wecom_phone) if wecom_phone else "-",
        detail=detail,
        in_wecom=in_wecom,
        wecom_phone=wecom_phone,
        seen=seen,
    )


# settling


async def settle(store: Store, drift: Drift, *, actor: Actor) -> None:
    """Settle one member from WeCom's truth, audited under actor; DriftChanged when its binding moved."""
    if await store.get_binding(drift.member_id) != drift.seen:
        raise DriftChanged(drift.member_id)
    if drift.deletes:
        await store.delete_member(drift.member_id, actor=actor)
    else:
        # take: WeCom gave this phone to this member, so a store holder of it is out of date.
        await store.set_member_phone(drift.member_id, drift.wecom_phone, take=True, actor=actor)


async def settle_all(store: Store, drifts: Iterable[Drift], *, actor: Actor) -> SettleReport:
    """Settle every drift, phones freed before they are taken, so that a take strips a member only
    in a cycle (two members that swapped phones)."""
    remaining = {drift.member_id: drift for drift in drifts}
    settled: list[Drift] = []
    changed: list[Drift] = []
    for member_id in order_fixes(list(remaining.values())):
        drift = remaining.pop(member_id)
        holder = None
        if drift.wecom_phone is not None and not drift.deletes:
            holder = await store.get_binding_by_phone(drift.wecom_phone)
        try:
            await settle(store, drift, actor=actor)
        except DriftChanged:
            log.warning("reconcile: member %s changed since it was read; left for the next run", member_id)
            changed.append(drift)
            continue
        settled.append(drift)
        if holder is not None and holder.member_id in remaining:
            # This fix took the phone from a member still to be settled: it now starts from here.
            stripped = remaining[holder.member_id]
            remaining[holder.member_id] = replace(stripped, seen=await store.get_binding(holder.member_id))
    return SettleReport(settled=tuple(settled), changed=tuple(changed))


def order_fixes(drifts: Sequence[Drift]) -> list[str]:
    """The member ids in the order to settle them: removals first, then each phone after its
    current holder (among the drifting members) has let go of it; a cycle is broken by a take."""
    holders: dict[str, str] = {}
    for drift in drifts:
        if drift.seen is not None:
            for phone in (drift.seen.phone, drift.seen.previous_phone):
                if phone is not None:
                    holders[phone] = drift.member_id
    by_member = {drift.member_id: drift for drift in drifts}
    waiting: dict[str, list[str]] = {}  # holder -> members waiting for its phone
    ready: list[str] = []
    for drift in sorted(drifts, key=lambda d: (d.wecom_phone is not None and not d.deletes, d.member_id)):
        holder = holders.get(drift.wecom_phone) if drift.wecom_phone and not drift.deletes else None
        if holder is None or holder == drift.member_id:
            ready.append(drift.member_id)
        else:
            waiting.setdefault(holder, []).append(drift.member_id)
    order: list[str] = []
    queued = set(ready)
    cursor = 0
    while len(order) < len(by_member):
        if cursor == len(ready):
            # Everything left waits in a cycle: start it anywhere, the take strips the phone.
            start = min(m for m in by_member if m not in queued)
            ready.append(start)
            queued.add(start)
        member_id = ready[cursor]
        cursor += 1
        order.append(member_id)
        for waiter in waiting.pop(member_id, []):
            if waiter not in queued:
                ready.append(waiter)
                queued.add(waiter)
    return order


# the command


async def reconcile(
    store: Store, contacts: ContactsReader, *, fix: bool, out: Print, now: float, actor: Actor
) -> int:
    """Print every drift and a summary, settling them with fix; the command's exit status."""
    drifts = await find_drift(store, contacts, now=now)
    for drift in drifts:
        out(drift.describe())
    counts = ", ".join(f"{sum(d.kind is kind for d in drifts)} {kind}" for kind in DriftKind)
    out(f"{len(drifts)} drift(s) found: {counts}")
    if not drifts:
        return 0
    if not fix:
        out("run with --fix to settle them from WeCom")
        return 1
    if all(d.deletes for d in drifts) and len(drifts) == len(await store.list_bindings()):
        # More likely a secret that sees no one (its 可见范围) than an organisation that left.
        out("WeCom has none of the store's members: refusing to remove every binding;"
            " check the contacts-sync secret's visible range, or release them one by one")
        return 1
    report = await settle_all(store, drifts, actor=actor)
    for drift in report.changed:
        out(f"left {drift.member_id}: its binding changed since it was read; run reconcile again")
    out(f"{len(report.settled)} settled, {len(report.changed)} left")
    return 0 if not report.changed else 1


async def reconcile_command(store: Store, settings: Settings, *, fix: bool, out: Print, err: Print) -> int:
    """`wecom-bind reconcile [--fix]`: read WeCom with the contacts-sync secret; exit 0 when in step
    (or settled), 1 when drift is left, EXIT_WECOM when WeCom cannot be read."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30, connect=5)) as session:
        contacts = WeComClient(
            session=session,
            api_base=settings.wecom_api_base,
            corp_id=settings.corp_id,
            secret=settings.contacts_secret.get_secret_value(),
            store=store,
        )
        try:
            return await reconcile(
                store, contacts, fix=fix, out=out, now=time.time(), actor=admin_actor("reconcile")
            )
        except WeComUnavailable as exc:
            err(f"wecom-bind: WeCom is unavailable ({exc.errmsg}); nothing was settled")
            return EXIT_WECOM
        except WeComError as exc:
            err(f"wecom-bind: WeCom refused: errcode {exc.errcode} {exc.errmsg}; nothing was settled")
            return EXIT_WECOM
