"""`wecom-bind reconcile`: each kind of drift found against the WeCom emulator, then fixed from WeCom's truth.

The emulator runs over loopback HTTP, the store is real on both backends, and one test runs the
command itself in a subprocess. Members are read as the command reads them (ListThenRead). The emulator
plays today's WeCom, whose contacts-sync assistant may not read members and whose app sees no mobile:
the tests of phone drift opt in to an assistant trusted before 2022-08-15 (`old_assistant`).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from callback_service.clients.wecom import WeComClient, WeComUnavailable
from callback_service.ops.admin import admin_actor
from callback_service.store import open_store
from handlers.core.binding import Actor, AuditAction, Binding, BindingState, DirectoryEntry
from handlers.core.phone import Phone
from handlers.core.reconcile import Drift, DriftKind, Fix, order_fixes
from handlers.usecases.binding_flow import created_key
from handlers.usecases.contacts import ContactMember
from handlers.usecases.contracts import Store
from handlers.usecases.reconcile import (
    ContactsReader,
    ListThenRead,
    find_drift,
    fix_all,
    fix_drift,
    reconcile,
)
from handlers.usecases.sync import ListedMember
from sandbox.wecom import create_wecom_sandbox
from sandbox.wecom_keys import WECOM_SANDBOX_STATE
from sandbox.wecom_state import APP, CONTACTS, Member, WeComSandboxState
from tests.callback_service.conftest import Clock
from tests.support.callbacks import AGENT_ID, CORP_ID
from tests.support.processes import run_command
from tests.support.world import APP_SECRET, CONTACTS_SECRET, OLD_ASSISTANT, old_assistant, service_env

STUDENT = Actor(who="student", source="127.0.0.1")
RECONCILE = admin_actor("reconcile")
LEASE = 60.0

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]


@dataclass
class WeCom:
    """A running emulator, a client of it per secret, and the reader that the command builds of them."""

    state: WeComSandboxState
    base: str
    contacts: WeComClient
    app: WeComClient
    reader: ListThenRead

    def add(self, userid: str, mobile: str | None, *, departments: Iterable[int] = (1,)) -> None:
        """Put a member straight into the emulated contacts."""
        self.state.members[userid] = Member(userid=userid, name="学生", department=list(departments), mobile=mobile)


WeComFactory = Callable[..., Awaitable[WeCom]]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(params=[False, True], ids=["hidden-absent", "hidden-empty"])
def wecom_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Options of the emulator beyond the test's organisation: today's WeCom, which leaves the fields
    it hides out of an answer, or answers them "" (its documents promise neither): both are unknown."""
    return {"hidden_as_empty": request.param}


@pytest.fixture
def start_wecom(
    aiohttp_server: ServerFactory, store: Store, http: aiohttp.ClientSession, clock: Clock,
    wecom_options: dict[str, Any],
) -> WeComFactory:
    """Start the emulator with these members; the clients cache their tokens in the store under test."""

    async def start(members: Iterable[Member] = ()) -> WeCom:
        app = create_wecom_sandbox(
            corp_id=CORP_ID,
            secrets={APP_SECRET: APP, CONTACTS_SECRET: CONTACTS},
            agent_id=AGENT_ID,
            callback=None,
            departments={1: "学校", 2: "计算机学院"},
            members=members,
            clock=clock,
            rng=random.Random(7),
            **wecom_options,
        )
        server = await aiohttp_server(app)
        base = str(server.make_url("")).rstrip("/")
        contacts = WeComClient(
            session=http,
            api_base=base,
            corp_id=CORP_ID,
            contacts=True, secret=CONTACTS_SECRET,
            store=store,
            clock=clock,
            timeout=2.0,
            max_attempts=3,
            max_retry_time=2.0,
            base_delay=0.01,
            max_delay=0.05,
            jitter=lambda: 0.5,
        )
        app_client = WeComClient(session=http, api_base=base, corp_id=CORP_ID, secret=APP_SECRET, store=store,
                                 clock=clock)
        return WeCom(state=app[WECOM_SANDBOX_STATE], base=base, contacts=contacts, app=app_client,
                     reader=ListThenRead(contacts, app_client))

    return start


def member(userid: str, mobile: str | None) -> Member:
    return Member(userid=userid, name="学生", department=[1], mobile=mobile)


async def bind(store: Store, member_id: str, phone: str) -> None:
    claim = await store.claim_phone(member_id, Phone(phone), lease=LEASE, actor=STUDENT)
    await store.commit_claim(claim)


