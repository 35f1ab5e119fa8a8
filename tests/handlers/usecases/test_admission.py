"""The admission rules of second verification (二次验证): the pure judgement, then the gate over a
real store (SQLite and Redis) and the WeCom emulator through the real client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer

from callback_service.clients.wecom import WeComClient
from callback_service.metrics import Metrics
from handlers.core.binding import Actor, AuditAction, Binding, BindingState
from handlers.core.guide import ErrorCode
from handlers.core.member import MemberSeen, MemberStatus
from handlers.core.phone import Phone
from handlers.usecases.admission import (
    AdmissionGate,
    AdmissionRefusal,
    AdmissionRefused,
    AdmissionWeCom,
    Admitted,
    judge,
)
from handlers.usecases.conflicts import CONFLICTS
from handlers.usecases.contracts import Store
from sandbox.wecom import APP, Member, WeComSandboxState, create_wecom_sandbox
from sandbox.wecom_keys import WECOM_SANDBOX_STATE
from tests.store.support import FakeClock

CORP_ID = "wwadmissiontest00"
ACTOR = Actor(who="2021001", source="admission-page 127.0.0.1")
P1 = Phone("13800000001")
P2 = Phone("13800000002")


def _binding(member: str, state: BindingState, openid: str | None = None) -> Binding:
    return Binding(
        member_id=member,
        phone=P1,
        state=state,
        openid=openid,
        lease_expires_at=None,
        previous_phone=None,
        updated_at=0.0,
    )


BOUND = _binding("m1", BindingState.BOUND)
FOLLOWED_AS_O1 = _binding("m1", BindingState.FOLLOWED, "o1")
OTHER_AS_O2 = _binding("m2", BindingState.FOLLOWED, "o2")


@pytest.mark.parametrize(
    ("member", "openid", "binding", "holder", "expected"),
    [
        (None, "o1", None, None, AdmissionRefusal.NOT_BOUND),
        ("m1", None, None, None, AdmissionRefusal.NOT_BOUND),
        ("m1", None, _binding("m1", BindingState.PENDING), None, AdmissionRefusal.NOT_BOUND),
        ("m1", None, BOUND, None, None),
        ("m1", "o1", BOUND, None, None),
        ("m1", "o1", FOLLOWED_AS_O1, FOLLOWED_AS_O1, None),
        ("m1", "o9", FOLLOWED_AS_O1, None, AdmissionRefusal.MEMBER_FOLLOWED_BY_OTHER),
        ("m1", None, FOLLOWED_AS_O1, None, AdmissionRefusal.MEMBER_FOLLOWED_BY_OTHER),
        ("m1", "o2", BOUND, OTHER_AS_O2, AdmissionRefusal.WECHAT_FOLLOWS_OTHER),
        ("m1", "o2", FOLLOWED_AS_O1, OTHER_AS_O2, AdmissionRefusal.MEMBER_FOLLOWED_BY_OTHER),
    ],
)
def test_judge(
    member: str | None,
    openid: str | None,
    binding: Binding | None,
    holder: Binding | None,
    expected: AdmissionRefusal | None,
) -> None:
    assert judge(member, openid, binding, holder) is expected


JOINED = MemberSeen("m1", MemberStatus.ACTIVATED, 0.0, "sync")


@pytest.mark.parametrize(
    ("seen", "binding", "holder", "expected"),
    [
        (JOINED, None, None, None),
        (JOINED, _binding("m1", BindingState.PENDING), None, None),
        (MemberSeen("m1", MemberStatus.NOT_ACTIVATED, 0.0, "sync"), None, None, AdmissionRefusal.NOT_BOUND),
        (MemberSeen("m1", MemberStatus.DISABLED, 0.0, "sync"), None, None, AdmissionRefusal.NOT_BOUND),
        (MemberSeen("m1", None, 0.0, "sync"), None, None, AdmissionRefusal.NOT_BOUND),
        (MemberSeen("m9", MemberStatus.ACTIVATED, 0.0, "sync"), None, None, AdmissionRefusal.NOT_BOUND),
        (JOINED, None, OTHER_AS_O2, AdmissionRefusal.WECHAT_FOLLOWS_OTHER),
    ],
)
def test_judge_a_member_recorded_as_joined(
    seen: MemberSeen, binding: Binding | None, holder: Binding | None, expected: AdmissionRefusal | None
) -> None:
    assert judge("m1", "o2", binding, holder, seen) is expected


def test_each_refusal_names_a_guide_entry_and_only_i4_is_a_conflict() -> None:
    assert AdmissionRefusal.NOT_BOUND.code is ErrorCode.PHONE_NOT_IN_CONTACTS
    assert not AdmissionRefusal.NOT_BOUND.is_conflict
    for reason in (AdmissionRefusal.MEMBER_FOLLOWED_BY_OTHER, AdmissionRefusal.WECHAT_FOLLOWS_OTHER):
        assert reason.code is ErrorCode.PHONE_VERIFIED_BY_OTHER
        assert reason.is_conflict



@pytest.fixture
def store(memory_store: Store) -> Store:
    """The use case's store: in memory, on the same contract as SQLite and Redis (tests/store/test_contract.py)."""
    return memory_store

@pytest.fixture
async def wecom_server(aiohttp_server: AiohttpServer) -> TestServer:
    app = create_wecom_sandbox(
        corp_id=CORP_ID,
        secrets={"app-secret": APP},
        agent_id=1000002,
        callback=None,
        members=[
            Member(userid="2021001", name="张三", department=[1], mobile=P1),
            Member(userid="2021002", name="李四", department=[1], mobile=P2),
        ],
    )
    return await aiohttp_server(app)


