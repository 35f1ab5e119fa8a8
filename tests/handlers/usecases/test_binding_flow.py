"""The binding rules over a real store (SQLite and Redis) and the WeCom emulator through the real client.

The emulator plays today's WeCom: the contacts-sync assistant writes but may not read members (48009)
and the app sees no mobile, so the flow reads status with the app's secret, as the service wires it,
and a mobile read back is unknown. Tests of what a shown mobile decides opt in to an older WeCom.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer

from callback_service.clients.wecom import WeComClient, WeComUnavailable
from handlers.core.binding import Actor, AuditAction, BindingState, Claim, DirectoryEntry
from handlers.core.guide import ErrorCode
from handlers.core.member import MemberStatus
from handlers.core.phone import Phone
from handlers.core.wecom_errors import OutsideVisibleRange
from handlers.usecases.binding_flow import (
    BindingFlow,
    Bound,
    Confirming,
    Refusal,
    Refused,
    Standing,
    daily_miss_budget,
)
from handlers.usecases.contacts import MemberReader, WeComContacts
from handlers.usecases.contracts import Store, StoreUnavailable
from handlers.usecases.release import InWeCom, release
from sandbox.wecom import APP, CONTACTS, Member, WeComSandboxState, create_wecom_sandbox
from sandbox.wecom_keys import WECOM_SANDBOX_STATE
from tests.store.support import FakeClock
from tests.support.world import OLD_ASSISTANT, eventually, old_assistant

CORP_ID = "wwflowtest0000000"
T = TypeVar("T")
ACTOR = Actor(who="2021001", source="bind-page 127.0.0.1")

old_app = pytest.mark.parametrize("wecom_options", [{"app_sees_sensitive": True}], ids=["app-before-2022-06-20"])
"""An app created before 2022-06-20: the status read shows the mobile WeCom holds."""


@dataclass
class World:
    """The flow, its store and the emulator's state."""

    flow: BindingFlow
    store: Store
    wecom: WeComSandboxState
    clock: FakeClock
    contacts: WeComContacts
    reader: MemberReader
    """The app's client, which reads a member's status (as the pages wire the flow)."""

    async def actions(self, member_id: str) -> list[AuditAction]:
        return [r.action for r in reversed(await self.store.audit_list(member_id=member_id))]



@pytest.fixture
def store(memory_store: Store) -> Store:
    """The use case's store: in memory, on the same contract as SQLite and Redis (tests/store/test_contract.py)."""
    return memory_store