async def stored(store: Store, member_id: str) -> Binding:
    """The member's binding, which must exist."""
    found = await store.get_binding(member_id)
    assert found is not None, member_id
    return found


async def fix_and_check(store: Store, wecom: WeCom, clock: Clock, drifts: list[Drift]) -> None:
    """Fix the drifts and check the store is then in step with WeCom, consistent and audited."""
    report = await fix_all(store, drifts, actor=RECONCILE)
    assert report.changed == ()
    assert {d.member_id for d in report.fixed} == {d.member_id for d in drifts}
    assert await find_drift(store, wecom.reader, now=clock.now) == []
    assert await store.integrity_problems() == []
    for drift in drifts:
        records = await store.audit_list(member_id=drift.member_id, limit=10)
        assert any(r.who == RECONCILE.who and r.source == RECONCILE.source for r in records), records


def kinds(drifts: list[Drift]) -> dict[str, DriftKind]:
    return {d.member_id: d.kind for d in drifts}


# each kind of drift


@old_assistant  # in step includes the mobiles
async def test_a_store_in_step_with_wecom_has_no_drift(store: Store, start_wecom: WeComFactory, clock: Clock) -> None:
    wecom = await start_wecom([member("s1", "13800000001"), member("s2", None), member("s3", "13800000003")])
    await bind(store, "s1", "13800000001")
    await bind(store, "s3", "13800000003")
    await store.follow("s3", "openid-s3", actor=STUDENT)
    wecom.state.members["s3"].status = 1  # followed: WeCom's member is activated
    # A live claim is a write in flight, not drift, whatever WeCom says yet.
    await store.claim_phone("s2", Phone("13800000002"), lease=LEASE, actor=STUDENT)

    assert await find_drift(store, wecom.reader, now=clock.now) == []


@old_assistant  # drift decided by the mobiles WeCom shows
async def test_phone_differs_is_fixed_to_wecoms_mobile(
    store: Store, start_wecom: WeComFactory, clock: Clock
) -> None:
    wecom = await start_wecom(
        [member("s1", "13900000001"), member("s2", "13900000002"), member("s3", None)]
    )
    await bind(store, "s1", "13800000001")
    await bind(store, "s2", "13800000002")
    await store.follow("s2", "openid-s2", actor=STUDENT)
    wecom.state.members["s2"].status = 1
    await bind(store, "s3", "13800000003")

    drifts = await find_drift(store, wecom.reader, now=clock.now)

    assert kinds(drifts) == {
        "s1": DriftKind.PHONE_DIFFERS, "s2": DriftKind.PHONE_DIFFERS, "s3": DriftKind.PHONE_DIFFERS
    }
    first = drifts[0]
    assert (first.store_phone_masked, first.wecom_phone_masked) == ("138****0001", "139****0001")
    assert "13800000001" not in repr(first)
    assert "13900000001" not in repr(first)
    assert "13900000001" not in first.describe()
    await fix_and_check(store, wecom, clock, drifts)
    s1 = await stored(store, "s1")
    s2 = await stored(store, "s2")
    assert (s1.phone, s1.state) == ("13900000001", BindingState.BOUND)
    assert (s2.phone, s2.state, s2.openid) == ("13900000002", BindingState.FOLLOWED, "openid-s2")
    # WeCom holds no mobile for s3: its bound phone is gone, and the phone is free again.
    assert await store.get_binding("s3") is None
    assert await store.get_binding_by_phone(Phone("13800000003")) is None
    assert await store.get_binding_by_phone(Phone("13800000001")) is None


@old_assistant  # drift decided by the mobiles WeCom shows
async def test_missing_in_store_binds_wecoms_mobile(store: Store, start_wecom: WeComFactory, clock: Clock) -> None:
    wecom = await start_wecom([member("s1", "13800000001"), member("s2", None)])

    drifts = await find_drift(store, wecom.reader, now=clock.now)

    assert kinds(drifts) == {"s1": DriftKind.MISSING_IN_STORE}  # s2 has no mobile: nothing to hold
    assert drifts[0].store_phone_masked == "-"
    await fix_and_check(store, wecom, clock, drifts)
    s1 = await stored(store, "s1")
    assert (s1.phone, s1.state) == ("13800000001", BindingState.BOUND)