@pytest.fixture
async def wecom_state(wecom_server: TestServer) -> WeComSandboxState:
    return wecom_server.app[WECOM_SANDBOX_STATE]


@pytest.fixture
async def gate(
    wecom_server: TestServer, store: Store, clock: FakeClock, metrics: Metrics
) -> AsyncIterator[AdmissionGate]:
    async with aiohttp.ClientSession() as session:
        client = WeComClient(
            session=session,
            api_base=str(wecom_server.make_url("")),
            corp_id=CORP_ID,
            secret="app-secret",
            store=store,
            clock=clock,
            max_attempts=2,
            base_delay=0.01,
        )
        wecom: AdmissionWeCom = client  # the real client fulfils the contract, as mypy checks here
        yield AdmissionGate(store=store, wecom=wecom, counters=metrics)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


async def _bind(store: Store, member: str, phone: str) -> None:
    await store.commit_claim(await store.claim_phone(member, Phone(phone), lease=60, actor=ACTOR))


async def _conflicts(store: Store, member: str) -> list[str]:
    return [r.detail for r in await store.audit_list(member_id=member) if r.action is AuditAction.CONFLICT]


async def test_a_bound_member_is_admitted(gate: AdmissionGate, store: Store, wecom_state: WeComSandboxState) -> None:
    await _bind(store, "2021001", P1)
    result = await gate.admit("2021001", None, actor=ACTOR)
    assert result == Admitted("2021001", phone_masked="138****0001", already_followed=False)
    assert wecom_state.authsucc == ["2021001"]


async def test_a_member_recorded_as_joined_by_sync_is_admitted_and_one_never_seen_is_not(
    gate: AdmissionGate, store: Store, wecom_state: WeComSandboxState, clock: FakeClock
) -> None:
    # Activated before the service existed: no binding, but `wecom-bind sync` recorded WeCom's 已激活.
    await store.record_members([MemberSeen("2021001", MemberStatus.ACTIVATED, clock(), "sync")])
    result = await gate.admit("2021001", None, actor=ACTOR)
    assert result == Admitted("2021001", phone_masked=None, already_followed=False)
    never_seen = await gate.admit("2021002", None, actor=ACTOR)
    assert never_seen == AdmissionRefused("2021002", AdmissionRefusal.NOT_BOUND)
    assert wecom_state.authsucc == ["2021001"]


async def test_a_member_recorded_as_disabled_is_not_admitted(
    gate: AdmissionGate, store: Store, wecom_state: WeComSandboxState, clock: FakeClock
) -> None:
    await store.record_members([MemberSeen("2021001", MemberStatus.DISABLED, clock(), "sync")])
    assert await gate.admit("2021001", None, actor=ACTOR) == AdmissionRefused("2021001", AdmissionRefusal.NOT_BOUND)
    assert wecom_state.authsucc == []


async def test_a_member_rejoining_with_its_own_wechat_is_admitted(
    gate: AdmissionGate, store: Store, wecom_state: WeComSandboxState
) -> None:
    await _bind(store, "2021001", P1)
    await store.follow("2021001", "o-zhang", actor=ACTOR)
    result = await gate.admit("2021001", "o-zhang", actor=ACTOR)
    assert isinstance(result, Admitted)
    assert result.already_followed
    assert wecom_state.authsucc == ["2021001"]


async def test_no_binding_or_no_member_is_refused_without_an_audit(
    gate: AdmissionGate, store: Store, wecom_state: WeComSandboxState, metrics: Metrics
) -> None:
    assert await gate.admit("2021001", None, actor=ACTOR) == AdmissionRefused("2021001", AdmissionRefusal.NOT_BOUND)
    # A WeChat that is no member at all: getuserinfo gives an openid only.
    assert await gate.admit(None, "o-stranger", actor=ACTOR) == AdmissionRefused(None, AdmissionRefusal.NOT_BOUND)
    assert wecom_state.authsucc == []
    assert await store.audit_list() == []
    assert metrics.value(CONFLICTS, rule="I4") == 0


async def test_a_wechat_that_follows_as_another_member_is_refused_and_audited(
    gate: AdmissionGate, store: Store, wecom_state: WeComSandboxState, metrics: Metrics
) -> None:
    await _bind(store, "2021001", P1)
    await _bind(store, "2021002", P2)
    await store.follow("2021002", "o-li", actor=ACTOR)
    result = await gate.admit("2021001", "o-li", actor=ACTOR)
    assert result == AdmissionRefused("2021001", AdmissionRefusal.WECHAT_FOLLOWS_OTHER)
    assert wecom_state.authsucc == []
    assert await _conflicts(store, "2021001") == ["I4: admission refused: openid o-li follows as member 2021002"]
    assert metrics.value(CONFLICTS, rule="I4") == 1
    assert await store.integrity_problems() == []


async def test_a_member_followed_by_another_wechat_is_refused_and_audited(
    gate: AdmissionGate, store: Store, wecom_state: WeComSandboxState, metrics: Metrics
) -> None:
    await _bind(store, "2021001", P1)
    await store.follow("2021001", "o-old", actor=ACTOR)
    result = await gate.admit("2021001", "o-new", actor=ACTOR)
    assert result == AdmissionRefused("2021001", AdmissionRefusal.MEMBER_FOLLOWED_BY_OTHER)
    assert wecom_state.authsucc == []
    [detail] = await _conflicts(store, "2021001")
    assert detail == "I4: admission refused: member followed as openid o-old, joining as openid o-new"
    records = await store.audit_list(member_id="2021001")
    assert records[0].phone_masked == "138****0001"
    assert metrics.value(CONFLICTS, rule="I4") == 1
    binding = await store.get_binding("2021001")
    assert binding is not None
    assert binding.openid == "o-old"