@pytest.fixture(params=[False, True], ids=["hidden-absent", "hidden-empty"])
def wecom_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Options of the emulator beyond the test's organisation: today's WeCom, which leaves the fields
    it hides out of an answer, or answers them "" (its documents promise neither): both are unknown."""
    return {"hidden_as_empty": request.param}


@pytest.fixture
async def wecom_server(aiohttp_server: AiohttpServer, wecom_options: dict[str, Any]) -> TestServer:
    app = create_wecom_sandbox(
        corp_id=CORP_ID,
        secrets={"app-secret": APP, "contacts-secret": CONTACTS},
        agent_id=1000002,
        callback=None,
        departments={1: "学校", 7: "管理学院"},
        members=[
            Member(userid="2021001", name="张三", department=[1]),
            Member(userid="2021002", name="李四", department=[1]),
            Member(userid="2020999", name="周八", department=[1], mobile="13900000099"),
        ],
        **wecom_options,
    )
    return await aiohttp_server(app)


@pytest.fixture
async def world(wecom_server: TestServer, store: Store, clock: FakeClock) -> AsyncIterator[World]:
    async with aiohttp.ClientSession() as session:
        client = WeComClient(
            session=session,
            api_base=str(wecom_server.make_url("")),
            corp_id=CORP_ID,
            contacts=True, secret="contacts-secret",
            store=store,
            clock=clock,
            max_attempts=2,
            base_delay=0.01,
        )
        contacts: WeComContacts = client  # the real client fulfils the contract, as mypy checks here
        reader: MemberReader = WeComClient(
            session=session, api_base=str(wecom_server.make_url("")), corp_id=CORP_ID, secret="app-secret",
            store=store, clock=clock, max_attempts=2, base_delay=0.01,
        )
        await store.directory_upsert(
            [
                DirectoryEntry("2021001", "张三", "学校", Phone("13800000001")),
                DirectoryEntry("2021004", "赵六", "管理学院", None),
                DirectoryEntry("2021005", "钱九", "未知学院", None),
            ]
        )

        flow = BindingFlow(store=store, contacts=contacts, reader=reader, departments={"管理学院": 7})
        yield World(flow, store, wecom_server.app[WECOM_SANDBOX_STATE], clock, contacts, reader)


async def test_binds_through_user_update_then_commits_and_invites(world: World) -> None:
    result = await world.flow.bind("2021001", Phone.parse("+86 138-0000-0001"), actor=ACTOR)
    assert result == Bound("2021001", Phone("13800000001"), already_bound=False, created=False, invited=True, followed=False)
    assert result.phone_masked == "138****0001"
    assert world.wecom.members["2021001"].mobile == "13800000001"
    binding = await world.store.get_binding("2021001")
    assert binding is not None
    assert binding.state is BindingState.BOUND
    assert binding.phone == "13800000001"
    assert await world.actions("2021001") == [AuditAction.CLAIM, AuditAction.BIND]
    assert [i.users for i in world.wecom.invites] == [("2021001",)]
    assert world.wecom.invitations == {"2021001": 1}


class _CountingReads:
    """The real contacts-sync client, counting its user/get calls."""

    def __init__(self, inner: WeComContacts) -> None:
        self._inner = inner
        self.reads = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    async def user_get(self, userid: str) -> object:
        self.reads += 1
        return await self._inner.user_get(userid)


async def test_todays_wecom_binds_with_the_mobile_read_back_unknown(world: World) -> None:
    # The default emulator: the assistant's user/get answers 48009 and the app sees no mobile. The
    # mobile read back is unknown, not empty: the write WeCom answered stands, no confirming loop.
    contacts = _CountingReads(world.contacts)
    flow = BindingFlow(store=world.store, contacts=contacts, reader=world.reader, departments={})  # type: ignore[arg-type]
    first = await flow.bind("2021001", Phone("13800000001"), actor=ACTOR)
    second = await flow.bind("2021002", Phone("13800000002"), actor=ACTOR)
    assert first == Bound("2021001", Phone("13800000001"), already_bound=False, created=False, invited=True,
                          followed=False)
    assert isinstance(second, Bound)
    assert (world.wecom.members["2021001"].mobile, world.wecom.members["2021002"].mobile) == (
        "13800000001", "13800000002")
    assert contacts.reads == 1  # its first 48009 sent every later read to the app's secret
    assert await world.actions("2021002") == [AuditAction.CLAIM, AuditAction.BIND]


async def test_creates_a_member_missing_in_wecom_from_the_directory(world: World) -> None:
    result = await world.flow.bind("2021004", Phone("13800000004"), actor=ACTOR)
    assert isinstance(result, Bound)
    assert result.created
    member = world.wecom.members["2021004"]
    assert (member.name, member.department, member.mobile) == ("赵六", [7], "13800000004")


async def test_a_new_member_is_invited_once_by_user_create_alone(world: World) -> None:
    result = await world.flow.bind("2021004", Phone("13800000004"), actor=ACTOR)
    assert isinstance(result, Bound)
    assert result.created
    assert result.invited
    assert "batch/invite" not in world.wecom.calls
    assert world.wecom.invitations == {"2021004": 1}  # user/create's to_invite, once


async def test_an_unknown_department_lands_in_the_root(world: World) -> None:
    result = await world.flow.bind("2021005", Phone("13800000005"), actor=ACTOR)
    assert isinstance(result, Bound)
    assert result.created
    assert world.wecom.members["2021005"].department == [1]


async def test_a_member_in_neither_wecom_nor_the_directory_is_refused(world: World) -> None:
    result = await world.flow.bind("2021009", Phone("13800000009"), actor=ACTOR)
    assert result == Refused("2021009", Refusal.NOT_IN_DIRECTORY)
    assert await world.store.get_binding("2021009") is None
    assert await world.actions("2021009") == [AuditAction.CLAIM, AuditAction.RELEASE, AuditAction.CONFLICT]
    [refusal] = await world.store.audit_list(member_id="2021009", limit=1)
    assert refusal.detail == "not_in_directory: member in neither WeCom nor the directory"


async def test_a_phone_of_another_member_is_2_1(world: World) -> None:
    await world.flow.bind("2021001", Phone("13800000001"), actor=ACTOR)
    calls = len(world.wecom.calls)
    result = await world.flow.bind("2021002", Phone("13800000001"), actor=ACTOR)
    assert result == Refused("2021002", Refusal.PHONE_TAKEN)
    assert result.reason.code is ErrorCode.PHONE_TAKEN
    assert len(world.wecom.calls) == calls  # the store's answer was enough
    # Each refusal is one conflict record, naming the error and who holds the phone (masked).
    [refusal] = await world.store.audit_list(member_id="2021002")
    assert (refusal.action, refusal.phone_masked) == (AuditAction.CONFLICT, "138****0001")
    assert refusal.detail == "phone_taken: store I1, held by 2021001"
    await world.flow.bind("2021002", Phone("13800000001"), actor=ACTOR)
    assert len(await world.store.audit_list(member_id="2021002")) == 2


async def test_a_followed_member_is_2_2(world: World) -> None:
    await world.flow.bind("2021001", Phone("13800000001"), actor=ACTOR)
    await world.store.follow("2021001", "o-1", actor=ACTOR)
    result = await world.flow.bind("2021001", Phone("13800000002"), actor=ACTOR)
    assert result == Refused("2021001", Refusal.ACCOUNT_FOLLOWED)
    assert result.reason.code is ErrorCode.ACCOUNT_FOLLOWED
    assert world.wecom.members["2021001"].mobile == "13800000001"
    [refusal] = await world.store.audit_list(member_id="2021001", limit=1)
    assert (refusal.action, refusal.detail) == (AuditAction.CONFLICT, "account_followed: store I3")


async def test_an_activated_members_new_phone_is_joined_from_wecoms_truth_with_nothing_committed(
    world: World,
) -> None:
    await world.flow.bind("2021001", Phone("13800000001"), actor=ACTOR)
    # Followed in WeChat, but the subscribe never reached the store: WeCom's status is the truth.
    world.wecom.members["2021001"].status = 1
    result = await world.flow.bind("2021001", Phone("13800000002"), actor=ACTOR)
    assert result == Refused("2021001", Refusal.MEMBER_JOINED)
    assert "user/update" not in world.wecom.calls[-2:]
    binding = await world.store.get_binding("2021001")
    assert binding is not None
    assert (binding.state, binding.phone) == (BindingState.BOUND, "13800000001")
    assert await world.store.get_binding_by_phone(Phone("13800000002")) is None
    assert world.wecom.members["2021001"].mobile == "13800000001"
    assert (await world.actions("2021001"))[-4:] == [
        AuditAction.CLAIM,
        AuditAction.RELEASE,
        AuditAction.JOINED,
        AuditAction.CONFLICT,
    ]
    [refusal] = await world.store.audit_list(member_id="2021001", limit=1)
    assert refusal.detail == "member_joined: wecom: the member is activated (status 1)"


async def test_a_member_activated_through_the_app_has_joined_though_no_subscribe_was_ever_seen(
    world: World,
) -> None:
    # 李四 logged in to the WeCom app before this service existed: the store knows nothing of it.
    world.wecom.set_uses_wecom_app("2021002", True)
    assert world.wecom.members["2021002"].status == 1
    assert await world.flow.standing("2021002", actor=ACTOR) is Standing.JOINED
    result = await world.flow.bind("2021002", Phone("13800000002"), actor=ACTOR)
    assert result == Refused("2021002", Refusal.MEMBER_JOINED)
    assert result.reason.standing is Standing.JOINED
    assert "user/update" not in world.wecom.calls
    assert await world.store.get_binding("2021002") is None
    assert await world.store.get_binding_by_phone(Phone("13800000002")) is None
    assert world.wecom.members["2021002"].mobile is None


@old_assistant  # the read-back must see the mobile WeCom kept
async def test_a_write_wecom_did_not_apply_is_never_bound(world: World) -> None:
    # WeCom answers 0 but keeps the old mobile (the member activated between our read and write).
    world.wecom.members["2021002"].mobile = "13900000002"
    world.wecom.members["2021002"].status = 4

    class _ActivatesOnWrite:
        def __init__(self, inner: WeComContacts) -> None:
            self._inner = inner

        def __getattr__(self, name: str) -> object:
            return getattr(self._inner, name)

        async def user_update(self, userid: str, **fields: object) -> None:
            world.wecom.members[userid].status = 1  # WeCom then ignores the mobile, silently

    flow = BindingFlow(store=world.store, contacts=_ActivatesOnWrite(world.contacts), reader=world.reader,  # type: ignore[arg-type]
                       departments={})
    result = await flow.bind("2021002", Phone("13800000002"), actor=ACTOR)
    assert result == Refused("2021002", Refusal.MEMBER_JOINED)
    assert await world.store.get_binding("2021002") is None


async def test_a_followed_member_confirming_its_phone_is_fine(world: World) -> None:
    await world.flow.bind("2021001", Phone("13800000001"), actor=ACTOR)
    await world.store.follow("2021001", "o-1", actor=ACTOR)
    invites = len(world.wecom.invites)
    result = await world.flow.bind("2021001", Phone("13800000001"), actor=ACTOR)
    assert isinstance(result, Bound)
    assert result.already_bound
    assert result.followed
    assert not result.invited
    assert len(world.wecom.invites) == invites


async def test_wecom_60104_becomes_2_1_the_claim_released_and_the_conflict_audited(world: World) -> None:
    result = await world.flow.bind("2021001", Phone("13900000099"), actor=ACTOR)
    assert result == Refused("2021001", Refusal.PHONE_TAKEN, corrected=True)
    assert await world.store.get_binding("2021001") is None
    assert await world.store.get_binding_by_phone(Phone("13900000099")) is None
    records = list(reversed(await world.store.audit_list(member_id="2021001")))
    assert [r.action for r in records] == [AuditAction.CLAIM, AuditAction.RELEASE, AuditAction.CONFLICT]
    conflict = records[2]
    assert (conflict.who, conflict.source) == (ACTOR.who, ACTOR.source)
    assert "60104" in conflict.detail
    assert conflict.phone_masked == "139****0099"
    assert await world.store.integrity_problems() == []


async def test_wecom_60104_keeps_the_previous_phone(world: World) -> None:
    await world.flow.bind("2021001", Phone("13800000001"), actor=ACTOR)
    result = await world.flow.bind("2021001", Phone("13900000099"), actor=ACTOR)
    assert isinstance(result, Refused)
    assert result.reason is Refusal.PHONE_TAKEN
    binding = await world.store.get_binding("2021001")
    assert binding is not None
    assert binding.phone == "13800000001"
    assert binding.state is BindingState.BOUND
    assert world.wecom.members["2021001"].mobile == "13800000001"


async def test_wecom_refusing_the_mobile_is_a_refusal(world: World) -> None:
    world.wecom.faults.errcode(60103, api="user/update")
    result = await world.flow.bind("2021001", Phone("13800000001"), actor=ACTOR)
    assert result == Refused("2021001", Refusal.MOBILE_REFUSED)
    assert await world.store.get_binding("2021001") is None


async def test_a_wecom_outage_before_the_write_propagates_and_releases_the_claim(world: World) -> None:
    world.wecom.faults.status(502, count=10, api="user/get")
    with pytest.raises(WeComUnavailable) as raised:
        await world.flow.bind("2021001", Phone("13800000001"), actor=ACTOR)
    assert raised.value.errcode == -1
    assert await world.store.get_binding("2021001") is None
    assert await world.actions("2021001") == [AuditAction.CLAIM, AuditAction.RELEASE]


outside_the_apps_range = pytest.mark.parametrize(
    "wecom_options", [{"visible_departments": [7]}], ids=["app-sees-department-7-only"]
)
"""The app's visible range holds 管理学院 (7) only: 张三 (2021001, department 1) is outside it."""