async def test_missing_in_wecom_removes_the_binding(store: Store, start_wecom: WeComFactory, clock: Clock) -> None:
    wecom = await start_wecom([member("s1", "13800000001")])
    await bind(store, "s1", "13800000001")
    await bind(store, "gone", "13800000009")
    await bind(store, "left", "13800000008")
    await store.follow("left", "openid-left", actor=STUDENT)

    drifts = await find_drift(store, wecom.reader, now=clock.now)

    assert kinds(drifts) == {"gone": DriftKind.MISSING_IN_WECOM, "left": DriftKind.MISSING_IN_WECOM}
    await fix_and_check(store, wecom, clock, drifts)
    assert await store.get_binding("gone") is None
    assert await store.get_binding("left") is None
    assert await store.get_binding_by_phone(Phone("13800000009")) is None
    assert await store.get_binding_by_openid("openid-left") is None
    [deleted] = await store.audit_list(member_id="gone", limit=1)
    assert deleted.action is AuditAction.DELETE


@old_assistant  # drift decided by the mobiles WeCom shows
async def test_expired_claim_whose_write_reached_wecom_is_fixed_to_the_claimed_phone(
    store: Store, start_wecom: WeComFactory, clock: Clock
) -> None:
    wecom = await start_wecom([member("s1", "13900000001")])
    await bind(store, "s1", "13800000001")
    await store.claim_phone("s1", Phone("13900000001"), lease=LEASE, actor=STUDENT)
    # The process died after user/update answered, before the commit; the lease runs out.
    clock.now += LEASE + 1

    drifts = await find_drift(store, wecom.reader, now=clock.now)

    assert kinds(drifts) == {"s1": DriftKind.EXPIRED_CLAIM}
    assert "reached WeCom" in drifts[0].detail
    await fix_and_check(store, wecom, clock, drifts)
    s1 = await stored(store, "s1")
    assert (s1.phone, s1.state) == ("13900000001", BindingState.BOUND)
    assert await store.get_binding_by_phone(Phone("13800000001")) is None


@old_assistant  # drift decided by the mobiles WeCom shows
async def test_expired_claim_whose_write_did_not_reach_wecom_is_fixed_back(
    store: Store, start_wecom: WeComFactory, clock: Clock
) -> None:
    wecom = await start_wecom([member("s1", "13800000001"), member("s2", None)])
    await bind(store, "s1", "13800000001")
    await store.claim_phone("s1", Phone("13900000001"), lease=LEASE, actor=STUDENT)
    await store.claim_phone("s2", Phone("13900000002"), lease=LEASE, actor=STUDENT)
    await store.claim_phone("new", Phone("13900000003"), lease=LEASE, actor=STUDENT)
    clock.now += LEASE + 1

    drifts = await find_drift(store, wecom.reader, now=clock.now)

    assert kinds(drifts) == {
        "s1": DriftKind.EXPIRED_CLAIM, "s2": DriftKind.EXPIRED_CLAIM, "new": DriftKind.EXPIRED_CLAIM
    }
    by_member = {d.member_id: d for d in drifts}
    assert "did not reach WeCom" in by_member["s1"].detail
    assert "previous 138****0001" in by_member["s1"].detail
    assert "not a WeCom member" in by_member["new"].detail
    await fix_and_check(store, wecom, clock, drifts)
    s1 = await stored(store, "s1")
    assert (s1.phone, s1.state) == ("13800000001", BindingState.BOUND)
    assert await store.get_binding("s2") is None  # WeCom holds no mobile for s2
    assert await store.get_binding("new") is None  # user/create never happened
    for phone in ("13900000001", "13900000002", "13900000003"):
        assert await store.get_binding_by_phone(Phone(phone)) is None


@old_assistant  # drift decided by the mobiles WeCom shows
async def test_every_kind_at_once(store: Store, start_wecom: WeComFactory, clock: Clock) -> None:
    wecom = await start_wecom(
        [member("differs", "13900000001"), member("new", "13900000002"), member("claim", "13900000003")]
    )
    await bind(store, "differs", "13800000001")
    await bind(store, "gone", "13800000002")
    await store.claim_phone("claim", Phone("13900000003"), lease=LEASE, actor=STUDENT)
    clock.now += LEASE + 1

    drifts = await find_drift(store, wecom.reader, now=clock.now)

    assert kinds(drifts) == {
        "claim": DriftKind.EXPIRED_CLAIM,
        "differs": DriftKind.PHONE_DIFFERS,
        "gone": DriftKind.MISSING_IN_WECOM,
        "new": DriftKind.MISSING_IN_STORE,
    }
    assert [d.member_id for d in drifts] == sorted(d.member_id for d in drifts)
    await fix_and_check(store, wecom, clock, drifts)


async def test_hidden_mobiles_are_no_drift_and_fix_changes_nothing(
    store: Store, start_wecom: WeComFactory, clock: Clock
) -> None:
    # Today's WeCom (the emulator's default): the assistant's user/get answers 48009, so members are
    # read with the app's secret, which sees no mobile (an app since 2022-06-20): unknown, never empty.
    wecom = await start_wecom([member("s1", "13800000001"), member("s2", "13900000002"),
                               member("s3", "13900000003")])
    await bind(store, "s1", "13800000001")
    await bind(store, "s2", "13800000002")
    before = {b.member_id: b for b in await store.list_bindings()}
    lines: list[str] = []

    assert await find_drift(store, wecom.reader, now=clock.now) == []
    status = await reconcile(store, wecom.reader, fix=True, out=lines.append, now=clock.now, actor=RECONCILE)

    assert status == 0
    assert lines == ["0 drift(s) found: " + ", ".join(f"0 {kind}" for kind in DriftKind)]
    assert {b.member_id: b for b in await store.list_bindings()} == before
    assert [r.source for r in await store.audit_list(limit=100)].count(RECONCILE.source) == 0


async def test_a_followed_member_wecom_no_longer_shows_activated_is_unfollowed(
    store: Store, start_wecom: WeComFactory, clock: Clock
) -> None:
    wecom = await start_wecom([member("s1", "13800000001"), member("s2", "13800000002")])
    await bind(store, "s1", "13800000001")
    await store.follow("s1", "openid-s1", actor=STUDENT)  # its unsubscribe never arrived
    await bind(store, "s2", "13800000002")
    wecom.state.members["s2"].status = 1  # activated through the WeCom app: no follow to record

    drifts = await find_drift(store, wecom.reader, now=clock.now)

    assert kinds(drifts) == {"s1": DriftKind.STATUS_DIFFERS, "s2": DriftKind.STATUS_DIFFERS}
    assert [d.fix for d in drifts] == [Fix.UNFOLLOW, Fix.NONE]
    lines: list[str] = []
    status = await reconcile(store, wecom.reader, fix=True, out=lines.append, now=clock.now, actor=RECONCILE)
    assert status == 0
    s1 = await stored(store, "s1")
    assert (s1.state, s1.phone, s1.openid) == (BindingState.BOUND, "13800000001", None)
    s2 = await stored(store, "s2")
    assert s2.state is BindingState.BOUND
    assert [d.member_id for d in await find_drift(store, wecom.reader, now=clock.now)] == ["s2"]


# the order of fixes


@old_assistant  # drift decided by the mobiles WeCom shows
async def test_a_phone_moved_between_members_is_freed_before_it_is_taken(
    store: Store, start_wecom: WeComFactory, clock: Clock
) -> None:
    # WeCom moved a's phone to b and gave a a new one: b must wait until a has let go.
    wecom = await start_wecom([member("a", "13900000001"), member("b", "13800000001")])
    await bind(store, "a", "13800000001")
    await bind(store, "b", "13800000002")

    drifts = await find_drift(store, wecom.reader, now=clock.now)

    assert order_fixes(drifts) == ["a", "b"]
    assert order_fixes(list(reversed(drifts))) == ["a", "b"]
    await fix_and_check(store, wecom, clock, drifts)
    actions = {r.action for m in ("a", "b") for r in await store.audit_list(member_id=m)}
    assert AuditAction.PHONE_LOST not in actions  # nobody had a phone taken away


@old_assistant  # drift decided by the mobiles WeCom shows
async def test_removals_come_before_the_phones_they_free(
    store: Store, start_wecom: WeComFactory, clock: Clock
) -> None:
    wecom = await start_wecom([member("a", "13800000009")])
    await bind(store, "z-gone", "13800000009")

    drifts = await find_drift(store, wecom.reader, now=clock.now)

    assert order_fixes(drifts) == ["z-gone", "a"]
    await fix_and_check(store, wecom, clock, drifts)
    assert AuditAction.PHONE_LOST not in {r.action for r in await store.audit_list(member_id="z-gone")}