@outside_the_apps_range
async def test_a_member_outside_the_apps_range_is_a_range_error_when_the_assistant_may_not_read(
    world: World,
) -> None:
    # The app answers 60011 and today's assistant 48009: the remedy is the app's visible range, not
    # the assistant's trusted IPs (which writes work from).
    with pytest.raises(OutsideVisibleRange):
        await world.flow.bind("2021001", Phone("13800000001"), actor=ACTOR)
    assert await world.store.get_binding("2021001") is None
    assert "user/update" not in world.wecom.calls


@pytest.mark.parametrize(
    "wecom_options", [{"visible_departments": [7], **OLD_ASSISTANT}], ids=["app-sees-7-assistant-before-2022-08-15"]
)
async def test_a_member_outside_the_apps_range_is_read_by_an_assistant_that_may_read(world: World) -> None:
    result = await world.flow.bind("2021001", Phone("13800000001"), actor=ACTOR)
    assert isinstance(result, Bound)
    assert world.wecom.members["2021001"].mobile == "13800000001"


async def test_a_member_created_meanwhile_is_updated_after_all(world: World) -> None:
    # Not a member when the flow looked, created by someone else before its user/create.
    world.wecom.faults.errcode(60111, api="user/get")
    world.wecom.members["2021004"] = Member(userid="2021004", name="赵六", department=[7])
    result = await world.flow.bind("2021004", Phone("13800000004"), actor=ACTOR)
    assert isinstance(result, Bound)
    assert not result.created
    assert world.wecom.members["2021004"].mobile == "13800000004"