@old_assistant  # drift decided by the mobiles WeCom shows
async def test_members_that_swapped_phones_are_fixed_in_one_run(
    store: Store, start_wecom: WeComFactory, clock: Clock
) -> None:
    wecom = await start_wecom([member("a", "13800000002"), member("b", "13800000001")])
    await bind(store, "a", "13800000001")
    await bind(store, "b", "13800000002")
    await store.follow("b", "openid-b", actor=STUDENT)
    wecom.state.members["b"].status = 1

    drifts = await find_drift(store, wecom.reader, now=clock.now)

    assert kinds(drifts) == {"a": DriftKind.PHONE_DIFFERS, "b": DriftKind.PHONE_DIFFERS}
    await fix_and_check(store, wecom, clock, drifts)
    a = await stored(store, "a")
    b = await stored(store, "b")
    assert a.phone == "13800000002"
    assert (b.phone, b.state, b.openid) == ("13800000001", BindingState.FOLLOWED, "openid-b")


@old_assistant  # drift decided by the mobiles WeCom shows
async def test_a_binding_that_changed_since_it_was_read_is_left_alone(
    store: Store, start_wecom: WeComFactory, clock: Clock
) -> None:
    wecom = await start_wecom([member("s1", "13900000001"), member("s2", "13900000002")])
    await bind(store, "s1", "13800000001")

    drifts = await find_drift(store, wecom.reader, now=clock.now)
    # Meanwhile the student binds again through the service (a claim is enough to change it).
    clock.now += 1
    await store.claim_phone("s1", Phone("13700000001"), lease=LEASE, actor=STUDENT)
    report = await fix_all(store, drifts, actor=RECONCILE)

    assert [d.member_id for d in report.changed] == ["s1"]
    assert [d.member_id for d in report.fixed] == ["s2"]
    s1 = await stored(store, "s1")
    assert (s1.phone, s1.state) == ("13700000001", BindingState.PENDING)
    assert await store.integrity_problems() == []


@old_assistant  # drift decided by the mobiles WeCom shows
async def test_fix_one_drift(store: Store, start_wecom: WeComFactory, clock: Clock) -> None:
    wecom = await start_wecom([member("s1", "13900000001")])
    [drift] = await find_drift(store, wecom.reader, now=clock.now)

    await fix_drift(store, drift, actor=RECONCILE)

    [record] = await store.audit_list(member_id="s1")
    assert (record.action, record.phone_masked, record.source) == (AuditAction.SET_PHONE, "139****0001", "cli: reconcile")


async def test_fix_refuses_to_remove_every_binding(store: Store, start_wecom: WeComFactory, clock: Clock) -> None:
    # A contacts secret whose visible range holds nobody lists no members at all.
    wecom = await start_wecom()
    await bind(store, "s1", "13800000001")
    await bind(store, "s2", "13800000002")
    lines: list[str] = []

    status = await reconcile(store, wecom.reader, fix=True, out=lines.append, now=clock.now, actor=RECONCILE)

    assert status == 1
    assert "refusing to remove every binding" in lines[-1]
    assert len(await store.list_bindings()) == 2


# reading WeCom


class CountingContacts:
    """The command's reader, counting how many user/get calls are in flight at once."""

    def __init__(self, client: ContactsReader) -> None:
        self._client = client
        self.in_flight = 0
        self.most = 0

    def user_list_id(self, *, limit: int = 10000) -> AsyncIterator[ListedMember]:
        return self._client.user_list_id(limit=limit)

    async def user_get(self, userid: str) -> ContactMember:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await asyncio.sleep(0)  # a turn of the loop: the others pile up here if unbounded
            return await self._client.user_get(userid)
        finally:
            self.in_flight -= 1


@old_assistant  # drift decided by the mobiles WeCom shows
async def test_members_are_read_page_by_page_with_bounded_concurrency(
    store: Store, start_wecom: WeComFactory, clock: Clock
) -> None:
    wecom = await start_wecom()
    for n in range(30):
        # Every third member is in two departments: listed twice, read once.
        wecom.add(f"s{n:02d}", f"139000000{n:02d}", departments=(1, 2) if n % 3 == 0 else (1,))
    counting = CountingContacts(wecom.reader)

    drifts = await find_drift(store, counting, now=clock.now, page_size=7, concurrency=4)

    assert len(drifts) == 30
    assert {d.kind for d in drifts} == {DriftKind.MISSING_IN_STORE}
    assert wecom.state.calls.count("user/list_id") == 6  # 40 rows, 7 a page
    assert wecom.state.calls.count("user/get") == 30
    assert 1 < counting.most <= 4
    await fix_and_check(store, wecom, clock, drifts)


async def test_wecom_unavailable_is_raised_and_nothing_fixed(
    store: Store, start_wecom: WeComFactory, clock: Clock
) -> None:
    wecom = await start_wecom([member("s1", "13900000001"), member("s2", "13900000002")])
    await bind(store, "s1", "13800000001")
    wecom.state.faults.status(503, count=100, api="user/get")

    with pytest.raises(WeComUnavailable):
        await find_drift(store, wecom.reader, now=clock.now)

    s1 = await stored(store, "s1")
    assert s1.phone == "13800000001"


async def test_a_member_deleted_between_list_and_get_counts_as_missing(
    store: Store, start_wecom: WeComFactory, clock: Clock
) -> None:
    wecom = await start_wecom([member("s1", "13800000001")])
    await bind(store, "s1", "13800000001")

    class DeletingContacts(CountingContacts):
        async def user_get(self, userid: str) -> ContactMember:
            wecom.state.delete_member(userid)
            return await super().user_get(userid)

    drifts = await find_drift(store, DeletingContacts(wecom.reader), now=clock.now)

    assert kinds(drifts) == {"s1": DriftKind.MISSING_IN_WECOM}


# the command


async def test_the_command_reports_fixes_and_masks_every_phone(
    aiohttp_server: ServerFactory, tmp_path: Path
) -> None:
    phones = ["13900000001", "13900000002", "13800000001", "13800000009"]
    app = create_wecom_sandbox(
        corp_id=CORP_ID,
        secrets={APP_SECRET: APP, CONTACTS_SECRET: CONTACTS},
        agent_id=AGENT_ID,
        callback=None,
        members=[member("differs", phones[0]), member("new", phones[1])],
        **OLD_ASSISTANT,  # the drift shown is decided by the mobiles
    )
    server = await aiohttp_server(app)
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    store = await open_store(store_url)
    try:
        await bind(store, "differs", phones[2])
        await bind(store, "gone", phones[3])
    finally:
        await store.close()
    env = service_env(9, wecom_api_base=str(server.make_url("")).rstrip("/"), store_url=store_url)

    found = await asyncio.to_thread(run_command, env, "reconcile")
    fixed = await asyncio.to_thread(run_command, env, "reconcile", "--fix")
    again = await asyncio.to_thread(run_command, env, "reconcile")

    assert found.returncode == 1, found.stderr
    lines = found.stdout.splitlines()
    assert any(line.startswith("PHONE_DIFFERS") and "138****0001" in line and "139****0001" in line
               for line in lines), found.stdout
    assert any(line.startswith("MISSING_IN_STORE") and "member new" in line for line in lines)
    assert any(line.startswith("MISSING_IN_WECOM") and "member gone" in line for line in lines)
    assert "3 drift(s) found" in found.stdout
    assert fixed.returncode == 0, fixed.stderr
    assert "3 fixed, 0 left" in fixed.stdout
    assert again.returncode == 0, again.stderr
    assert "0 drift(s) found" in again.stdout
    for result in (found, fixed, again):
        for phone in phones:
            assert phone not in result.stdout + result.stderr
    store = await open_store(store_url)
    try:
        assert await store.integrity_problems() == []
        [record] = await store.audit_list(member_id="new")
        assert record.source == "cli: reconcile"
    finally:
        await store.close()