async def test_a_failed_invite_leaves_the_binding_standing(world: World) -> None:
    world.wecom.faults.errcode(40035, api="batch/invite")
    result = await world.flow.bind("2021001", Phone("13800000001"), actor=ACTOR)
    assert isinstance(result, Bound)
    assert not result.invited
    binding = await world.store.get_binding("2021001")
    assert binding is not None
    assert binding.state is BindingState.BOUND


async def test_a_second_claim_while_the_first_is_at_wecom_is_in_progress(world: World) -> None:
    world.wecom.faults.delay(0.3, api="user/update")
    first, second = await asyncio.gather(
        world.flow.bind("2021001", Phone("13800000001"), actor=ACTOR),
        _once_claimed(world.store, "2021001", world.flow.bind("2021001", Phone("13800000011"), actor=ACTOR)),
    )
    assert isinstance(first, Bound)
    assert second == Refused("2021001", Refusal.IN_PROGRESS)
    assert (await world.actions("2021001")).count(AuditAction.BIND) == 1


async def test_two_members_racing_for_one_phone_bind_one(world: World) -> None:
    results = await asyncio.gather(
        world.flow.bind("2021001", Phone("13800000001"), actor=ACTOR),
        world.flow.bind("2021002", Phone("13800000001"), actor=ACTOR),
    )
    assert sorted(type(r).__name__ for r in results) == ["Bound", "Refused"]
    holders = [m.userid for m in world.wecom.members.values() if m.mobile == "13800000001"]
    assert len(holders) == 1
    binding = await world.store.get_binding_by_phone(Phone("13800000001"))
    assert binding is not None
    assert binding.member_id == holders[0]
    assert await world.store.integrity_problems() == []