async def test_the_command_says_when_wecom_is_unavailable(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    env = service_env(9, wecom_api_base="http://127.0.0.1:9", store_url=store_url)  # nothing listens on 9
    await (await open_store(store_url)).close()  # reconcile needs a store; it never creates one

    result = await asyncio.to_thread(run_command, env, "reconcile", "--fix")

    assert result.returncode == 4
    assert "WeCom is unavailable" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("errcode", "remedy"),
    [
        (48009, "通讯录同步 → 企业可信IP"),
        # user/list_id is the contacts-sync secret's call: its 60020 names the assistant's list.
        (60020, "管理工具 → 通讯录同步 → 企业可信IP (the contacts-sync assistant's own list"),
        (48002, "WECOM_BIND_CONTACTS_SECRET"),
    ],
)
async def test_the_command_names_the_remedy_of_a_refused_secret(
    aiohttp_server: ServerFactory, tmp_path: Path, errcode: int, remedy: str
) -> None:
    app = create_wecom_sandbox(
        corp_id=CORP_ID,
        secrets={APP_SECRET: APP, CONTACTS_SECRET: CONTACTS},
        agent_id=AGENT_ID,
        callback=None,
        members=[member("s1", "13900000001")],
    )
    server = await aiohttp_server(app)
    app[WECOM_SANDBOX_STATE].faults.errcode(errcode, count=100, api="user/list_id")
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    await (await open_store(store_url)).close()  # reconcile needs a store; it never creates one
    env = service_env(9, wecom_api_base=str(server.make_url("")).rstrip("/"), store_url=store_url)

    result = await asyncio.to_thread(run_command, env, "reconcile", "--fix")

    assert result.returncode == 4, result.stderr
    [line] = result.stderr.splitlines()
    assert f"errcode {errcode}" in line
    assert remedy in line
    assert "nothing was fixed" in line
    assert app[WECOM_SANDBOX_STATE].calls.count("user/list_id") == 1


async def test_an_untrusted_ip_60020_names_the_address_to_trust_and_exits_4(
    aiohttp_server: ServerFactory, tmp_path: Path
) -> None:
    app = create_wecom_sandbox(
        corp_id=CORP_ID,
        secrets={APP_SECRET: APP, CONTACTS_SECRET: CONTACTS},
        agent_id=AGENT_ID,
        callback=None,
        members=[member("s1", "13900000001")],
        contacts_trusted_ips=["203.0.113.0/24"],  # the server's own address is not among them
    )
    server = await aiohttp_server(app)
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    await (await open_store(store_url)).close()  # reconcile needs a store; it never creates one
    env = service_env(9, wecom_api_base=str(server.make_url("")).rstrip("/"), store_url=store_url)

    result = await asyncio.to_thread(run_command, env, "reconcile")

    assert result.returncode == 4, result.stderr
    [line] = result.stderr.splitlines()
    assert "errcode 60020" in line
    assert "add 127.0.0.1 to 管理工具 → 通讯录同步 → 企业可信IP" in line


class ClaimBeforeWriting:
    """The real store, where a student's claim lands just before reconcile's first write: after its
    read of the binding, so that only an atomic compare-and-apply can notice it."""

    def __init__(self, store: Store, member_id: str, phone: str) -> None:
        self._store = store
        self._claim = (member_id, phone)
        self.claimed = False

    def __getattr__(self, name: str) -> object:
        method = getattr(self._store, name)
        if name not in ("set_member_phone", "delete_member", "fix_drift") or self.claimed:
            return method

        async def claim_first(*args: object, **kwargs: object) -> object:
            self.claimed = True
            member_id, phone = self._claim
            await self._store.claim_phone(member_id, Phone(phone), lease=LEASE, actor=STUDENT)
            return await method(*args, **kwargs)

        return claim_first


@old_assistant  # drift decided by the mobiles WeCom shows
async def test_a_claim_landing_between_the_fixes_read_and_write_is_kept(
    store: Store, start_wecom: WeComFactory, clock: Clock
) -> None:
    wecom = await start_wecom([member("s1", "13900000001")])
    await bind(store, "s1", "13800000001")
    [drift] = await find_drift(store, wecom.reader, now=clock.now)
    racing = ClaimBeforeWriting(store, "s1", "13700000001")

    report = await fix_all(cast(Store, racing), [drift], actor=RECONCILE)

    assert racing.claimed
    assert [d.member_id for d in report.changed] == ["s1"]
    s1 = await stored(store, "s1")
    assert (s1.phone, s1.state, s1.previous_phone) == ("13700000001", BindingState.PENDING, "13800000001")
    assert await store.integrity_problems() == []