async def _once_claimed(store: Store, member_id: str, coroutine: Awaitable[T]) -> T:
    """Run coroutine once the member's claim is in the store: the first bind is then at WeCom."""

    async def claimed() -> bool | None:
        binding = await store.get_binding(member_id)
        return True if binding is not None and binding.state is BindingState.PENDING else None

    await eventually(claimed)
    return await coroutine


class _ChangeContactFirst:
    """The real client, but WeCom's change_contact for the write is handled before the flow commits."""

    def __init__(self, client: WeComContacts, store: Store) -> None:
        self._client = client
        self._store = store

    def __getattr__(self, name: str) -> object:
        return getattr(self._client, name)

    async def user_update(self, userid: str, **fields: object) -> None:
        await self._client.user_update(userid, **fields)  # type: ignore[arg-type]
        mobile = fields.get("mobile")
        assert isinstance(mobile, str)
        # What the change_contact handler does with the push of this update.
        await self._store.set_member_phone(userid, Phone(mobile), take=False, actor=Actor("wecom", "callback"))


async def test_a_change_contact_handled_before_the_commit_is_still_a_success(world: World) -> None:
    flow = BindingFlow(
        store=world.store,
        contacts=_ChangeContactFirst(world.contacts, world.store),  # type: ignore[arg-type]
        reader=world.reader,
        departments={},
    )
    result = await flow.bind("2021001", Phone("13800000001"), actor=ACTOR)
    assert isinstance(result, Bound)
    binding = await world.store.get_binding("2021001")
    assert binding is not None
    assert binding.state is BindingState.BOUND
    assert binding.phone == "13800000001"


# a write whose answer was lost (issue 9)


class _Outcomes:
    """Collects how Confirming bindings ended."""

    def __init__(self) -> None:
        self.ended: asyncio.Queue[Bound | Refused | None] = asyncio.Queue()

    async def __call__(self, ended: Bound | Refused | None) -> None:
        await self.ended.put(ended)

    async def next(self) -> Bound | Refused | None:
        return await asyncio.wait_for(self.ended.get(), timeout=10)


@pytest.fixture
async def quick_flow(world: World, wecom_server: TestServer) -> AsyncIterator[BindingFlow]:
    """A flow whose client gives up at once (one try, short timeout) and replays quickly."""
    async with aiohttp.ClientSession() as session:
        client = WeComClient(
            session=session, api_base=str(wecom_server.make_url("")), corp_id=CORP_ID,
            contacts=True, secret="contacts-secret", store=world.store, clock=world.clock, max_attempts=1, timeout=0.5,
        )
        flow = BindingFlow(store=world.store, contacts=client, reader=world.reader, departments={},
                           replay_delays=(0.3,) * 5)
        yield flow
        await flow.close()


async def test_an_applied_write_whose_answer_was_lost_is_confirmed_then_committed(
    world: World, quick_flow: BindingFlow
) -> None:
    world.wecom.faults.delay(1.0, api="user/update")  # WeCom applies it; its answer comes too late
    outcomes = _Outcomes()
    result = await quick_flow.bind("2021002", Phone("13800000002"), actor=ACTOR, on_ended=outcomes)
    assert result == Confirming("2021002", Phone("13800000002"))
    pending = await world.store.get_binding("2021002")
    assert pending is not None
    assert pending.state is BindingState.PENDING  # the claim is kept, not released
    ended = await outcomes.next()
    assert isinstance(ended, Bound)
    binding = await world.store.get_binding("2021002")
    assert binding is not None
    assert (binding.state, binding.phone) == (BindingState.BOUND, "13800000002")
    assert world.wecom.members["2021002"].mobile == "13800000002"
    assert await world.actions("2021002") == [AuditAction.CLAIM, AuditAction.BIND]


async def test_a_lost_write_that_wecom_then_refuses_is_released(world: World, quick_flow: BindingFlow) -> None:
    world.wecom.faults.status(502, api="user/update")
    outcomes = _Outcomes()
    result = await quick_flow.bind("2021002", Phone("13800000002"), actor=ACTOR, on_ended=outcomes)
    assert isinstance(result, Confirming)
    # Meanwhile an administrator gives the phone to another member in WeCom: 60104 on the retry.
    world.wecom.members["2020999"].mobile = "13800000002"
    assert await outcomes.next() == Refused("2021002", Refusal.PHONE_TAKEN, corrected=True)
    assert await world.store.get_binding("2021002") is None
    assert await world.store.get_binding_by_phone(Phone("13800000002")) is None
    assert world.wecom.members["2021002"].mobile is None


@old_app  # the replay's status read must see that WeCom holds the phone already
async def test_a_store_failing_after_wecoms_write_is_committed_later(world: World, wecom_server: TestServer) -> None:
    store = _CommitFailsOnce(world.store)
    flow = BindingFlow(store=store, contacts=world.contacts, reader=world.reader, departments={},  # type: ignore[arg-type]
                       replay_delays=(0.1,))
    outcomes = _Outcomes()
    result = await flow.bind("2021002", Phone("13800000002"), actor=ACTOR, on_ended=outcomes)
    assert isinstance(result, Confirming)
    assert world.wecom.members["2021002"].mobile == "13800000002"
    assert isinstance(await outcomes.next(), Bound)
    binding = await world.store.get_binding("2021002")
    assert binding is not None
    assert (binding.state, binding.phone) == (BindingState.BOUND, "13800000002")
    assert world.wecom.calls.count("user/update") == 1  # WeCom already held it: not written again


async def test_an_unconfirmable_write_is_left_to_its_lease(world: World, quick_flow: BindingFlow) -> None:
    world.wecom.faults.status(502, count=100, api="user/update")
    outcomes = _Outcomes()
    assert isinstance(await quick_flow.bind("2021002", Phone("13800000002"), actor=ACTOR, on_ended=outcomes), Confirming)
    assert await outcomes.next() is None
    binding = await world.store.get_binding("2021002")
    assert binding is not None
    assert binding.state is BindingState.PENDING  # never released: its lease runs out, reconcile fixes it