async def test_a_member_outside_its_directory_department_is_reported_never_moved(
    store: Store, start_wecom: WeComFactory, clock: Clock
) -> None:
    wecom = await start_wecom([member("s1", "13800000001"), member("s2", "13800000002")])
    wecom.state.members["s2"].department = [1, 2]
    await store.directory_upsert([
        DirectoryEntry("s1", "学生", "计算机学院", None),
        DirectoryEntry("s2", "学生", "计算机学院", None),
    ])
    await bind(store, "s1", "13800000001")
    await bind(store, "s2", "13800000002")
    departments = {"计算机学院": 2}
    # Without the 院系 mapping there is nothing to compare with.
    assert await find_drift(store, wecom.reader, now=clock.now) == []

    drifts = await find_drift(store, wecom.reader, now=clock.now, departments=departments)

    assert kinds(drifts) == {"s1": DriftKind.DEPARTMENT_DIFFERS}
    assert drifts[0].fix is Fix.NONE
    assert "WeCom department 2" in drifts[0].describe()
    before = await store.list_bindings()
    lines: list[str] = []
    status = await reconcile(store, wecom.reader, fix=True, out=lines.append, now=clock.now,
                             actor=RECONCILE, departments=departments)
    assert status == 0
    assert await store.list_bindings() == before
    assert wecom.state.members["s1"].department == [1]


@pytest.mark.parametrize("hidden_as_empty", [False, True], ids=["hidden-absent", "hidden-empty"])
async def test_an_assistant_that_may_not_read_is_read_through_the_app_with_mobiles_unknown(
    aiohttp_server: ServerFactory, tmp_path: Path, hidden_as_empty: bool
) -> None:
    app = create_wecom_sandbox(
        corp_id=CORP_ID,
        secrets={APP_SECRET: APP, CONTACTS_SECRET: CONTACTS},
        agent_id=AGENT_ID,
        callback=None,
        members=[member("followed", "13900000001"), member("differs", "13900000002")],
        # Today's WeCom, the default: the assistant's address was trusted after 2022-08-15, its user/get is 48009.
        hidden_as_empty=hidden_as_empty,
    )
    server = await aiohttp_server(app)
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    store = await open_store(store_url)
    try:
        await bind(store, "followed", "13900000001")
        await store.follow("followed", "openid-followed", actor=STUDENT)
        await bind(store, "differs", "13800000002")  # WeCom holds another mobile, which the app cannot see
    finally:
        await store.close()
    env = service_env(9, wecom_api_base=str(server.make_url("")).rstrip("/"), store_url=store_url)

    result = await asyncio.to_thread(run_command, env, "reconcile")

    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("STATUS_DIFFERS") and "member followed" in line for line in lines), lines
    assert not any("member differs" in line for line in lines), lines
    assert "1 drift(s) found" in result.stdout


async def test_the_command_names_the_apps_secret_when_the_app_is_refused(
    aiohttp_server: ServerFactory, tmp_path: Path
) -> None:
    # Today's assistant may not read (48009): members are read with the app's secret, which this
    # server's address may not use (60020): the app's secret is the one to name, not the assistant's.
    app = create_wecom_sandbox(
        corp_id=CORP_ID,
        secrets={APP_SECRET: APP, CONTACTS_SECRET: CONTACTS},
        agent_id=AGENT_ID,
        callback=None,
        members=[member("s1", "13900000001")],
        app_trusted_ips=["203.0.113.0/24"],
    )
    server = await aiohttp_server(app)
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    await (await open_store(store_url)).close()  # reconcile needs a store; it never creates one
    env = service_env(9, wecom_api_base=str(server.make_url("")).rstrip("/"), store_url=store_url)

    result = await asyncio.to_thread(run_command, env, "reconcile")

    assert result.returncode == 4, result.stderr
    line = result.stderr.splitlines()[-1]  # after the warning that reads go through the app's secret
    assert "errcode 60020" in line
    assert "WeCom refused the app's secret (WECOM_BIND_APP_SECRET" in line


async def test_the_command_reports_members_created_here_that_hold_no_binding(
    aiohttp_server: ServerFactory, tmp_path: Path
) -> None:
    app = create_wecom_sandbox(
        corp_id=CORP_ID,
        secrets={APP_SECRET: APP, CONTACTS_SECRET: CONTACTS},
        agent_id=AGENT_ID,
        callback=None,
        members=[member("created", "13900000001"), member("elder", "13900000002")],
    )
    server = await aiohttp_server(app)
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    store = await open_store(store_url)
    try:
        await store.kv_set(created_key("created"), "1", ttl=3600)  # as the flow's user/create left it
    finally:
        await store.close()
    env = service_env(9, wecom_api_base=str(server.make_url("")).rstrip("/"), store_url=store_url)

    result = await asyncio.to_thread(run_command, env, "reconcile")

    assert "member created: created in WeCom by this service" in result.stdout, result.stdout
    assert "member elder" not in result.stdout
    assert "1 member(s) created here hold no binding" in result.stdout