class _CommitFailsOnce:
    """The real store, whose first commit fails as a store outage would."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.failed = False

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    async def commit_claim(self, claim: Claim) -> object:
        if not self.failed:
            self.failed = True
            raise StoreUnavailable("the store went away")
        return await self._store.commit_claim(claim)


# an existing organisation: status first, a stale phone index, one invitation per member (issue 17)


@pytest.mark.parametrize(
    ("status", "standing"),
    [(1, Standing.JOINED), (2, Standing.DISABLED), (4, Standing.MAY_BIND), (5, Standing.QUIT)],
)
async def test_the_standing_follows_wecoms_status(world: World, status: int, standing: Standing) -> None:
    world.wecom.members["2021002"].status = status
    assert await world.flow.standing("2021002", actor=ACTOR) is standing
    assert not (set(world.wecom.calls) - {"gettoken", "user/get"})  # a read, nothing written


async def test_the_standing_of_a_student_without_a_member(world: World) -> None:
    assert await world.flow.standing("2021004", actor=ACTOR) is Standing.MAY_BIND  # created from the directory on binding
    assert await world.flow.standing("2021009", actor=ACTOR) is Standing.UNKNOWN  # in neither


@pytest.mark.parametrize(("status", "refusal"), [(2, Refusal.MEMBER_DISABLED), (5, Refusal.MEMBER_QUIT)])
async def test_a_disabled_or_departed_member_gets_nothing_written(
    world: World, status: int, refusal: Refusal
) -> None:
    world.wecom.members["2021002"].status = status
    result = await world.flow.bind("2021002", Phone("13800000002"), actor=ACTOR)
    assert result == Refused("2021002", refusal)
    assert "user/update" not in world.wecom.calls
    assert "batch/invite" not in world.wecom.calls
    assert world.wecom.members["2021002"].mobile is None
    assert await world.store.get_binding("2021002") is None


def _with_holders(world: World) -> BindingFlow:
    """The flow as the pages wire it: WeCom asked who holds a phone before the store refuses 2.1."""
    return BindingFlow(store=world.store, contacts=world.contacts, reader=world.reader,
                       holders=world.reader, departments={}, clock=world.clock)  # type: ignore[arg-type]


async def test_a_phone_the_store_holds_for_a_member_wecom_moved_off_it_binds(world: World) -> None:
    flow = _with_holders(world)
    assert isinstance(await flow.bind("2021001", Phone("13800000001"), actor=ACTOR), Bound)
    # An administrator gives 张三 another mobile in the console: no event tells the store.
    world.wecom.members["2021001"].mobile = "13800000011"
    result = await flow.bind("2021002", Phone("13800000001"), actor=ACTOR)
    assert isinstance(result, Bound)
    assert world.wecom.members["2021002"].mobile == "13800000001"
    assert "user/getuserid" in world.wecom.calls
    assert await world.store.get_binding("2021001") is None
    lost = (await world.store.audit_list(member_id="2021001"))[0]
    assert lost.action is AuditAction.PHONE_LOST
    assert "stale" in lost.detail
    assert "nobody" in lost.detail
    assert await world.store.integrity_problems() == []


async def test_a_phone_wecom_gives_to_the_student_releases_the_stale_claim(world: World) -> None:
    flow = _with_holders(world)
    await flow.bind("2021001", Phone("13800000001"), actor=ACTOR)
    # The console moved the mobile from 张三 to 李四.
    world.wecom.members["2021001"].mobile = None
    world.wecom.members["2021002"].mobile = "13800000001"
    result = await flow.bind("2021002", Phone("13800000001"), actor=ACTOR)
    assert isinstance(result, Bound)
    binding = await world.store.get_binding_by_phone(Phone("13800000001"))
    assert binding is not None
    assert binding.member_id == "2021002"


async def test_a_phone_wecom_gives_to_another_member_is_2_1_and_the_index_corrected(world: World) -> None:
    flow = _with_holders(world)
    await flow.bind("2021001", Phone("13800000001"), actor=ACTOR)
    world.wecom.members["2021001"].mobile = None
    world.wecom.members["2020999"].mobile = "13800000001"
    result = await flow.bind("2021002", Phone("13800000001"), actor=ACTOR)
    assert result == Refused("2021002", Refusal.PHONE_TAKEN)
    assert "user/update" not in world.wecom.calls[world.wecom.calls.index("user/getuserid"):]
    assert await world.store.get_binding("2021001") is None  # the store no longer names 张三
    assert await world.store.get_binding("2021002") is None


async def test_the_store_right_about_the_holder_is_2_1(world: World) -> None:
    flow = _with_holders(world)
    await flow.bind("2021001", Phone("13800000001"), actor=ACTOR)
    result = await flow.bind("2021002", Phone("13800000001"), actor=ACTOR)
    assert result == Refused("2021002", Refusal.PHONE_TAKEN)
    binding = await world.store.get_binding("2021001")
    assert binding is not None
    assert binding.phone == "13800000001"


async def test_getuserid_misses_stop_well_before_wecoms_daily_bar(world: World) -> None:
    flow = _with_holders(world)
    await flow.bind("2021001", Phone("13800000001"), actor=ACTOR)
    world.wecom.members["2021001"].mobile = "13800000011"
    day = int((world.clock() + 8 * 3600) // 86400)
    await world.store.kv_set(f"wecom:getuserid-misses:{day}", str(daily_miss_budget(3)), ttl=86400)
    result = await flow.bind("2021002", Phone("13800000001"), actor=ACTOR)
    assert result == Refused("2021002", Refusal.PHONE_TAKEN)  # the store's answer, WeCom not asked
    assert "user/getuserid" not in world.wecom.calls


async def test_a_resubmission_does_not_invite_again(world: World) -> None:
    await world.flow.bind("2021001", Phone("13800000001"), actor=ACTOR)
    again = await world.flow.bind("2021001", Phone("13800000001"), actor=ACTOR)
    assert isinstance(again, Bound)
    assert again.already_bound
    assert again.invited
    other = await world.flow.bind("2021001", Phone("13800000021"), actor=ACTOR)
    assert isinstance(other, Bound)
    assert other.invited
    assert world.wecom.invitations == {"2021001": 1}  # "同一用户只须邀请一次" (document/path/90975)


async def test_60111_for_a_member_that_exists_is_the_visible_range(world: World) -> None:
    # 90313 60111: "d) 成员不在应用可见范围内": the app's read says no such member, user/create says it exists.
    world.wecom.faults.errcode(60111, count=3, api="user/get")  # the app, the assistant, the app again
    with pytest.raises(OutsideVisibleRange):
        await world.flow.bind("2021001", Phone("13800000001"), actor=ACTOR)
    assert await world.store.get_binding("2021001") is None


async def test_a_member_seen_joined_at_login_is_recorded_and_audited_once(world: World) -> None:
    world.wecom.set_uses_wecom_app("2021002", True)
    assert await world.flow.standing("2021002", actor=ACTOR) is Standing.JOINED
    assert await world.flow.standing("2021002", actor=ACTOR) is Standing.JOINED
    seen = await world.store.member_seen("2021002")
    assert seen is not None
    assert (seen.status, seen.source) == (MemberStatus.ACTIVATED, "login")
    assert await world.actions("2021002") == [AuditAction.JOINED]
    assert await world.store.get_binding("2021002") is None  # WeCom's word, not a binding


async def test_a_status_refused_at_the_submit_is_recorded(world: World) -> None:
    world.wecom.members["2021002"].status = 2
    await world.flow.bind("2021002", Phone("13800000002"), actor=ACTOR)
    seen = await world.store.member_seen("2021002")
    assert seen is not None
    assert seen.status is MemberStatus.DISABLED


# a release that frees the phone in WeCom too, where WeCom allows it


async def test_a_release_clears_the_mobile_of_a_member_the_flow_created_and_the_phone_binds_again(
    world: World,
) -> None:
    assert isinstance(await world.flow.bind("2021004", Phone("13800000004"), actor=ACTOR), Bound)
    world.wecom.members["2021004"].email = "zhaoliu@example.edu.cn"  # WeCom keeps a mobile or an email
    done = await release(world.store, world.contacts, world.reader, "2021004", actor=ACTOR)
    assert done.released
    assert done.in_wecom is InWeCom.CLEARED
    assert world.wecom.members["2021004"].mobile is None
    # Before, WeCom's 60104 refused the next student who typed it (2.1).
    assert isinstance(await world.flow.bind("2021002", Phone("13800000004"), actor=ACTOR), Bound)


async def test_a_release_says_when_wecom_refuses_an_empty_mobile(world: World) -> None:
    await world.flow.bind("2021004", Phone("13800000004"), actor=ACTOR)
    done = await release(world.store, world.contacts, world.reader, "2021004", actor=ACTOR)
    assert done.in_wecom is InWeCom.KEPT_NO_EMAIL
    assert world.wecom.members["2021004"].mobile == "13800000004"
    assert await world.store.get_binding("2021004") is None


async def test_a_release_leaves_an_activated_members_mobile_to_the_member(world: World) -> None:
    await world.flow.bind("2021004", Phone("13800000004"), actor=ACTOR)
    world.wecom.set_uses_wecom_app("2021004", True)
    done = await release(world.store, world.contacts, world.reader, "2021004", actor=ACTOR)
    assert done.in_wecom is InWeCom.KEPT_ACTIVATED
    assert world.wecom.members["2021004"].mobile == "13800000004"


async def test_a_release_leaves_a_member_the_flow_did_not_create(world: World) -> None:
    await world.flow.bind("2021001", Phone("13800000001"), actor=ACTOR)
    done = await release(world.store, world.contacts, world.reader, "2021001", actor=ACTOR)
    assert done.in_wecom is InWeCom.KEPT_NOT_CREATED
    assert "user/update" not in world.wecom.calls[-2:]


async def test_students_not_yet_members_cost_one_user_get_per_read_once_the_assistant_said_48009(
    world: World,
) -> None:
    # Today's assistant may not read (48009): after it said so once, a 60111 from the app is not
    # asked of it again, for every student not yet a member answers 60111 (WeCom's per-API limit).
    assert await world.flow.standing("2021004", actor=ACTOR) is Standing.MAY_BIND
    assert isinstance(await world.flow.bind("2021004", Phone("13800000004"), actor=ACTOR), Bound)
    before = len(world.wecom.calls)
    assert await world.flow.standing("2021005", actor=ACTOR) is Standing.MAY_BIND
    assert isinstance(await world.flow.bind("2021005", Phone("13800000005"), actor=ACTOR), Bound)
    assert world.wecom.calls[before:].count("user/get") == 2  # the login's status, the submit's
